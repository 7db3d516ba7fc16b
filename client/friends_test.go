package client_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// nextEvent reads the next event that is not about presence.
func nextEvent(t *testing.T, s *client.Session) *starlingv1.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed: %v", s.Err())
			}
			if ev.GetPresenceChanged() == nil {
				return ev
			}
		case <-timeout:
			t.Fatal("no event")
		}
	}
}

// Friend calls, blocking, presence and events through the Go client: an
// event reaches an open session at once, and one made while the device was
// away comes once after it reconnects with its state.
func TestClientFriendsAndEvents(t *testing.T) {
	srv := servertest.Start(t)
	aliceID, bobID := register(t, srv, "alice"), register(t, srv, "bob")
	alice, bob := login(t, srv, "alice", "phone"), login(t, srv, "bob", "phone")
	store := client.NewMemoryStore()
	as := open(t, alice, client.WithEvents(), client.WithStateStore(store))
	bs := open(t, bob) // without events: they are acked and not shown

	if _, err := bob.SendFriendRequest(t.Context(), aliceID, "hello"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, as); ev.GetFriendRequested().GetFromUserId() != bobID || ev.GetFriendRequested().GetMessage() != "hello" || ev.GetSeq() != 1 {
		t.Fatalf("event %v", ev)
	}
	reqs, next, err := alice.ListFriendRequests(t.Context(), true, 0, "")
	if err != nil || len(reqs) != 1 || next != "" || reqs[0].GetUser().GetUsername() != "bob" {
		t.Fatalf("incoming %v %q %v", reqs, next, err)
	}
	if err := alice.AcceptFriendRequest(t.Context(), bobID); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, as); ev.GetFriendRequestAccepted() == nil || ev.GetSeq() != 2 {
		t.Fatalf("event %v", ev)
	}
	friends, _, err := alice.ListFriends(t.Context(), 10, "")
	if err != nil || len(friends) != 1 || friends[0].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("friends %v %v", friends, err)
	}
	ps, err := alice.GetPresence(t.Context(), bobID)
	if err != nil || ps[0].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("presence %v %v", ps, err)
	}
	// Bob's session, which does not show events, still gets messages.
	send(t, as, client.ToUser(bobID), "hi bob")
	wantTexts(t, receive(t, bs, 1), "hi bob")
	wantTexts(t, receive(t, as, 1), "hi bob") // events and messages share one queue: read both

	// Alice goes away; bob removes her and blocks her meanwhile.
	as.Close()
	if err := bob.RemoveFriend(t.Context(), aliceID); err != nil {
		t.Fatal(err)
	}
	if err := bob.BlockUser(t.Context(), aliceID); err != nil {
		t.Fatal(err)
	}
	blocked, _, err := bob.ListBlockedUsers(t.Context(), 0, "")
	if err != nil || len(blocked) != 1 || blocked[0].GetUserId() != aliceID {
		t.Fatalf("blocked %v %v", blocked, err)
	}
	as2 := open(t, alice, client.WithEvents(), client.WithStateStore(store))
	ev := nextEvent(t, as2)
	if ev.GetFriendRemoved().GetFromUserId() != bobID || ev.GetSeq() != 3 {
		t.Fatalf("after reconnect: %v", ev)
	}
	// The block is not an event of alice's; sending to bob is refused.
	_, err = as2.SendText(t.Context(), client.ToUser(bobID), "why?")
	wantCode(t, err, codes.PermissionDenied)
	select {
	case ev := <-as2.Events():
		if ev.GetPresenceChanged() == nil {
			t.Fatalf("unexpected event %v", ev)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if err := bob.UnblockUser(t.Context(), aliceID); err != nil {
		t.Fatal(err)
	}
	_, err = alice.SendFriendRequest(t.Context(), aliceID, "")
	wantCode(t, err, codes.InvalidArgument)
	if _, err := alice.SendFriendRequest(t.Context(), bobID, ""); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, as2); ev.GetFriendRequested().GetToUserId() != bobID || ev.GetSeq() != 4 {
		t.Fatalf("event %v", ev)
	}
	if err := alice.CancelFriendRequest(t.Context(), bobID); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, as2); ev.GetFriendRequestCanceled() == nil {
		t.Fatalf("event %v", ev)
	}
	wantCode(t, bob.DeclineFriendRequest(t.Context(), aliceID), codes.NotFound)
}

// Group events through the Go client: a session opened WithEvents gets the
// group changes that start or end the user's membership on Events, in
// order with the group's system messages on Messages.
func TestClientGroupEvents(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice, bob := login(t, srv, "alice", "phone"), login(t, srv, "bob", "phone")
	g, err := alice.CreateGroup(t.Context(), "team", bobID)
	if err != nil {
		t.Fatal(err)
	}
	// Opened after the creation: its event and message come by the
	// catch-up, the kick's live.
	bs := open(t, bob, client.WithEvents(), client.WithStateStore(client.NewMemoryStore()))
	if err := alice.KickMember(t.Context(), g.GetGroupId(), bobID); err != nil {
		t.Fatal(err)
	}
	var evs []*starlingv1.Event
	var msgs []int64
	timeout := time.After(10 * time.Second)
	for len(evs) < 2 || len(msgs) < 2 {
		select {
		case ev := <-bs.Events():
			evs = append(evs, ev)
		case m := <-bs.Messages():
			msgs = append(msgs, m.GetSeq())
		case <-timeout:
			t.Fatalf("got events %v and messages %v", evs, msgs)
		}
	}
	for i, want := range []starlingv1.GroupChange_Kind{starlingv1.GroupChange_KIND_CREATED, starlingv1.GroupChange_KIND_MEMBER_KICKED} {
		if ge := evs[i].GetGroupChanged(); ge.GetChange().GetKind() != want || ge.GetGroupId() != g.GetGroupId() || ge.GetSeq() != int64(i+1) || evs[i].GetSeq() != int64(i+1) {
			t.Fatalf("event %d: %v, want %v", i, evs[i], want)
		}
	}
}
