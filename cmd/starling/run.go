package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
)

const defaultServer = "127.0.0.1:7070"

const usage = `usage: starling [--server HOST:PORT] [--tls] [--ca-file PATH] [--server-name NAME] <command> [arguments]

Run 'starling help <command>' (or 'starling <command> --help') for a
command's flags and what it prints.

Accounts:
  register <username> [--password P] [--display-name NAME]
  login <username> [--device NAME] [--password P]
  logout
  whoami [--json]

Messages:
  send <username|group> <text…> [--json] one-to-one (or group) message
  gsend <group> <text…> [--json]         group message
  listen [--json]                        print incoming messages, events, receipts and typing until interrupted
  chat <username>                        send stdin lines, print incoming messages
  history <username|group> [--before SEQ] [--limit N] [--json]
  conversations [-v] [--json]            @username and #group-name (-v: with ids)
  inbox [--limit N] [-v] [--json]        conversations with unread counts and last messages
  read <username|group> [--seq N]        mark read up to the newest message (or N)

Groups:
  group create <name> [usernames…] [--description TEXT] [--avatar URL]
               [--open] [--admins-add] [--json]
  group show <group> [--json]            the group, its owner and members
  group info <group> [--json]            info, policies and your role
  group update <group> [--name N] [--description TEXT] [--avatar URL]
               [--join open|invite] [--add members|admins]   (admins)
  group add <group> <usernames…>
  group join <group-id>                  join an open group (by its id)
  group kick <group> <username>          (admins; the owner for admins)
  group leave <group>                    (the owner transfers first)
  group role <group> <username> admin|member   (the owner)
  group transfer <group> <username>      make them the owner
  group disband <group>                  end the group (the owner)
  group members <group> [--json]         members with their roles
  group list [-v] [--json]               your groups with your role (-v: with ids)
  ('groups' works as well as 'group')
<group> is one of your groups by its name (friends, or '#friends' quoted
for the shell) or its id. Where a user may be meant too (send, read,
history), a bare word is a username first; '#name' is always a group and
'@name' always a user. A name two of your groups share needs the id.

Friends:
  friends [list] [--json]                your friends, online or not
  friends requests [--outgoing] [--json] pending requests (default: to you)
  friends request <username> [message…]  ask to be friends
  friends accept|decline <username>      answer their request
  friends cancel <username>              withdraw your request
  friends remove <username>              end a friendship
  block <username>                       no messages, requests or presence either way
  unblock <username>
  block list [--json]                    the users you block

Backend (AdminService; the API key comes from STARLING_ADMIN_KEY, or
'admin --cert FILE --key FILE …' presents a client certificate over TLS;
each answer prints as JSON):
  admin users upsert <external-id> <username> [--display-name NAME]
  admin users disable|enable|delete <user-id>
  admin token <user-id> <device>
  admin revoke <user-id> [device]
  admin send [--from USER-ID] (--to USER-ID | --group GROUP-ID) --id ID <text…>
  admin broadcast --id ID --to USER-ID,USER-ID… <text…>
  admin groups create <owner-id> <name> [member-id[:admin]…]
  admin groups set <group-id> <user-id[:member|:admin|:owner]…>
  admin presence <user-ids…>

Every message prints on one line. Text from the server (messages, names,
ids, errors) is shown with control and bidirectional-text characters
escaped, so it cannot move the cursor, erase a line or fake another
message: a line break shows as \n, a tab as \t, carriage return as \r,
ESC as \x1b, other controls as \xNN or \uNNNN (U+202E as \u202e).
--json prints the exact text as JSON strings (with these characters
escaped the JSON way).

Global flags (before the command):
  --server HOST:PORT     the server (default: the one logged in to, else
                         127.0.0.1:7070; also STARLING_SERVER)
  --tls                  connect with TLS (the system's CAs)
  --ca-file PATH         trust this PEM CA file instead (implies --tls)
  --server-name NAME     the name the certificate must be for (implies --tls)
login keeps the server and these TLS settings for the later commands.

Environment:
  STARLING_SERVER        the server, as --server
  STARLING_CONFIG_DIR    where the login is kept (default: the user config
                         dir, e.g. ~/.config/starling)
  STARLING_PASSWORD      the password for register and login (else
                         --password, a prompt, or a line on stdin)
  STARLING_ADMIN_KEY     the API key of the admin commands
`

// app is one invocation: its I/O and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	server         string // --server or STARLING_SERVER; "" means from the config
	tls            bool   // --tls
	caFile         string // --ca-file
	serverName     string // --server-name
	dir            string // config directory
	dialedTLS      bool   // the last connection made used TLS (for error hints)
	// adminCert is `starling admin --cert/--key`'s client certificate.
	adminCert *tls.Certificate
}

// command is one subcommand; args are what follows its name.
type command func(ctx context.Context, a *app, args []string) error

var commands = map[string]command{
	"register":      cmdRegister,
	"login":         cmdLogin,
	"logout":        cmdLogout,
	"whoami":        cmdWhoami,
	"send":          cmdSend,
	"gsend":         cmdGsend,
	"listen":        cmdListen,
	"chat":          cmdChat,
	"history":       cmdHistory,
	"conversations": cmdConversations,
	"inbox":         cmdInbox,
	"read":          cmdRead,
	"group":         cmdGroup,
	"groups":        cmdGroup,
	"friends":       cmdFriends,
	"block":         cmdBlock,
	"unblock":       cmdUnblock,
	"admin":         cmdAdmin,
}

// run is the whole program, callable in-process by tests: it parses the
// global flags, dispatches, and turns errors into one line on stderr and an
// exit code (0 ok, 1 failed, 2 bad usage).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("starling", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	globalFlags(fs, a)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			showUsage(stdout)
			return 0
		}
		return a.fail(usageErrorf("%v (see 'starling --help')", err))
	}
	if a.server == "" {
		a.server = os.Getenv("STARLING_SERVER")
	}
	if fs.NArg() == 0 {
		showUsage(stderr)
		return 2
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			showUsage(stdout)
			return 0
		}
		// `starling help group create` is `starling group create --help`.
		name, rest = rest[0], append(rest[1:], "--help")
	}
	cmd, ok := commands[name]
	if !ok {
		return a.fail(usageErrorf("unknown command %q (see 'starling --help')", name))
	}
	dir, err := configDir()
	if err != nil {
		return a.fail(err)
	}
	a.dir = dir
	return a.fail(cmd(ctx, a, rest))
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// fail prints err as one line and returns the exit code for it.
func (a *app) fail(err error) int {
	if err == nil {
		return 0
	}
	if h, ok := asHelp(err); ok {
		showText(a.stdout, helpText(h))
		return 0
	}
	say(a.stderr, "starling: %s\n", a.describe(err))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// describe is describe(err) with a hint when the connection failed on
// TLS: a plaintext client at a TLS server (or the reverse) and a
// certificate the client does not trust.
func (a *app) describe(err error) string {
	return describe(err) + tlsHint(err, a.dialedTLS)
}

// describe makes the one line a person reads: the server's status message
// (it is written for clients) rather than gRPC's "rpc error: code = …"
// framing, with a hint where one helps.
func describe(err error) string {
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) {
		// The client library's own errors start with "starling: " too.
		return strings.ReplaceAll(err.Error(), "starling: ", "")
	}
	st := gs.GRPCStatus()
	msg := st.Message()
	// Keep what the CLI said before the status ("send to bob: …").
	if full, inner := err.Error(), st.Err().Error(); strings.HasSuffix(full, inner) && full != inner {
		msg = strings.TrimSuffix(full, inner) + msg
	}
	switch st.Code() {
	case codes.Unauthenticated:
		if errors.Is(err, client.ErrUnauthenticated) || strings.Contains(msg, "token") {
			msg += " (log in again: starling login <username>)"
		}
	case codes.Unavailable:
		msg = "server unavailable: " + msg
	}
	return msg
}
