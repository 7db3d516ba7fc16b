package readmetest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How long one command may take, and how long a background command may
// take to print a line the README says it prints. Generous: the binaries
// are race-built under `go test -race`, on machines that may be loaded.
// Nothing waits this long when the README is right.
const (
	stepTimeout  = time.Minute
	watchTimeout = 30 * time.Second
	pollInterval = 20 * time.Millisecond
)

// terminal is one shell of the walkthrough: a bash reading the commands
// from the test, in the work directory (where bin/ is), with the
// terminal's own exports. The shell's standard output carries only the
// test's markers; every command's output goes to a file of its own.
type terminal struct {
	t      *testing.T
	name   string
	dir    string // where output files go
	stdin  io.WriteCloser
	lines  chan string // the shell's stdout
	stderr *lockedBuffer
	n      int     // commands run, for file names
	bg     *bgProc // the background command, if one runs
}

// bgProc is a background command (starlingd, listen) and what of its
// output the README's lines have matched already.
type bgProc struct {
	pid  int
	line int
	cmd  string
	out  string       // its output file
	used map[int]bool // output lines already matched
}

func newTerminal(t *testing.T, bash, workDir, outDir string, env []string, name string) *terminal {
	t.Helper()
	cmd := exec.Command(bash, "--noprofile", "--norc")
	cmd.Dir = workDir
	cmd.Env = env
	// Its own process group, so the cleanup reaches every process the
	// README started from it, even when a step failed half-way.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, name: name, dir: outDir, stdin: stdin, lines: make(chan string, 16), stderr: &lockedBuffer{}}
	cmd.Stderr = term.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(term.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			term.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		stdin.Close()
		for range term.lines { // unblock the reader if it waits to send
		}
		<-read
		cmd.Wait()
	})
	// A pipeline fails when any command of it fails: stricter than a
	// reader's shell, so a README pipeline cannot fail unseen.
	term.send("set -o pipefail\n")
	return term
}

func (term *terminal) send(script string) {
	if _, err := io.WriteString(term.stdin, script); err != nil {
		term.t.Fatalf("terminal %s: writing to its shell: %v (its stderr: %s)", term.name, err, term.stderr)
	}
}

// await returns the value of the shell's next marker line "@@<what> <n>".
func (term *terminal) await(what string, s step) int {
	term.t.Helper()
	timer := time.NewTimer(stepTimeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-term.lines:
			if !ok {
				term.t.Fatalf("README.md:%d (terminal %s): the shell ended (stderr: %s)", s.line, term.name, term.stderr)
			}
			if v, found := strings.CutPrefix(line, "@@"+what+" "); found {
				n, err := strconv.Atoi(v)
				if err != nil {
					term.t.Fatalf("terminal %s: bad marker %q", term.name, line)
				}
				return n
			}
		case <-timer.C:
			term.t.Fatalf("README.md:%d (terminal %s): still running after %v: %s", s.line, term.name, stepTimeout, s.cmd)
		}
	}
}

// run runs one command to its end and returns its output and exit status.
func (term *terminal) run(s step, cmd string) (string, int) {
	term.t.Helper()
	term.n++
	out := filepath.Join(term.dir, fmt.Sprintf("%s-%d.out", term.name, term.n))
	// Braces, not a subshell: what the command exports stays. stdin is
	// /dev/null: the shell's stdin is the test's script.
	term.send(fmt.Sprintf("{ %s\n} </dev/null >%s 2>&1; echo \"@@rc $?\"\n", cmd, out))
	rc := term.await("rc", s)
	b, err := os.ReadFile(out)
	if err != nil {
		term.t.Fatal(err)
	}
	return string(b), rc
}

// start starts the terminal's background command.
func (term *terminal) start(s step, cmd string) {
	term.t.Helper()
	if term.bg != nil {
		term.t.Fatalf("README.md:%d (terminal %s): %s starts while %s (line %d) still runs: stop it first (# Ctrl-C)",
			s.line, term.name, s.cmd, term.bg.cmd, term.bg.line)
	}
	term.n++
	out := filepath.Join(term.dir, fmt.Sprintf("%s-%d.out", term.name, term.n))
	term.send(fmt.Sprintf("%s </dev/null >%s 2>&1 &\necho \"@@pid $!\"\n", cmd, out))
	pid := term.await("pid", s)
	term.bg = &bgProc{pid: pid, line: s.line, cmd: s.cmd, out: out, used: map[int]bool{}}
}

// watch waits until the background command prints a line matching
// pattern that no earlier pattern matched.
func (term *terminal) watch(s step, pattern string) {
	term.t.Helper()
	bg := term.bg
	if bg == nil {
		term.t.Fatalf("README.md:%d: terminal %s runs nothing in the background to print %q", s.line, term.name, pattern)
	}
	re := linePattern(pattern)
	deadline := time.Now().Add(watchTimeout)
	for {
		b, _ := os.ReadFile(bg.out)
		lines := outputLines(string(b))
		if !bytes.HasSuffix(b, []byte("\n")) && len(lines) > 0 {
			lines = lines[:len(lines)-1] // a line being written
		}
		for i, l := range lines {
			if !bg.used[i] && re.MatchString(l) {
				bg.used[i] = true
				return
			}
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("README.md:%d: terminal %s's %q did not print %q within %v; it printed:\n%s",
				s.line, term.name, bg.cmd, pattern, watchTimeout, b)
		}
		time.Sleep(pollInterval)
	}
}

// stop interrupts the background command (Ctrl-C) and checks that it ends
// with status 0 and logged no error.
func (term *terminal) stop(s step) {
	term.t.Helper()
	bg := term.bg
	if bg == nil {
		term.t.Fatalf("README.md:%d: Ctrl-C in terminal %s, where nothing runs", s.line, term.name)
	}
	if err := syscall.Kill(bg.pid, syscall.SIGINT); err != nil {
		term.t.Fatalf("README.md:%d: Ctrl-C to %s: %v", s.line, bg.cmd, err)
	}
	term.send(fmt.Sprintf("wait %d; echo \"@@rc $?\"\n", bg.pid))
	rc := term.await("rc", step{line: s.line, cmd: bg.cmd})
	b, _ := os.ReadFile(bg.out)
	if rc != 0 {
		term.t.Fatalf("README.md:%d: %s (terminal %s) exited %d on Ctrl-C; it printed:\n%s", bg.line, bg.cmd, term.name, rc, b)
	}
	if bytes.Contains(b, []byte("level=ERROR")) {
		term.t.Errorf("README.md:%d: %s (terminal %s) logged an error:\n%s", bg.line, bg.cmd, term.name, b)
	}
	term.bg = nil
}

// lockedBuffer is a shell's stderr, written by os/exec's copier and read
// by failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
