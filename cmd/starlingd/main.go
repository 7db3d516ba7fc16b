// Command starlingd is the Starling server. With no flags it runs a
// complete single node on an embedded SQLite file in ./data:
//
//	go run ./cmd/starlingd
//
// Every flag can also be set as an environment variable STARLING_<NAME>
// (upper case, '-' as '_'): --data-dir is STARLING_DATA_DIR. Run
// `starlingd --help` for the list.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/starling-im/starling/internal/flagusage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the server could not start or failed
	exitUsage = 2 // a bad flag or value
)

// realMain is main without the process around it, so tests run what the
// binary runs: help and gen-secret on stdout, errors as one line on
// stderr, and the exit code.
func realMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "gen-secret" {
		return genSecret(args[1:], stdout, stderr)
	}
	if wantsHelp(args) {
		printHelp(stdout)
		return exitOK
	}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "starlingd: %v (see 'starlingd --help')\n", err)
		return exitUsage
	}
	if err := run(ctx, cfg, stderr); err != nil {
		fmt.Fprintln(stderr, "starlingd:", err)
		return exitError
	}
	return exitOK
}

const helpHead = `usage: starlingd [flags]
       starlingd gen-secret

starlingd is the Starling server. With no flags it runs a complete single
node on an embedded SQLite database in ./data, serving plaintext gRPC on
127.0.0.1:7070; logs go to standard error. Stop it with Ctrl-C (SIGINT) or
SIGTERM: it drains its streams and exits.

Commands:
  gen-secret   print a fresh random token secret (32 random bytes as 64 hex
               characters) for STARLING_TOKEN_SECRET or --token-secret-file:
               (umask 077; starlingd gen-secret > /etc/starling/token-secret)

Environment: every flag can also be set as STARLING_<NAME> (upper case, '-'
as '_': --data-dir is STARLING_DATA_DIR); a flag on the command line wins
over the environment. docs/operations.md explains each flag.

Flags:
`

// printHelp prints the usage, the commands and every flag with its
// environment variable.
func printHelp(w io.Writer) {
	var c config
	var level string
	io.WriteString(w, helpHead)
	flagusage.Print(w, newFlagSet(&c, &level), envName)
}

const genSecretHelp = `usage: starlingd gen-secret

Prints a fresh token secret: 32 bytes from the system's secure random
source, as 64 hex characters and a newline. Every node of a cluster must
use the same secret; keep it out of command lines (ps shows them):

  (umask 077; starlingd gen-secret > /etc/starling/token-secret)
  starlingd --token-secret-file /etc/starling/token-secret …
  # or: STARLING_TOKEN_SECRET="$(cat /etc/starling/token-secret)" starlingd …

It reads no flags and no environment variables.
`

// genSecret is `starlingd gen-secret`.
func genSecret(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if isHelp(args[0]) {
			io.WriteString(stdout, genSecretHelp)
			return exitOK
		}
		fmt.Fprintf(stderr, "starlingd: gen-secret takes no arguments, not %q (see 'starlingd gen-secret --help')\n", args)
		return exitUsage
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand: it crashes the program rather than return weak bytes)
	if _, err := fmt.Fprintln(stdout, hex.EncodeToString(b)); err != nil {
		fmt.Fprintln(stderr, "starlingd: gen-secret:", err)
		return exitError
	}
	return exitOK
}

// wantsHelp: help was asked for, whatever else is wrong with the command
// line or the environment (a bad STARLING_* value must not hide the help
// that explains it).
func wantsHelp(args []string) bool {
	if len(args) > 0 && args[0] == "help" {
		return true
	}
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a != "help" && isHelp(a) {
			return true
		}
	}
	return false
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
