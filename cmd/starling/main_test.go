package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starling-im/starling/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const pw = "correct horse battery"

// user is one person at the command line: their own config directory.
type user struct {
	t   *testing.T
	srv *servertest.Server
	dir string
}

func newUser(t *testing.T, srv *servertest.Server) *user {
	return &user{t: t, srv: srv, dir: t.TempDir()}
}

// env points the program at this user's config and the test server. Tests
// using it must not run in parallel (t.Setenv enforces that).
func (u *user) env() {
	u.t.Setenv("STARLING_CONFIG_DIR", u.dir)
	u.t.Setenv("STARLING_SERVER", u.srv.Target())
	u.t.Setenv("STARLING_PASSWORD", "")
}

// run runs the CLI in-process with stdin and returns stdout, stderr and the
// exit code.
func (u *user) runIn(stdin string, args ...string) (string, string, int) {
	u.t.Helper()
	u.env()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(u.t.Context(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func (u *user) run(args ...string) (string, string, int) {
	u.t.Helper()
	return u.runIn("", args...)
}

// ok runs a command that must succeed and returns its stdout.
func (u *user) ok(args ...string) string {
	u.t.Helper()
	out, errOut, code := u.run(args...)
	if code != 0 {
		u.t.Fatalf("starling %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs a command that must fail with code and one line on stderr
// containing want.
func (u *user) fails(code int, want string, args ...string) {
	u.t.Helper()
	out, errOut, got := u.run(args...)
	if got != code || !strings.Contains(errOut, want) || strings.Count(errOut, "\n") != 1 || out != "" {
		u.t.Fatalf("starling %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q",
			strings.Join(args, " "), got, out, errOut, code, want)
	}
}

// signup registers and logs in.
func signup(t *testing.T, srv *servertest.Server, name string) *user {
	u := newUser(t, srv)
	u.ok("register", name, "--password", pw)
	u.ok("login", name, "--password", pw, "--device", "cli")
	return u
}

func TestAccounts(t *testing.T) {
	srv := servertest.Start(t)
	alice := newUser(t, srv)

	if out := alice.ok("register", "alice", "--password", pw); !strings.Contains(out, "registered alice") {
		t.Fatalf("register: %q", out)
	}
	alice.fails(1, "username is taken", "register", "alice", "--password", pw)
	alice.fails(1, "password", "register", "bob", "--password", "short")
	alice.fails(1, "not logged in", "whoami")
	alice.fails(1, "wrong username or password", "login", "alice", "--password", "wrong password")

	// Password on stdin, flag after the positional argument.
	out, errOut, code := alice.runIn(pw+"\n", "login", "alice", "--device", "laptop")
	if code != 0 || !strings.Contains(out, "logged in as alice on device laptop") {
		t.Fatalf("login: %d %q %q", code, out, errOut)
	}
	fi, err := os.Stat(filepath.Join(alice.dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("config.json has mode %v, want 0600", perm)
	}

	if out := alice.ok("whoami"); !strings.Contains(out, "alice") || !strings.Contains(out, "laptop") {
		t.Fatalf("whoami: %q", out)
	}
	var who struct {
		Username string `json:"username"`
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal([]byte(alice.ok("whoami", "--json")), &who); err != nil || who.Username != "alice" || who.DeviceID != "laptop" {
		t.Fatalf("whoami --json: %+v, %v", who, err)
	}

	alice.ok("logout")
	alice.fails(1, "not logged in", "whoami")
	alice.fails(1, "not logged in", "send", "bob", "hi")
}

// STARLING_PASSWORD is used when --password is not given.
func TestPasswordFromEnv(t *testing.T) {
	srv := servertest.Start(t)
	u := newUser(t, srv)
	u.env()
	t.Setenv("STARLING_PASSWORD", pw)
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"register", "carol"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("register: %d %s", code, errOut.String())
	}
	if code := run(t.Context(), []string{"login", "carol"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("login: %d %s", code, errOut.String())
	}
	// No password anywhere: a clear error.
	t.Setenv("STARLING_PASSWORD", "")
	errOut.Reset()
	if code := run(t.Context(), []string{"login", "carol"}, strings.NewReader(""), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no password") {
		t.Fatalf("login without password: %d %s", code, errOut.String())
	}
}

func TestSendAndHistory(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")

	if out := alice.ok("send", "bob", "hello", "there"); !strings.Contains(out, "#1") {
		t.Fatalf("send: %q", out)
	}
	var ack struct {
		Seq            int64  `json:"seq"`
		ConversationID string `json:"conversation_id"`
	}
	if err := json.Unmarshal([]byte(bob.ok("send", "alice", "--json", "hi alice")), &ack); err != nil || ack.Seq != 2 {
		t.Fatalf("send --json: %+v %v", ack, err)
	}

	out := bob.ok("history", "alice")
	if !strings.Contains(out, "alice: hello there") || !strings.Contains(out, "bob: hi alice") ||
		strings.Index(out, "hello there") > strings.Index(out, "hi alice") {
		t.Fatalf("history:\n%s", out)
	}
	lines := jsonLines(t, alice.ok("history", "bob", "--json"))
	if len(lines) != 2 || lines[0]["text"] != "hello there" || lines[1]["sender"] != "bob" {
		t.Fatalf("history --json: %v", lines)
	}
	if lines := jsonLines(t, alice.ok("history", "bob", "--json", "--before", "2")); len(lines) != 1 || lines[0]["text"] != "hello there" {
		t.Fatalf("history --before 2: %v", lines)
	}
	if lines := jsonLines(t, alice.ok("history", ack.ConversationID, "--json", "--limit", "1")); len(lines) != 1 || lines[0]["text"] != "hi alice" {
		t.Fatalf("history --limit 1: %v", lines)
	}
	if out := alice.ok("conversations"); !strings.HasPrefix(out, "@bob ") || !strings.Contains(out, "latest #2") || strings.Contains(out, "c2c:") {
		t.Fatalf("conversations: %q; want @bob and no ids", out)
	}
	if out := alice.ok("conversations", "-v"); !strings.HasPrefix(out, "@bob ") || !strings.HasSuffix(out, "  ("+ack.ConversationID+")\n") {
		t.Fatalf("conversations -v: %q; want the id", out)
	}
	if lines := jsonLines(t, alice.ok("conversations", "--json")); len(lines) != 1 || lines[0]["conversation_id"] != ack.ConversationID || lines[0]["name"] != "@bob" {
		t.Fatalf("conversations --json: %v", lines)
	}

	alice.fails(1, `no user or group of yours named "nobody"`, "send", "nobody", "hi")
	alice.fails(1, `no user or group of yours named "nobody"`, "history", "nobody")
	alice.fails(2, "missing arguments", "send", "bob")
	alice.fails(2, "--limit", "history", "bob", "--limit", "0")
	alice.fails(2, "unknown command", "frobnicate")
	alice.fails(2, "flag provided but not defined", "send", "--frob", "bob", "x")
}

func TestGroupCommands(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob, carol := signup(t, srv, "alice"), signup(t, srv, "bob"), signup(t, srv, "carol")

	var g struct {
		GroupID     string `json:"group_id"`
		MemberCount int    `json:"member_count"`
	}
	if err := json.Unmarshal([]byte(alice.ok("group", "create", "friends", "bob", "--json")), &g); err != nil || g.GroupID == "" || g.MemberCount != 2 {
		t.Fatalf("group create: %+v %v", g, err)
	}
	if out := alice.ok("group", "add", g.GroupID, "carol"); !strings.Contains(out, "carol") {
		t.Fatalf("group add: %q", out)
	}
	if out := bob.ok("group", "show", g.GroupID); !strings.Contains(out, "group #friends ("+g.GroupID+")") || !strings.Contains(out, "alice, bob, carol") && !strings.Contains(out, "(3)") {
		t.Fatalf("group show: %q", out)
	}
	l := bob.listen(t)
	l.waitText(t, "listening as bob")
	alice.ok("gsend", g.GroupID, "hello", "friends")
	carol.ok("gsend", g.GroupID, "hi")
	// Groups show by name, people by username; ids only on request.
	l.waitText(t, "] carol: hi\n")
	l.stop(t)
	for what, out := range map[string]string{"listen": l.stdout.String(), "history": bob.ok("history", g.GroupID)} {
		if !strings.Contains(out, " [#friends #3] alice: hello friends\n") || !strings.Contains(out, " [#friends #4] carol: hi\n") || strings.Contains(out, "grp:") {
			t.Fatalf("%s printed %q; want [#friends #N] lines", what, out)
		}
	}
	if out := bob.ok("conversations"); !strings.Contains(out, "#friends ") || strings.Contains(out, g.GroupID) {
		t.Fatalf("conversations: %q; want #friends and no ids", out)
	}
	if out := bob.ok("conversations", "-v"); !strings.Contains(out, "#friends ") || !strings.Contains(out, "(grp:"+g.GroupID+")") {
		t.Fatalf("conversations -v: %q; want #friends with its id", out)
	}
	if out := bob.ok("inbox"); !strings.HasPrefix(out, "#friends ") || strings.Contains(out, g.GroupID) {
		t.Fatalf("inbox: %q; want #friends and no ids", out)
	}

	if out := carol.ok("group", "leave", g.GroupID); !strings.Contains(out, "left") {
		t.Fatalf("group leave: %q", out)
	}
	// Carol may no longer look the group up: its id stands in for the name.
	if out := carol.ok("history", "grp:"+g.GroupID); !strings.Contains(out, "[#"+g.GroupID+" #4] carol: hi\n") {
		t.Fatalf("history of a group left: %q; want the id in place of the name", out)
	}
	carol.fails(1, "", "gsend", g.GroupID, "still here?")
	alice.fails(1, "no user named", "group", "create", "x", "nobody")
	alice.fails(1, "", "group", "show", "no-such-group")
	alice.fails(2, "unknown command", "group", "rename", g.GroupID)
	alice.fails(2, "missing arguments", "group", "add", g.GroupID)
}

// listen prints what arrives; a second run prints only what is new.
func TestListen(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	alice.ok("send", "bob", "before listen")

	l := bob.listen(t, "--json")
	l.waitLines(t, 2)
	alice.ok("send", "bob", "during listen")
	// send runs as its own device, so bob's listen is not cut off by
	// bob sending from another terminal; it sees its own message too.
	bob.ok("send", "alice", "from bob")
	lines := l.waitLines(t, 4)
	l.stop(t)
	if lines[0]["event"] != "connected" || lines[0]["username"] != "bob" || lines[0]["device_id"] != "cli" || lines[0]["server"] != srv.Target() {
		t.Fatalf("listen's first line: %v", lines[0])
	}
	if msgs := lines[1:]; msgs[0]["text"] != "before listen" || msgs[1]["text"] != "during listen" || msgs[2]["text"] != "from bob" {
		t.Fatalf("listen printed %v", lines)
	}

	alice.ok("send", "bob", "after listen")
	l = bob.listen(t, "--json")
	l.waitLines(t, 2)
	time.Sleep(300 * time.Millisecond) // nothing old may follow
	lines = l.waitLines(t, 2)
	l.stop(t)
	if len(lines) != 2 || lines[1]["text"] != "after listen" {
		t.Fatalf("second listen printed %v", lines)
	}
}

// listen says when it is connected, and when a lost connection is back:
// a person at a terminal sees it working.
func TestListenSaysConnectedAndReconnected(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	l := bob.listen(t)
	connected := "listening as bob (device cli) on " + srv.Target() + "\n"
	l.waitText(t, connected)
	if got := l.stdout.String(); got != connected {
		t.Fatalf("listen printed %q first; want %q", got, connected)
	}
	srv.Restart(t)
	l.waitText(t, "reconnected to "+srv.Target()+"\n")
	alice.ok("send", "bob", "still there?")
	l.waitText(t, "[@alice #1] alice: still there?\n")
	l.stop(t)
}

// A listen ends with a clear error when the device is logged out.
func TestListenEndsOnLogout(t *testing.T) {
	srv := servertest.Start(t)
	bob := signup(t, srv, "bob")
	l := bob.listen(t)
	l.waitText(t, "listening as bob")
	bob.ok("logout")
	select {
	case <-l.done:
		if l.exit != 1 || !strings.Contains(l.stderr.String(), "logged out") {
			t.Fatalf("listen: exit %d, stderr %q", l.exit, l.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not end")
	}
}

func TestChat(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	out, errOut, code := alice.runIn("first line\n\nsecond line\n", "chat", "bob")
	if code != 0 || !strings.Contains(out, "alice: first line") || !strings.Contains(out, "alice: second line") {
		t.Fatalf("chat: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out := bob.ok("history", "alice"); strings.Count(out, "\n") != 2 {
		t.Fatalf("history after chat: %q", out)
	}
	alice.fails(1, "no user named", "chat", "nobody")
}

// listener is a `listen` running in the background.
type listener struct {
	cancel context.CancelFunc
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when run returned
	exit   int           // run's result, once done
}

func (u *user) listen(t *testing.T, args ...string) *listener {
	t.Helper()
	u.env()
	return u.listenNoEnv(t, args...)
}

// listenNoEnv is listen in the environment as the test set it.
func (u *user) listenNoEnv(t *testing.T, args ...string) *listener {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	l := &listener{cancel: cancel, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.exit = run(ctx, append([]string{"listen"}, args...), strings.NewReader(""), l.stdout, l.stderr)
	}()
	t.Cleanup(func() { cancel(); <-l.done })
	// run reads the process environment (config dir, server) as it
	// starts; the test's next command may set another user's, so the
	// listen must be connected, its environment read, before that.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(l.stdout.String(), "listening as") && !strings.Contains(l.stdout.String(), `"event":"connected"`) {
		select {
		case <-l.done:
			t.Fatalf("listen ended before it connected: exit %d, stdout %q, stderr %q", l.exit, l.stdout.String(), l.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen did not connect: stdout %q, stderr %q", l.stdout.String(), l.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return l
}

// waitLines waits until n JSON lines were printed and returns them.
func (l *listener) waitLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := l.stdout.String()
		if strings.Count(out, "\n") >= n {
			return jsonLines(t, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen printed %q, stderr %q; want %d lines", out, l.stderr.String(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop interrupts the listen, as Ctrl-C does, and checks it exits 0.
func (l *listener) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	<-l.done
	if l.exit != 0 {
		t.Fatalf("interrupted listen exited %d: %s", l.exit, l.stderr.String())
	}
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inbox shows unread counts and ticks; read clears them.
func TestInboxAndRead(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	alice.ok("send", "bob", "one")
	alice.ok("send", "bob", "two")
	if out := bob.ok("inbox"); !strings.Contains(out, "@alice") || !strings.Contains(out, "2 unread") || !strings.Contains(out, "alice: two") {
		t.Fatalf("inbox: %q", out)
	}
	if out := bob.ok("read", "alice"); !strings.Contains(out, "read up to #2") {
		t.Fatalf("read: %q", out)
	}
	lines := jsonLines(t, bob.ok("inbox", "--json"))
	if len(lines) != 1 || lines[0]["unread"] != float64(0) || lines[0]["read_seq"] != float64(2) {
		t.Fatalf("inbox --json after read: %v", lines)
	}
	if out := alice.ok("inbox"); !strings.Contains(out, "✓✓") {
		t.Fatalf("alice's inbox has no read ticks: %q", out)
	}
	bob.fails(1, "", "read", "alice", "--seq", "9")
	bob.fails(2, "--limit", "inbox", "--limit", "0")
}

// listen prints receipts: here bob's own read cursor, moved by another
// of his devices.
func TestListenPrintsReceipts(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	alice.ok("send", "bob", "hello")
	l := bob.listen(t, "--json")
	l.waitLines(t, 2)
	bob.ok("read", "alice")
	lines := l.waitLines(t, 3)
	l.stop(t)
	if lines[2]["event"] != "receipt" || lines[2]["user"] != "bob" || lines[2]["read_seq"] != float64(1) {
		t.Fatalf("listen printed %v", lines)
	}
}
