// Package storagetest is the conformance suite of storage.Store: every
// backend runs it from its own tests, so all backends behave alike.
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t testing.TB) func(testing.TB) storage.Store {
//			path := filepath.Join(t.TempDir(), "db")
//			return func(t testing.TB) storage.Store {
//				s, err := mybackend.Open(t.Context(), path)
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { s.Close() })
//				return s
//			}
//		})
//	}
//
// Every test gets a database of its own, and they run in parallel.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

// Factory makes a fresh, empty database and returns a function that opens
// it. Calling open again after closing the previous Store reopens the SAME
// database (a restart). open registers t.Cleanup to close what it opened
// (so Close must be harmless when called twice).
type Factory func(t testing.TB) (open func(t testing.TB) storage.Store)

// Run runs every conformance test as subtests of t.
func Run(t *testing.T, factory Factory) {
	for _, group := range []struct {
		name  string
		tests []test
	}{
		{"Users", userTests},
		{"Sessions", sessionTests},
		{"Groups", groupTests},
		{"GroupRoles", groupRoleTests},
		{"Messages", messageTests},
		{"Cursors", cursorTests},
		{"ReadState", readStateTests},
		{"Lifecycle", lifecycleTests},
		{"NodeLeases", leaseTests},
		{"Friends", friendTests},
		{"Admin", adminTests},
	} {
		t.Run(group.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range group.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, factory)
				})
			}
		})
	}
}

type test struct {
	name string
	run  func(t *testing.T, f Factory)
}

// newStore opens a fresh, empty store for one test.
func newStore(t *testing.T, f Factory) storage.Store {
	t.Helper()
	return f(t)(t)
}

// wantErr fails the test unless err is target (through wrapping).
func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// sameTime accepts the millisecond precision the contract promises.
func sameTime(a, b time.Time) bool {
	return a.Sub(b).Abs() < time.Millisecond
}

// diffMessage says how two messages differ, or returns "".
func diffMessage(got, want storage.Message) string {
	switch {
	case got.ConversationID != want.ConversationID:
		return fmt.Sprintf("ConversationID %q, want %q", got.ConversationID, want.ConversationID)
	case got.Seq != want.Seq:
		return fmt.Sprintf("Seq %d, want %d", got.Seq, want.Seq)
	case got.MsgID != want.MsgID:
		return fmt.Sprintf("MsgID %d, want %d", got.MsgID, want.MsgID)
	case got.SenderID != want.SenderID:
		return fmt.Sprintf("SenderID %q, want %q", got.SenderID, want.SenderID)
	case got.SenderDeviceID != want.SenderDeviceID:
		return fmt.Sprintf("SenderDeviceID %q, want %q", got.SenderDeviceID, want.SenderDeviceID)
	case got.ClientMsgID != want.ClientMsgID:
		return fmt.Sprintf("ClientMsgID %q, want %q", got.ClientMsgID, want.ClientMsgID)
	case !bytes.Equal(got.Content, want.Content):
		return fmt.Sprintf("Content %q, want %q", got.Content, want.Content)
	case !sameTime(got.CreatedAt, want.CreatedAt):
		return fmt.Sprintf("CreatedAt %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	return ""
}

func wantMessage(t testing.TB, got, want storage.Message, what string) {
	t.Helper()
	if d := diffMessage(got, want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// fixture builds test data with ids that are unique within one store.
type fixture struct {
	t     *testing.T
	s     storage.Store
	msgID atomic.Int64
	cmid  atomic.Int64
}

func newFixture(t *testing.T, f Factory) *fixture {
	return &fixture{t: t, s: newStore(t, f)}
}

// users creates users with these ids (username "name-<id>").
func (fx *fixture) users(ids ...string) {
	fx.t.Helper()
	for _, id := range ids {
		must(fx.t, fx.s.CreateUser(fx.t.Context(), storage.User{
			ID:           id,
			Username:     "name-" + id,
			DisplayName:  "User " + id,
			PasswordHash: []byte("hash-" + id),
			CreatedAt:    time.Now(),
		}), "create user "+id)
	}
}

// group creates a group owned by its first member.
func (fx *fixture) group(id string, members ...string) {
	fx.t.Helper()
	g := storage.Group{ID: id, Name: "Group " + id, OwnerID: members[0], CreatedAt: time.Now()}
	must(fx.t, fx.s.CreateGroup(fx.t.Context(), g, members, 100), "create group "+id)
}

// msg makes a new message with fresh MsgID and ClientMsgID. For c2c
// conversations it sets Members to both users.
func (fx *fixture) msg(conv, sender, content string) storage.NewMessage {
	m := storage.NewMessage{
		ConversationID: conv,
		MsgID:          1000 + fx.msgID.Add(1),
		SenderID:       sender,
		SenderDeviceID: "dev-" + sender,
		ClientMsgID:    fmt.Sprintf("cmid-%d", fx.cmid.Add(1)),
		Content:        []byte(content),
		CreatedAt:      time.Now(),
	}
	if p, err := storage.ParseConversationID(conv); err == nil && p.Kind == storage.KindC2C {
		m.Members = []string{p.Users[0], p.Users[1]}
	}
	return m
}

// append stores msgs and checks the result count.
func (fx *fixture) append(msgs ...storage.NewMessage) []storage.AppendResult {
	fx.t.Helper()
	res, err := fx.s.AppendMessages(fx.t.Context(), msgs)
	must(fx.t, err, "append messages")
	if len(res) != len(msgs) {
		fx.t.Fatalf("append %d messages: got %d results", len(msgs), len(res))
	}
	return res
}

// send appends n messages to conv from sender, one call each, and returns
// the last seq.
func (fx *fixture) send(conv, sender string, n int) int64 {
	fx.t.Helper()
	var seq int64
	for i := range n {
		seq = fx.append(fx.msg(conv, sender, fmt.Sprintf("message %d", i)))[0].Message.Seq
	}
	return seq
}

func (fx *fixture) latestSeq(conv string) int64 {
	fx.t.Helper()
	seq, err := fx.s.LatestSeq(fx.t.Context(), conv)
	must(fx.t, err, "latest seq of "+conv)
	return seq
}

func (fx *fixture) membership(conv, user string) storage.Membership {
	fx.t.Helper()
	m, err := fx.s.GetMembership(fx.t.Context(), conv, user)
	must(fx.t, err, fmt.Sprintf("membership of %s in %s", user, conv))
	return m
}

// wantSeqs checks that the conversation holds exactly seqs 1..n.
func (fx *fixture) wantSeqs(conv string, n int64) []storage.Message {
	fx.t.Helper()
	got, err := fx.s.ListMessages(fx.t.Context(), conv, 0, storage.OpenSeq, int(n)+10)
	must(fx.t, err, "list messages")
	if int64(len(got)) != n {
		fx.t.Fatalf("%s holds %d messages, want %d", conv, len(got), n)
	}
	for i, m := range got {
		if m.Seq != int64(i)+1 {
			fx.t.Fatalf("%s: message %d has seq %d, want %d", conv, i, m.Seq, i+1)
		}
	}
	if l := fx.latestSeq(conv); l != n {
		fx.t.Fatalf("LatestSeq(%s) = %d, want %d", conv, l, n)
	}
	return got
}

func seqsOf(msgs []storage.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}
