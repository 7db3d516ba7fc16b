package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// mainOut runs the program as the binary does and returns stdout, stderr
// and the exit code.
func mainOut(t *testing.T, getenv func(string) string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := realMain(t.Context(), args, getenv, &out, &errOut)
	return out.String(), errOut.String(), code
}

// --help and -h print the usage, every flag with its environment variable,
// on stdout, and exit 0 (not flag's "help requested" and 2).
func TestHelp(t *testing.T) {
	var c config
	var level string
	var names []string
	newFlagSet(&c, &level).VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	for _, arg := range []string{"--help", "-h", "-help"} {
		out, errOut, code := mainOut(t, noEnv, arg)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: starlingd") || strings.Contains(out, "help requested") {
			t.Fatalf("%s: exit %d, stderr %q, stdout:\n%s", arg, code, errOut, out)
		}
		for _, name := range names {
			line := regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(name) + `\b.*\(env ` + envName(name) + `[;)]`)
			if !line.MatchString(out) {
				t.Errorf("%s does not show --%s with %s:\n%s", arg, name, envName(name), out)
			}
		}
		if !strings.Contains(out, "  --data-dir string  (env STARLING_DATA_DIR; default \"./data\")") {
			t.Errorf("%s: no --data-dir line", arg)
		}
		if !strings.Contains(out, "gen-secret") {
			t.Errorf("%s does not mention gen-secret", arg)
		}
	}
	// Also after other flags, as `starlingd help`, and when the
	// environment or the command line holds a bad value: help is still
	// help.
	badEnv := func(k string) string {
		if k == "STARLING_TOKEN_TTL" {
			return "forever"
		}
		return ""
	}
	for _, args := range [][]string{{"--listen", "x:1", "--help"}, {"help"}, {"--bcrypt-cost", "99", "-h"}} {
		if out, errOut, code := mainOut(t, badEnv, args...); code != 0 || !strings.HasPrefix(out, "usage: starlingd") {
			t.Errorf("%q with a bad STARLING_TOKEN_TTL: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// Bad usage: exit 2, one line on stderr that points to --help, nothing on
// stdout.
func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--nope"},
		{"serve"},
		{"--bcrypt-cost", "2"},
		{"gen-secret", "extra"},
		{"--token-secret", strings.Repeat("s", 32), "--token-secret-file", "/etc/secret"},
	} {
		out, errOut, code := mainOut(t, noEnv, args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "starlingd: ") || !strings.Contains(errOut, "--help'") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and one line pointing to --help", args, code, out, errOut)
		}
	}
	// The environment counts as setting a flag.
	env := map[string]string{"STARLING_TOKEN_SECRET": strings.Repeat("s", 32)}
	if _, errOut, code := mainOut(t, func(k string) string { return env[k] }, "--token-secret-file", "/etc/secret"); code != 2 || !strings.Contains(errOut, "set one") {
		t.Errorf("STARLING_TOKEN_SECRET and --token-secret-file: exit %d, %q", code, errOut)
	}
}

func TestGenSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		out, errOut, code := mainOut(t, noEnv, "gen-secret")
		secret, ok := strings.CutSuffix(out, "\n")
		b, err := hex.DecodeString(secret)
		if code != 0 || errOut != "" || !ok || err != nil || len(b) != 32 {
			t.Fatalf("gen-secret: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if seen[secret] {
			t.Fatalf("gen-secret printed %s twice", secret)
		}
		seen[secret] = true
	}
	out, _, code := mainOut(t, noEnv, "gen-secret", "--help")
	if code != 0 || !strings.HasPrefix(out, "usage: starlingd gen-secret") {
		t.Fatalf("gen-secret --help: exit %d:\n%s", code, out)
	}
}

// --token-secret-file signs tokens with the file's secret (trailing newline
// dropped, nothing generated in the data dir); another secret refuses them;
// a file others may read is a warning in the log.
func TestTokenSecretFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	secretFile := filepath.Join(dir, "secret")
	secret, _, _ := mainOut(t, noEnv, "gen-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--data-dir", data, "--bcrypt-cost", "4", "--token-secret-file", secretFile}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	stop := startLogging(t, c, &log)
	token := registerAndLogin(t, c.Listen, "alice").token
	cc := dialNode(t, c.Listen)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "readable by every user") || !strings.Contains(log.String(), secretFile) {
		t.Errorf("a world-readable secret file was not warned about; log:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(data, "token-secret")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a secret was generated in the data dir although --token-secret-file was set (%v)", err)
	}

	// The same secret given by environment, without the newline: the
	// token still holds.
	list := func(c config) error {
		stop := start(t, c)
		defer stop()
		_, err := starlingv1.NewChatServiceClient(cc).ListConversations(contextWithToken(t.Context(), token), &starlingv1.ListConversationsRequest{})
		return err
	}
	env := map[string]string{"STARLING_TOKEN_SECRET": strings.TrimSpace(secret)}
	c2, err := parseConfig([]string{"--listen", c.Listen, "--data-dir", data, "--bcrypt-cost", "4"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := list(c2); err != nil {
		t.Fatalf("token under the same secret from STARLING_TOKEN_SECRET: %v", err)
	}
	// Another secret: refused.
	other, _, _ := mainOut(t, noEnv, "gen-secret")
	if err := os.WriteFile(secretFile, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := list(c); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("token under another secret: %v; want Unauthenticated", err)
	}

	// Unreadable, short: clear errors before anything is created.
	for name, content := range map[string]*string{"missing": nil, "short": ptr("0123456789\n")} {
		path := filepath.Join(dir, name)
		if content != nil {
			os.WriteFile(path, []byte(*content), 0o600)
		}
		fresh := filepath.Join(dir, "fresh-"+name)
		c, err := parseConfig([]string{"--listen", freeAddr(t), "--data-dir", fresh, "--token-secret-file", path}, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if err := run(t.Context(), c, &log); err == nil || !strings.Contains(err.Error(), "--token-secret-file") {
			t.Errorf("%s secret file: %v", name, err)
		}
		if _, err := os.Stat(fresh); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s secret file: the failed start left %s", name, fresh)
		}
	}
}

func ptr[T any](v T) *T { return &v }
