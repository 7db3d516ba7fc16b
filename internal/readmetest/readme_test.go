package readmetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestREADME follows the README's walkthrough ("Five minutes with the CLI"
// and "The same with grpcurl") as typed, one shell per terminal, against
// the starlingd the README starts, and checks that every command prints
// what the README says it prints (see script_test.go for the markup).
//
// It changes only what a second run on one machine must not share with
// the first, or with a reader's own server:
//   - the server address: 127.0.0.1:7070 in commands and outputs becomes a
//     free loopback port, which starlingd gets as STARLING_LISTEN and the
//     CLI as STARLING_SERVER;
//   - /tmp/ (the CLI's config directories) becomes a temporary directory;
//   - the work directory is a temporary one holding bin/ (built by the
//     test: see build), so ./bin/… and starlingd's ./data are the test's;
//   - the shells start with only PATH, HOME (temporary), the two
//     variables above and STARLING_BCRYPT_COST=4, so a developer's own
//     STARLING_* cannot leak in. The low bcrypt cost changes nothing the
//     README shows; it makes each register and login, hashed by a
//     race-built starlingd, take milliseconds instead of seconds.
func TestREADME(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: the README test builds starlingd, the CLI and grpcurl with it")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("the README's commands are shell commands: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseREADME(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	checkMarkup(t, blocks, root)

	work := t.TempDir()
	outDir := t.TempDir()
	began := time.Now()
	build(t, goBin, root, filepath.Join(work, "bin"))
	t.Logf("built starlingd, starling and grpcurl in %v", time.Since(began).Round(time.Second))
	began = time.Now()
	defer func() { t.Logf("ran the README in %v", time.Since(began).Round(time.Second)) }()

	addr := freeAddr(t)
	tmp := t.TempDir()
	rewrite := strings.NewReplacer("127.0.0.1:7070", addr, "/tmp/", tmp+"/")
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"STARLING_SERVER=" + addr,
		"STARLING_LISTEN=" + addr,
		"STARLING_BCRYPT_COST=4",
	}

	terms := map[string]*terminal{}
	var order []*terminal // in the order they opened: stopped in reverse
	ran := map[string]int{}
	for _, b := range blocks {
		term := terms[b.terminal]
		if term == nil {
			term = newTerminal(t, bash, work, outDir, env, b.terminal)
			terms[b.terminal] = term
			order = append(order, term)
		}
		for _, s := range b.steps {
			cmd := rewrite.Replace(s.cmd)
			switch s.kind {
			case buildStep:
				// Checked by checkMarkup; build did the same.
			case runStep:
				stepBegan := time.Now()
				out, rc := term.run(s, cmd)
				// Shown with -v, or when the test fails: what a reader sees.
				t.Logf("%s$ %s   (%v)\n%s", b.terminal, s.cmd, time.Since(stepBegan).Round(time.Millisecond), out)
				if rc != s.exit {
					t.Fatalf("README.md:%d (terminal %s): exit status %d, the README says %d:\n$ %s\n%s", s.line, b.terminal, rc, s.exit, s.cmd, out)
				}
				want := make([]string, len(s.expect))
				for i, p := range s.expect {
					want[i] = rewrite.Replace(p)
				}
				if got := outputLines(out); !matchLines(want, got) {
					t.Fatalf("README.md:%d (terminal %s): the output is not what the README says.\n$ %s\ngot:\n%s\nthe README says:\n%s",
						s.line, b.terminal, s.cmd, out, strings.Join(s.expect, "\n"))
				}
				ran[program(s.cmd)]++
			case bgStep:
				term.start(s, withoutComment(cmd))
				ran[program(s.cmd)]++
			case watchStep:
				target := term
				if s.target != "" {
					if target = terms[s.target]; target == nil {
						t.Fatalf("README.md:%d: there is no terminal %s", s.line, s.target)
					}
				}
				target.watch(s, rewrite.Replace(s.expect[0]))
			case stopStep:
				term.stop(s)
			}
		}
	}
	for i := len(order) - 1; i >= 0; i-- {
		if order[i].bg != nil {
			order[i].stop(step{line: order[i].bg.line})
		}
	}
	// A README that lost its markers must not pass by running nothing.
	for _, p := range []string{"./bin/starlingd", "./bin/starling", "./bin/grpcurl"} {
		if ran[p] == 0 {
			t.Errorf("the README's marked blocks run no %s command", p)
		}
	}
}

// checkMarkup checks what the README's marked blocks say before anything
// runs: build lines this test knows, and an output for every command the
// reader runs from bin/ (the README shows what each prints).
func checkMarkup(t *testing.T, blocks []block, root string) {
	t.Helper()
	if len(blocks) == 0 {
		t.Fatal("README.md has no <!-- readme-test: terminal NAME --> blocks")
	}
	for _, b := range blocks {
		for _, s := range b.steps {
			switch {
			case s.kind == buildStep && !buildCommands[withoutComment(s.cmd)]:
				t.Errorf("README.md:%d: %q is not a build this test knows (buildCommands)", s.line, s.cmd)
			case s.kind == runStep && strings.HasPrefix(program(s.cmd), "./bin/") && len(s.expect) == 0 && s.exit == 0:
				t.Errorf("README.md:%d: %q shows no output (# → …)", s.line, s.cmd)
			}
		}
	}
	// The README says `make build` is `go build -o bin/ ./cmd/...`.
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^build:.*\n\tgo build -o bin/ \./cmd/\.\.\.$`).Match(mk) {
		t.Error("the Makefile has no `build:` target running `go build -o bin/ ./cmd/...`, which the README promises")
	}
}

// program is the program a command runs: its first word after any
// VAR=value assignments.
func program(cmd string) string {
	for _, f := range strings.Fields(cmd) {
		if !regexp.MustCompile(`^\w+=`).MatchString(f) {
			return f
		}
	}
	return ""
}

// build builds what the README's build lines build into bin: starlingd and
// the CLI (with -race when the test is race-built, so `go test -race ./...`
// has compiled every package already and only the linking is left) and the
// pinned grpcurl (a few minutes the first time on a machine; cached after).
func build(t *testing.T, goBin, root, bin string) {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Minute))
		defer cancel()
	}
	own := []string{"build", "-o", bin + string(filepath.Separator)}
	if raceEnabled {
		own = append(own, "-race")
	}
	own = append(own, "./cmd/starlingd", "./cmd/starling")
	grpcurl := []string{"build", "-modfile=tools.mod", "-o", filepath.Join(bin, "grpcurl"), "github.com/fullstorydev/grpcurl/cmd/grpcurl"}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, args := range [][]string{own, grpcurl} {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, goBin, args...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// freeAddr is a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
