package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var cursorTests = []test{
	{"AdvanceNeverMovesBack", testAdvanceCursors},
	{"ListConversations", testListConversations},
}

// conversations lists the user's conversations as one device sees them,
// keyed by id, and their ids in the order returned.
func (fx *fixture) conversations(user, device string, onlyBehind bool) (map[string]storage.ConversationState, []string) {
	fx.t.Helper()
	list, err := fx.s.ListConversations(fx.t.Context(), user, device, onlyBehind)
	must(fx.t, err, fmt.Sprintf("list conversations of %s/%s", user, device))
	byID := make(map[string]storage.ConversationState, len(list))
	var order []string
	for i, cs := range list {
		if _, dup := byID[cs.ConversationID]; dup {
			fx.t.Fatalf("ListConversations(%s, %s) lists %s twice", user, device, cs.ConversationID)
		}
		if cs.UpdatedAt.IsZero() {
			fx.t.Fatalf("ListConversations(%s, %s): %s has no UpdatedAt", user, device, cs.ConversationID)
		}
		if i > 0 && cs.UpdatedAt.After(list[i-1].UpdatedAt) {
			fx.t.Fatalf("ListConversations(%s, %s) is not newest first: %s (%v) after %s (%v)",
				user, device, cs.ConversationID, cs.UpdatedAt, list[i-1].ConversationID, list[i-1].UpdatedAt)
		}
		byID[cs.ConversationID] = cs
		order = append(order, cs.ConversationID)
	}
	return byID, order
}

func (fx *fixture) delivered(user, device, conv string) int64 {
	fx.t.Helper()
	all, _ := fx.conversations(user, device, false)
	cs, ok := all[conv]
	if !ok {
		fx.t.Fatalf("%s is not among %s's conversations", conv, user)
	}
	return cs.DeliveredSeq
}

func testAdvanceCursors(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	ab := storage.C2CConversationID("alice", "bob")
	fx.send(ab, "bob", 10)
	advance := func(cs ...storage.DeviceCursor) {
		t.Helper()
		must(t, s.AdvanceCursors(ctx, cs), "advance cursors")
	}
	cur := func(user, device string, seq int64) storage.DeviceCursor {
		return storage.DeviceCursor{UserID: user, DeviceID: device, ConversationID: ab, DeliveredSeq: seq}
	}
	want := func(user, device string, seq int64) {
		t.Helper()
		if got := fx.delivered(user, device, ab); got != seq {
			t.Fatalf("cursor of %s/%s = %d, want %d", user, device, got, seq)
		}
	}

	want("alice", "phone", 0) // no cursor yet
	advance(cur("alice", "phone", 5))
	want("alice", "phone", 5)
	want("alice", "laptop", 0) // devices are independent
	want("bob", "phone", 0)    // and so are users
	advance(cur("alice", "phone", 3))
	want("alice", "phone", 5) // never back
	advance(cur("alice", "phone", 5))
	want("alice", "phone", 5)
	advance(cur("alice", "phone", 7), cur("alice", "laptop", 2), cur("bob", "phone", 9))
	want("alice", "phone", 7)
	want("alice", "laptop", 2)
	want("bob", "phone", 9)
	// Within one call too: the highest wins, whatever the order.
	advance(cur("alice", "laptop", 8), cur("alice", "laptop", 4))
	want("alice", "laptop", 8)
	advance() // nothing to do is fine
	want("alice", "phone", 7)
}

func testListConversations(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol", "dave", "erin")
	ab := storage.C2CConversationID("alice", "bob")
	g1, g2, g3 := storage.GroupConversationID("g1"), storage.GroupConversationID("g2"), storage.GroupConversationID("g3")
	fx.group("g1", "alice", "carol")
	fx.group("g2", "carol", "dave")
	fx.group("g3", "dave", "alice")

	// Activity, oldest first, with clear gaps so backends that order by
	// the messages' CreatedAt and those that use their own clock agree.
	tick := func() { time.Sleep(5 * time.Millisecond) }
	fx.send(g3, "dave", 2)
	must(t, s.LeaveGroup(ctx, "g3", "alice"), "alice leaves g3") // at seq 2
	fx.send(g3, "dave", 3)                                       // alice does not see these
	tick()
	fx.send(g2, "carol", 4)
	_, err := s.AddMembers(ctx, "g2", []string{"alice"}, 10) // alice joins g2 at seq 4
	must(t, err, "alice joins g2")
	tick()
	fx.send(g1, "carol", 2)
	tick()
	fx.send(ab, "bob", 3)

	type want struct {
		latest, delivered, joined int64
	}
	check := func(user, device string, onlyBehind bool, order []string, states map[string]want) {
		t.Helper()
		got, gotOrder := fx.conversations(user, device, onlyBehind)
		what := fmt.Sprintf("ListConversations(%s, %s, onlyBehind=%v)", user, device, onlyBehind)
		if fmt.Sprint(gotOrder) != fmt.Sprint(order) {
			t.Fatalf("%s = %v, want %v", what, gotOrder, order)
		}
		for conv, w := range states {
			cs := got[conv]
			if cs.LatestSeq != w.latest || cs.DeliveredSeq != w.delivered || cs.JoinedSeq != w.joined {
				t.Fatalf("%s: %s = latest %d, delivered %d, joined %d; want %d, %d, %d",
					what, conv, cs.LatestSeq, cs.DeliveredSeq, cs.JoinedSeq, w.latest, w.delivered, w.joined)
			}
		}
	}

	// g2 is not behind: alice joined at its latest seq. g3 stops where
	// she left.
	check("alice", "phone", false, []string{ab, g1, g2, g3}, map[string]want{
		ab: {3, 0, 0}, g1: {2, 0, 0}, g2: {4, 0, 4}, g3: {2, 0, 0},
	})
	check("alice", "phone", true, []string{ab, g1, g3}, nil)

	must(t, s.AdvanceCursors(ctx, []storage.DeviceCursor{
		{UserID: "alice", DeviceID: "phone", ConversationID: ab, DeliveredSeq: 3},
		{UserID: "alice", DeviceID: "phone", ConversationID: g3, DeliveredSeq: 2},
		{UserID: "alice", DeviceID: "phone", ConversationID: g1, DeliveredSeq: 1},
	}), "advance cursors")
	check("alice", "phone", true, []string{g1}, map[string]want{g1: {2, 1, 0}})
	check("alice", "laptop", true, []string{ab, g1, g3}, nil) // the other device is still behind
	check("alice", "phone", false, []string{ab, g1, g2, g3}, map[string]want{
		ab: {3, 3, 0}, g1: {2, 1, 0}, g2: {4, 0, 4}, g3: {2, 2, 0},
	})

	// New activity moves a conversation to the front and behind again.
	tick()
	fx.send(g2, "dave", 1)
	check("alice", "phone", true, []string{g2, g1}, map[string]want{g2: {5, 0, 4}})
	check("alice", "phone", false, []string{g2, ab, g1, g3}, nil)

	// Other users see their own conversations only.
	check("bob", "phone", false, []string{ab}, map[string]want{ab: {3, 0, 0}})
	check("dave", "phone", false, []string{g2, g3}, map[string]want{g2: {5, 0, 0}, g3: {5, 0, 0}})
	check("erin", "phone", false, nil, nil)
	check("erin", "phone", true, nil, nil)
}
