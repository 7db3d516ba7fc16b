package storagetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var friendTests = []test{
	{"RequestAcceptRemoveWithEvents", testFriendLifecycle},
	{"RequestRefusals", testFriendRequestRefusals},
	{"DeclineCancel", testFriendDeclineCancel},
	{"BlocksBothWays", testBlocks},
	{"RefusedChangeStoresNoEvent", testRefusedChangeStoresNoEvent},
	{"ListsPaged", testFriendListsPaged},
	{"VisibleUsers", testVisibleUsers},
	{"EventStreamIsAConversation", testEventStreamConversation},
}

// event makes an event of user's stream.
func (fx *fixture) event(user, content string) storage.NewMessage {
	m := fx.msg(storage.EventsConversationID(user), "evt:", content)
	m.Members = []string{user}
	return m
}

func (fx *fixture) relation(a, b string) storage.Relation {
	fx.t.Helper()
	r, err := fx.s.GetRelation(fx.t.Context(), a, b)
	must(fx.t, err, "relation")
	return r
}

func testFriendLifecycle(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b")
	res, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: "a", ToID: "b", Message: "hi", CreatedAt: time.Now()},
		[]storage.NewMessage{fx.event("a", "sent"), fx.event("b", "got")})
	must(t, err, "create request")
	if len(res) != 2 || res[0].Message.Seq != 1 || res[1].Message.Seq != 1 || res[0].Message.ConversationID != "evt:a" {
		t.Fatalf("events: %+v", res)
	}
	if r := fx.relation("a", "b"); !r.RequestAB || r.RequestBA || r.Friends || r.Blocked() {
		t.Fatalf("relation a,b after request: %+v", r)
	}
	if r := fx.relation("b", "a"); !r.RequestBA || r.RequestAB {
		t.Fatalf("relation b,a after request: %+v", r)
	}
	res, err = fx.s.AcceptFriendRequest(ctx, "a", "b", time.Now(), []storage.NewMessage{fx.event("a", "acc"), fx.event("b", "acc")})
	must(t, err, "accept")
	if res[0].Message.Seq != 2 || res[1].Message.Seq != 2 {
		t.Fatalf("accept events: %+v", res)
	}
	if r := fx.relation("b", "a"); !r.Friends || r.RequestAB || r.RequestBA {
		t.Fatalf("relation after accept: %+v", r)
	}
	ids, err := fx.s.FriendIDs(ctx, "a")
	must(t, err, "friend ids")
	if !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("friends of a: %v", ids)
	}
	_, err = fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: "b", ToID: "a", CreatedAt: time.Now()}, nil)
	wantErr(t, err, storage.ErrAlreadyFriends, "request between friends")
	_, err = fx.s.RemoveFriend(ctx, "b", "a", []storage.NewMessage{fx.event("a", "rm"), fx.event("b", "rm")})
	must(t, err, "remove")
	if r := fx.relation("a", "b"); r.Friends {
		t.Fatalf("still friends: %+v", r)
	}
	_, err = fx.s.RemoveFriend(ctx, "b", "a", nil)
	wantErr(t, err, storage.ErrNotFound, "remove twice")
	fx.wantSeqs("evt:a", 3)
	fx.wantSeqs("evt:b", 3)
}

func testFriendRequestRefusals(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b")
	req := func(from, to string) error {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: from, ToID: to, CreatedAt: time.Now()}, []storage.NewMessage{fx.event(from, "x")})
		return err
	}
	wantErr(t, req("a", "nobody"), storage.ErrNotFound, "request to no user")
	must(t, req("a", "b"), "request")
	wantErr(t, req("a", "b"), storage.ErrAlreadyExists, "same request again")
	wantErr(t, req("b", "a"), storage.ErrAlreadyExists, "reverse request while one is pending")
	_, err := fx.s.AcceptFriendRequest(ctx, "b", "a", time.Now(), nil)
	wantErr(t, err, storage.ErrNotFound, "accept the request in the wrong direction")
	// Only the first request stored an event.
	fx.wantSeqs("evt:a", 1)
	if l := fx.latestSeq("evt:b"); l != 0 {
		t.Fatalf("evt:b has %d events", l)
	}
}

func testFriendDeclineCancel(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b")
	for _, op := range []string{"decline", "cancel"} {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: "a", ToID: "b", CreatedAt: time.Now()}, nil)
		must(t, err, "request")
		_, err = fx.s.DeleteFriendRequest(ctx, "a", "b", []storage.NewMessage{fx.event("b", op)})
		must(t, err, op)
		if r := fx.relation("a", "b"); r.RequestAB || r.Friends {
			t.Fatalf("after %s: %+v", op, r)
		}
		_, err = fx.s.DeleteFriendRequest(ctx, "a", "b", []storage.NewMessage{fx.event("b", op)})
		wantErr(t, err, storage.ErrNotFound, op+" twice")
	}
	fx.wantSeqs("evt:b", 2)
}

func testBlocks(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b", "c")
	_, err := fx.s.Block(ctx, "a", "b", time.Now(), []storage.NewMessage{fx.event("a", "blocked b")})
	must(t, err, "block")
	_, err = fx.s.Block(ctx, "a", "b", time.Now(), []storage.NewMessage{fx.event("a", "again")})
	wantErr(t, err, storage.ErrAlreadyExists, "block twice")
	_, err = fx.s.Block(ctx, "a", "nobody", time.Now(), nil)
	wantErr(t, err, storage.ErrNotFound, "block no user")
	if r := fx.relation("a", "b"); !r.ABlocksB || r.BBlocksA || !r.Blocked() {
		t.Fatalf("a,b: %+v", r)
	}
	if r := fx.relation("b", "a"); r.ABlocksB || !r.BBlocksA || !r.Blocked() {
		t.Fatalf("b,a: %+v", r)
	}
	// Requests are refused both ways.
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}} {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: p[0], ToID: p[1], CreatedAt: time.Now()}, nil)
		wantErr(t, err, storage.ErrBlocked, fmt.Sprintf("request %s→%s across a block", p[0], p[1]))
	}
	// A request pending before a block cannot be accepted while it stands.
	_, err = fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: "c", ToID: "a", CreatedAt: time.Now()}, nil)
	must(t, err, "request c→a")
	_, err = fx.s.Block(ctx, "c", "a", time.Now(), nil)
	must(t, err, "c blocks a")
	_, err = fx.s.AcceptFriendRequest(ctx, "c", "a", time.Now(), nil)
	wantErr(t, err, storage.ErrBlocked, "accept across a block")
	blocked, err := fx.s.ListBlocked(ctx, "a", "", 10)
	must(t, err, "list blocked")
	if len(blocked) != 1 || blocked[0].ID != "b" || blocked[0].Username != "name-b" {
		t.Fatalf("blocked by a: %+v", blocked)
	}
	_, err = fx.s.Unblock(ctx, "a", "b", []storage.NewMessage{fx.event("a", "unblocked b")})
	must(t, err, "unblock")
	_, err = fx.s.Unblock(ctx, "a", "b", nil)
	wantErr(t, err, storage.ErrNotFound, "unblock twice")
	if r := fx.relation("a", "b"); r.Blocked() {
		t.Fatalf("after unblock: %+v", r)
	}
	fx.wantSeqs("evt:a", 2)
}

// A change refused inside its transaction stores none of its events, and
// the stream's next event takes the next seq (no gap).
func testRefusedChangeStoresNoEvent(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b")
	_, err := fx.s.RemoveFriend(ctx, "a", "b", []storage.NewMessage{fx.event("a", "x"), fx.event("b", "x")})
	wantErr(t, err, storage.ErrNotFound, "remove a non-friend")
	_, err = fx.s.Unblock(ctx, "a", "b", []storage.NewMessage{fx.event("a", "x")})
	wantErr(t, err, storage.ErrNotFound, "unblock a non-blocked")
	if l := fx.latestSeq("evt:a"); l != 0 {
		t.Fatalf("refused changes stored %d events", l)
	}
	_, err = fx.s.Block(ctx, "a", "b", time.Now(), []storage.NewMessage{fx.event("a", "x")})
	must(t, err, "block")
	fx.wantSeqs("evt:a", 1)
}

func testFriendListsPaged(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("me", "u1", "u2", "u3", "u4", "u5")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i, u := range []string{"u1", "u2", "u3"} {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: u, ToID: "me", Message: "m" + u, CreatedAt: base.Add(time.Duration(i) * time.Second)}, nil)
		must(t, err, "request")
	}
	// Two at the same millisecond: the tie is broken by user id.
	for _, u := range []string{"u4", "u5"} {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: "me", ToID: u, CreatedAt: base}, nil)
		must(t, err, "request")
	}
	var got []string
	var after storage.RequestCursor
	for {
		page, err := fx.s.ListFriendRequests(ctx, "me", true, after, 2)
		must(t, err, "list incoming")
		for _, r := range page {
			if r.ToID != "me" || r.User.ID != r.FromID || r.Message != "m"+r.FromID {
				t.Fatalf("incoming request %+v", r)
			}
			got = append(got, r.FromID)
		}
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		after = storage.RequestCursor{CreatedAt: last.CreatedAt, UserID: last.FromID}
	}
	if !slices.Equal(got, []string{"u3", "u2", "u1"}) {
		t.Fatalf("incoming, newest first: %v", got)
	}
	out, err := fx.s.ListFriendRequests(ctx, "me", false, storage.RequestCursor{}, 1)
	must(t, err, "list outgoing")
	if len(out) != 1 || out[0].ToID != "u5" || out[0].User.ID != "u5" {
		t.Fatalf("outgoing page 1: %+v", out)
	}
	out, err = fx.s.ListFriendRequests(ctx, "me", false, storage.RequestCursor{CreatedAt: out[0].CreatedAt, UserID: "u5"}, 5)
	must(t, err, "list outgoing")
	if len(out) != 1 || out[0].ToID != "u4" {
		t.Fatalf("outgoing page 2: %+v", out)
	}
	for _, u := range []string{"u3", "u1", "u2"} {
		_, err := fx.s.AcceptFriendRequest(ctx, u, "me", time.Now(), nil)
		must(t, err, "accept")
	}
	friends, err := fx.s.ListFriends(ctx, "me", "", 2)
	must(t, err, "list friends")
	if len(friends) != 2 || friends[0].User.ID != "u1" || friends[1].User.ID != "u2" || friends[0].User.Username != "name-u1" || friends[0].Since.IsZero() {
		t.Fatalf("friends page 1: %+v", friends)
	}
	friends, err = fx.s.ListFriends(ctx, "me", "u2", 2)
	must(t, err, "list friends")
	if len(friends) != 1 || friends[0].User.ID != "u3" {
		t.Fatalf("friends page 2: %+v", friends)
	}
}

func testVisibleUsers(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("me", "friend", "mate", "stranger", "blockedfriend", "left")
	for _, u := range []string{"friend", "blockedfriend"} {
		_, err := fx.s.CreateFriendRequest(ctx, storage.FriendRequest{FromID: u, ToID: "me", CreatedAt: time.Now()}, nil)
		must(t, err, "request")
		_, err = fx.s.AcceptFriendRequest(ctx, u, "me", time.Now(), nil)
		must(t, err, "accept")
	}
	_, err := fx.s.Block(ctx, "blockedfriend", "me", time.Now(), nil)
	must(t, err, "block")
	fx.group("g1", "me", "mate", "left")
	must(t, fx.s.LeaveGroup(ctx, "g1", "left"), "leave")
	ids, err := fx.s.FriendIDs(ctx, "me")
	must(t, err, "friend ids")
	if !slices.Equal(ids, []string{"friend"}) {
		t.Fatalf("friends of me without a block: %v", ids)
	}
	got, err := fx.s.VisibleUsers(ctx, "me", []string{"friend", "mate", "stranger", "blockedfriend", "left", "nobody"})
	must(t, err, "visible users")
	slices.Sort(got)
	if !slices.Equal(got, []string{"friend", "mate"}) {
		t.Fatalf("visible to me: %v", got)
	}
}

// An event stream is a conversation of its one user: it is listed (so a
// device that is behind on it is told at connect), cursors advance on it,
// and Sync-style reads see its events.
func testEventStreamConversation(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("a", "b")
	_, err := fx.s.Block(ctx, "a", "b", time.Now(), []storage.NewMessage{fx.event("a", "one")})
	must(t, err, "block")
	m := fx.membership("evt:a", "a")
	if !m.Active() || m.Periods[0].JoinedSeq != 0 {
		t.Fatalf("membership of the stream's user: %+v", m)
	}
	if _, err := fx.s.GetMembership(ctx, "evt:a", "b"); err == nil {
		t.Fatal("b is a member of a's event stream")
	}
	cs, err := fx.s.ListConversations(ctx, "a", "d1", true)
	must(t, err, "list conversations")
	if len(cs) != 1 || cs[0].ConversationID != "evt:a" || cs[0].LatestSeq != 1 || cs[0].DeliveredSeq != 0 {
		t.Fatalf("behind: %+v", cs)
	}
	must(t, fx.s.AdvanceCursors(ctx, []storage.DeviceCursor{{UserID: "a", DeviceID: "d1", ConversationID: "evt:a", DeliveredSeq: 1}}), "advance")
	cs, err = fx.s.ListConversations(ctx, "a", "d1", true)
	must(t, err, "list conversations")
	if len(cs) != 0 {
		t.Fatalf("behind after ack: %+v", cs)
	}
	cs, err = fx.s.ListConversations(ctx, "b", "d1", false)
	must(t, err, "list conversations of b")
	if len(cs) != 0 {
		t.Fatalf("b sees %+v", cs)
	}
}
