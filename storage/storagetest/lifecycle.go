package storagetest

import (
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var lifecycleTests = []test{
	{"ReopenKeepsData", testReopen},
	{"RestartBetweenWrites", testRestartBetweenWrites},
	{"Close", testClose},
}

// testReopen opens the same database three times: the migrations run again
// each time, harmlessly, and the data stays.
func testReopen(t *testing.T, f Factory) {
	open := f(t)
	s := open(t)
	must(t, s.CreateUser(t.Context(), storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}), "create user")
	must(t, s.Close(), "close")
	for i := range 2 {
		s = open(t)
		u, err := s.GetUser(t.Context(), "u1")
		must(t, err, "get user after reopening")
		if u.Username != "alice" {
			t.Fatalf("after reopening: username %q, want alice", u.Username)
		}
		if i == 0 {
			must(t, s.CreateUser(t.Context(), storage.User{ID: "u2", Username: "bob", CreatedAt: time.Now()}), "create user after reopening")
		}
		must(t, s.Close(), "close")
	}
	s = open(t)
	_, err := s.GetUserByUsername(t.Context(), "bob")
	must(t, err, "user created after the first reopening")
}

func testRestartBetweenWrites(t *testing.T, f Factory) {
	open := f(t)
	fx := &fixture{t: t, s: open(t)}
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	first := fx.msg(conv, "alice", "before the restart")
	fx.append(first)
	fx.send(conv, "bob", 2)
	must(t, fx.s.Close(), "close")

	fx.s = open(t)
	res := fx.append(first)
	if !res[0].Duplicate {
		t.Fatal("resend after a restart stored again")
	}
	wantMessage(t, res[0].Message, stored(first, 1), "resend after a restart")
	next := fx.msg(conv, "alice", "after the restart")
	res = fx.append(next)
	wantMessage(t, res[0].Message, stored(next, 4), "first message after a restart")
	got := fx.wantSeqs(conv, 4)
	wantMessage(t, got[0], stored(first, 1), "message from before the restart")
	if m := fx.membership(conv, "bob"); !m.Active() {
		t.Fatalf("membership after restart = %+v, want active", m)
	}
}

func testClose(t *testing.T, f Factory) {
	s := newStore(t, f)
	must(t, s.Close(), "close")
	_ = s.Close() // harmless (open's cleanup closes once more); its error is the backend's choice
	if _, err := s.GetUser(t.Context(), "u1"); err == nil {
		t.Fatal("GetUser after Close succeeded, want an error")
	}
	if _, err := s.AppendMessages(t.Context(), []storage.NewMessage{{
		ConversationID: storage.C2CConversationID("a", "b"), SenderID: "a", ClientMsgID: "x", CreatedAt: time.Now(),
	}}); err == nil {
		t.Fatal("AppendMessages after Close succeeded, want an error")
	}
}
