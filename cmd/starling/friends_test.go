package main

import (
	"strings"
	"testing"
	"time"

	"github.com/starling-im/starling/server/servertest"
)

func TestFriendsCommands(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")

	l := bob.listen(t, "--json")
	if out := alice.ok("friends", "request", "bob", "it's", "alice"); !strings.Contains(out, "asked bob") {
		t.Fatalf("friends request: %q", out)
	}
	if ev := l.waitLines(t, 2)[1]; ev["event"] != "friend request" || ev["actor"] != "alice" || ev["message"] != "it's alice" || ev["seq"] != float64(1) {
		t.Fatalf("listen printed %v", ev)
	}
	alice.fails(1, "already pending", "friends", "request", "bob")
	alice.fails(1, "yourself", "friends", "request", "alice")
	alice.fails(1, "no user named", "friends", "request", "nobody")
	if out := bob.ok("friends", "requests"); !strings.Contains(out, "from alice: it's alice") {
		t.Fatalf("friends requests: %q", out)
	}
	if out := alice.ok("friends", "requests", "--outgoing"); !strings.Contains(out, "to bob") {
		t.Fatalf("friends requests --outgoing: %q", out)
	}
	bob.ok("friends", "accept", "alice")
	if ev := l.waitLines(t, 3)[2]; ev["event"] != "friend request accepted" || ev["user"] != "alice" {
		t.Fatalf("listen printed %v", ev)
	}
	l.stop(t)
	// Bob's stream ends as the listen stops; presence follows once the
	// server has seen it close, so poll for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out := alice.ok("friends")
		if strings.Contains(out, "bob\toffline") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("friends: %q; want bob offline", out)
		}
	}
	if out := bob.ok("friends", "list", "--json"); !strings.Contains(out, `"username":"alice"`) {
		t.Fatalf("friends list --json: %q", out)
	}

	alice.ok("block", "bob")
	if out := alice.ok("block", "list"); out != "bob\n" {
		t.Fatalf("block list: %q", out)
	}
	bob.fails(1, "a block between you", "send", "alice", "hi")
	alice.fails(1, "a block between you", "send", "bob", "hi")
	alice.ok("unblock", "bob")
	bob.ok("send", "alice", "hi again")
	alice.ok("friends", "remove", "bob")
	if out := alice.ok("friends"); out != "no friends yet\n" {
		t.Fatalf("friends after remove: %q", out)
	}
	alice.fails(1, "not your friend", "friends", "remove", "bob")
	alice.fails(1, "no such pending friend request", "friends", "accept", "bob")
	alice.fails(2, "unknown command", "friends", "poke", "bob")
	alice.fails(2, "missing arguments", "block")

	// A later listen prints only what is new: the events since.
	l = bob.listen(t)
	lines := l.waitText(t, "alice removed bob from friends")
	l.stop(t)
	if strings.Contains(lines, "to be friends") {
		t.Fatalf("second listen printed old events: %q", lines)
	}
}

// waitText waits until the listen printed want and returns what it printed.
// The deadline allows for a reconnect's backoff.
func (l *listener) waitText(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := l.stdout.String()
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen printed %q, stderr %q; want %q", out, l.stderr.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
