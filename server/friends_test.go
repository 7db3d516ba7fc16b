package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// TestFriends runs the friends, blocks, events and presence scenarios
// against a real server over a real connection, once per backend.
func TestFriends(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range friendCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					srv := servertest.Start(t, append([]servertest.Option{servertest.WithStore(b.New(t))}, c.opts...)...)
					c.run(t, srv)
				})
			}
		})
	}
}

var friendCases = []e2eCase{
	{name: "request accept and events to every device", run: testFriendRequestAccept},
	{name: "offline device gets events exactly once", run: testEventsOfflineExactlyOnce},
	{name: "decline cancel remove", run: testDeclineCancelRemove},
	{name: "bad inputs", run: testFriendBadInputs},
	{name: "block in the send path both ways", run: testBlockInSendPath},
	{name: "block hides and refuses requests", run: testBlockRequests},
	{name: "dm policy friends", run: testDMPolicyFriends, opts: []servertest.Option{servertest.WithConfig(func(c *server.Config) { c.DMPolicy = chat.DMFriends })}},
	{name: "lists paged", run: testFriendListsPaged},
	{name: "presence query", run: testPresenceQuery},
	{name: "presence events", run: testPresenceEvents},
	{name: "event stream window and sync", run: testEventStreamWindow, opts: []servertest.Option{servertest.WithConfig(func(c *server.Config) { c.Window = 2 })}},
	{name: "event stream is private", run: testEventStreamPrivate},
}

// friends is u's FriendService client with u's token.
type friendsAPI struct {
	c   starlingv1.FriendServiceClient
	ctx context.Context
}

func friendsOf(t *testing.T, srv *servertest.Server, d device) friendsAPI {
	return friendsAPI{c: starlingv1.NewFriendServiceClient(srv.Dial(t)), ctx: servertest.WithToken(t.Context(), d.token)}
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

func (f friendsAPI) request(t *testing.T, to string) {
	t.Helper()
	if _, err := f.c.SendFriendRequest(f.ctx, &starlingv1.SendFriendRequestRequest{UserId: to, Message: "hi"}); err != nil {
		t.Fatalf("friend request: %v", err)
	}
}

func (f friendsAPI) accept(t *testing.T, from string) {
	t.Helper()
	if _, err := f.c.AcceptFriendRequest(f.ctx, &starlingv1.AcceptFriendRequestRequest{UserId: from}); err != nil {
		t.Fatalf("accept: %v", err)
	}
}

// befriend makes a and b friends, reading the four events off their open
// streams.
func befriend(t *testing.T, srv *servertest.Server, a, b device) {
	t.Helper()
	friendsOf(t, srv, a).request(t, b.user.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	friendsOf(t, srv, b).accept(t, a.user.ID)
	nextEvent(t, a)
	nextEvent(t, b)
}

// nextEvent reads the next frame, which must be an Event, and acks it if
// it is stored. Presence events (whose timing depends on the machine's
// speed) are skipped; nextPresence reads those.
func nextEvent(t *testing.T, d device) *starlingv1.Event {
	t.Helper()
	f := d.Next(t)
	for f.GetEvent().GetPresenceChanged() != nil {
		f = d.Next(t)
	}
	ev := f.GetEvent()
	if ev == nil {
		t.Fatalf("%s: frame %v, want Event", d.user.Username, f)
	}
	if ev.GetSeq() > 0 {
		if ev.GetConversationId() != storage.EventsConversationID(d.user.ID) {
			t.Fatalf("event in %q, want the user's stream", ev.GetConversationId())
		}
		d.Ack(t, ev.GetConversationId(), ev.GetSeq())
	}
	return ev
}

func testFriendRequestAccept(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	phone, laptop := connect(t, srv, alice, "phone"), connect(t, srv, alice, "laptop")
	bobPhone := connect(t, srv, bob, "phone")

	res, err := friendsOf(t, srv, phone).c.SendFriendRequest(friendsOf(t, srv, phone).ctx, &starlingv1.SendFriendRequestRequest{UserId: bob.ID, Message: "it's alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.GetRequest(); r.GetFromUserId() != alice.ID || r.GetToUserId() != bob.ID || r.GetMessage() != "it's alice" {
		t.Fatalf("request %v", r)
	}
	// Both of alice's devices (the one that asked too) and bob's.
	for _, d := range []device{phone, laptop, bobPhone} {
		ev := nextEvent(t, d)
		fr := ev.GetFriendRequested()
		if ev.GetSeq() != 1 || ev.GetActorId() != alice.ID || fr.GetFromUserId() != alice.ID || fr.GetToUserId() != bob.ID || fr.GetMessage() != "it's alice" || ev.GetServerTime() == nil {
			t.Fatalf("%s got %v", d.user.Username, ev)
		}
	}
	in, err := friendsOf(t, srv, bobPhone).c.ListFriendRequests(friendsOf(t, srv, bobPhone).ctx, &starlingv1.ListFriendRequestsRequest{Direction: starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_INCOMING})
	if err != nil || len(in.GetRequests()) != 1 || in.GetRequests()[0].GetUser().GetUsername() != "alice" {
		t.Fatalf("bob's incoming: %v %v", in, err)
	}
	friendsOf(t, srv, bobPhone).accept(t, alice.ID)
	for _, d := range []device{phone, laptop, bobPhone} {
		ev := nextEvent(t, d)
		acc := ev.GetFriendRequestAccepted()
		if ev.GetSeq() != 2 || ev.GetActorId() != bob.ID || acc.GetFromUserId() != alice.ID || acc.GetToUserId() != bob.ID {
			t.Fatalf("%s got %v", d.user.Username, ev)
		}
	}
	list, err := friendsOf(t, srv, phone).c.ListFriends(friendsOf(t, srv, phone).ctx, &starlingv1.ListFriendsRequest{})
	if err != nil || len(list.GetFriends()) != 1 || list.GetFriends()[0].GetUser().GetUserId() != bob.ID ||
		list.GetFriends()[0].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE || list.GetNextPageToken() != "" {
		t.Fatalf("alice's friends: %v %v", list, err)
	}
	// Friends now: a second request is refused, and the request is gone.
	_, err = friendsOf(t, srv, bobPhone).c.SendFriendRequest(friendsOf(t, srv, bobPhone).ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.AlreadyExists, "request to a friend")
	_, err = friendsOf(t, srv, bobPhone).c.AcceptFriendRequest(friendsOf(t, srv, bobPhone).ctx, &starlingv1.AcceptFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.NotFound, "accept twice")
	quiet(t, phone, 100*time.Millisecond)
}

// A device offline while events happen gets each of them once, in order,
// after it reconnects — and again none once it acknowledged them.
func testEventsOfflineExactlyOnce(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	aliceTok := srv.Login(t, alice, "tablet") // offline for now
	bobPhone := connect(t, srv, bob, "phone")
	bf := friendsOf(t, srv, bobPhone)
	bf.request(t, alice.ID)
	nextEvent(t, bobPhone)
	if _, err := friendsOf(t, srv, device{token: aliceTok}).c.DeclineFriendRequest(servertest.WithToken(t.Context(), aliceTok), &starlingv1.DeclineFriendRequestRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, bobPhone)
	bf.request(t, alice.ID)
	nextEvent(t, bobPhone)

	tablet := device{user: alice, token: aliceTok, Stream: srv.OpenStream(t, aliceTok)}
	conv := storage.EventsConversationID(alice.ID)
	n := tablet.Next(t).GetNotify()
	if n.GetConversationId() != conv || n.GetLatestSeq() != 3 || n.GetDeliveredSeq() != 0 {
		t.Fatalf("catch-up: %v, want Notify of %s up to 3", n, conv)
	}
	evs := syncEvents(t, tablet, conv, 0)
	if len(evs) != 3 || evs[0].GetFriendRequested() == nil || evs[1].GetFriendRequestDeclined() == nil || evs[2].GetFriendRequested() == nil {
		t.Fatalf("synced %v", evs)
	}
	for i, ev := range evs {
		if ev.GetSeq() != int64(i+1) || ev.GetConversationId() != conv {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	// Pushes resumed: the next event is pushed.
	if _, err := bf.c.CancelFriendRequest(bf.ctx, &starlingv1.CancelFriendRequestRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, bobPhone)
	if ev := nextEvent(t, tablet); ev.GetSeq() != 4 || ev.GetFriendRequestCanceled().GetFromUserId() != bob.ID {
		t.Fatalf("pushed %v", ev)
	}
	tablet.Ack(t, conv, 4)
	quiet(t, tablet, 100*time.Millisecond)
	waitCursor(t, srv, alice.ID, "tablet", conv, 4)
	tablet.Close()

	// Reconnected: nothing is behind, nothing comes again.
	again := device{user: alice, token: aliceTok, Stream: srv.OpenStream(t, aliceTok)}
	quiet(t, again, 300*time.Millisecond)
}

// nextPresence reads frames until a presence event, which it returns.
func nextPresence(t *testing.T, d device) *starlingv1.Event {
	t.Helper()
	for {
		if ev := d.Next(t).GetEvent(); ev.GetPresenceChanged() != nil {
			return ev
		}
	}
}

// quiet fails the test if a frame other than a presence event or a receipt arrives
// within dur.
func quiet(t *testing.T, d device, dur time.Duration) {
	t.Helper()
	deadline := time.Now().Add(dur)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		f, ok := d.Poll(left)
		if !ok {
			return
		}
		// Presence events and receipts come on their own time (a receipt
		// of an ack made before a block is still sent).
		if f.GetEvent().GetPresenceChanged() == nil && f.GetReceipt() == nil {
			t.Fatalf("%s: unexpected frame %v", d.user.Username, f)
		}
	}
}

// waitCursor waits until the device's acknowledged cursor of conv is
// written.
func waitCursor(t *testing.T, srv *servertest.Server, user, dev, conv string, seq int64) {
	t.Helper()
	deadline := time.Now().Add(servertest.Timeout)
	for {
		cs, err := srv.Store().ListConversations(t.Context(), user, dev, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.ConversationID == conv && c.DeliveredSeq >= seq {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor of %s/%s in %s never reached %d: %+v", user, dev, conv, seq, cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncEvents pulls the event stream after after until it is complete,
// acking it.
func syncEvents(t *testing.T, d device, conv string, after int64) []*starlingv1.Event {
	t.Helper()
	var got []*starlingv1.Event
	for {
		ref := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: conv, AfterSeq: after, Limit: 2}}})
		var b *starlingv1.SyncBatch
		for b == nil {
			f := d.Next(t)
			if f.GetRef() == ref {
				if f.GetError() != nil {
					t.Fatalf("sync refused: %v", f.GetError())
				}
				b = f.GetSyncBatch()
			}
		}
		if len(b.GetMessages()) != 0 {
			t.Fatalf("event stream synced messages: %v", b.GetMessages())
		}
		got = append(got, b.GetEvents()...)
		if n := len(b.GetEvents()); n > 0 {
			after = b.GetEvents()[n-1].GetSeq()
			d.Ack(t, conv, after)
		}
		if !b.GetHasMore() {
			return got
		}
	}
}

func testDeclineCancelRemove(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	a, b := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
	af, bf := friendsOf(t, srv, a), friendsOf(t, srv, b)

	af.request(t, bob.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	if _, err := bf.c.DeclineFriendRequest(bf.ctx, &starlingv1.DeclineFriendRequestRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []device{a, b} {
		if ev := nextEvent(t, d); ev.GetFriendRequestDeclined().GetFromUserId() != alice.ID || ev.GetActorId() != bob.ID {
			t.Fatalf("decline event %v", ev)
		}
	}
	af.request(t, bob.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	if _, err := af.c.CancelFriendRequest(af.ctx, &starlingv1.CancelFriendRequestRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []device{a, b} {
		if ev := nextEvent(t, d); ev.GetFriendRequestCanceled().GetToUserId() != bob.ID || ev.GetActorId() != alice.ID {
			t.Fatalf("cancel event %v", ev)
		}
	}
	_, err := af.c.CancelFriendRequest(af.ctx, &starlingv1.CancelFriendRequestRequest{UserId: bob.ID})
	wantCode(t, err, codes.NotFound, "cancel twice")
	_, err = bf.c.DeclineFriendRequest(bf.ctx, &starlingv1.DeclineFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.NotFound, "decline none")

	af.request(t, bob.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	bf.accept(t, alice.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	if _, err := bf.c.RemoveFriend(bf.ctx, &starlingv1.RemoveFriendRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []device{a, b} {
		if ev := nextEvent(t, d); ev.GetFriendRemoved().GetFromUserId() != bob.ID || ev.GetFriendRemoved().GetToUserId() != alice.ID {
			t.Fatalf("remove event %v", ev)
		}
	}
	_, err = bf.c.RemoveFriend(bf.ctx, &starlingv1.RemoveFriendRequest{UserId: alice.ID})
	wantCode(t, err, codes.NotFound, "remove twice")
	list, err := af.c.ListFriends(af.ctx, &starlingv1.ListFriendsRequest{})
	if err != nil || len(list.GetFriends()) != 0 {
		t.Fatalf("friends after removal: %v %v", list, err)
	}
}

func testFriendBadInputs(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	a := connect(t, srv, alice, "phone")
	af := friendsOf(t, srv, a)
	c, ctx := af.c, af.ctx
	for name, tc := range map[string]struct {
		call func() error
		code codes.Code
	}{
		"request to self": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
			return err
		}, codes.InvalidArgument},
		"request to nobody": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: "u-nobody"})
			return err
		}, codes.NotFound},
		"request without id": {func() error { _, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{}); return err }, codes.InvalidArgument},
		"request to a:b": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: "a:b"})
			return err
		}, codes.InvalidArgument},
		"huge id": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: strings.Repeat("x", 1000)})
			return err
		}, codes.InvalidArgument},
		"message too long": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: bob.ID, Message: strings.Repeat("é", 201)})
			return err
		}, codes.InvalidArgument},
		"message with bidi": {func() error {
			_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: bob.ID, Message: "hi\u202e"})
			return err
		}, codes.InvalidArgument},
		"accept none": {func() error {
			_, err := c.AcceptFriendRequest(ctx, &starlingv1.AcceptFriendRequestRequest{UserId: bob.ID})
			return err
		}, codes.NotFound},
		"accept self": {func() error {
			_, err := c.AcceptFriendRequest(ctx, &starlingv1.AcceptFriendRequestRequest{UserId: alice.ID})
			return err
		}, codes.InvalidArgument},
		"remove non-friend": {func() error {
			_, err := c.RemoveFriend(ctx, &starlingv1.RemoveFriendRequest{UserId: bob.ID})
			return err
		}, codes.NotFound},
		"block self":        {func() error { _, err := c.BlockUser(ctx, &starlingv1.BlockUserRequest{UserId: alice.ID}); return err }, codes.InvalidArgument},
		"block nobody":      {func() error { _, err := c.BlockUser(ctx, &starlingv1.BlockUserRequest{UserId: "u-nobody"}); return err }, codes.NotFound},
		"unblock empty":     {func() error { _, err := c.UnblockUser(ctx, &starlingv1.UnblockUserRequest{}); return err }, codes.InvalidArgument},
		"page size too big": {func() error { _, err := c.ListFriends(ctx, &starlingv1.ListFriendsRequest{PageSize: 201}); return err }, codes.InvalidArgument},
		"negative page size": {func() error {
			_, err := c.ListBlockedUsers(ctx, &starlingv1.ListBlockedUsersRequest{PageSize: -1})
			return err
		}, codes.InvalidArgument},
		"bad page token": {func() error {
			_, err := c.ListFriends(ctx, &starlingv1.ListFriendsRequest{PageToken: "!!"})
			return err
		}, codes.InvalidArgument},
		"bad request token": {func() error {
			_, err := c.ListFriendRequests(ctx, &starlingv1.ListFriendRequestsRequest{Direction: starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_INCOMING, PageToken: "eHl6"})
			return err
		}, codes.InvalidArgument},
		"no direction":       {func() error { _, err := c.ListFriendRequests(ctx, &starlingv1.ListFriendRequestsRequest{}); return err }, codes.InvalidArgument},
		"presence of nobody": {func() error { _, err := c.GetPresence(ctx, &starlingv1.GetPresenceRequest{}); return err }, codes.InvalidArgument},
		"presence of 101": {func() error {
			_, err := c.GetPresence(ctx, &starlingv1.GetPresenceRequest{UserIds: make([]string, 101)})
			return err
		}, codes.InvalidArgument},
		"presence bad id": {func() error {
			_, err := c.GetPresence(ctx, &starlingv1.GetPresenceRequest{UserIds: []string{"a:b"}})
			return err
		}, codes.InvalidArgument},
		"history of a stream": {func() error {
			_, err := starlingv1.NewChatServiceClient(srv.Dial(t)).GetHistory(ctx, &starlingv1.GetHistoryRequest{ConversationId: storage.EventsConversationID(alice.ID)})
			return err
		}, codes.InvalidArgument},
	} {
		wantCode(t, tc.call(), tc.code, name)
	}
	// Duplicates and a reverse request while one is pending.
	af.request(t, bob.ID)
	nextEvent(t, a)
	_, err := c.SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: bob.ID})
	wantCode(t, err, codes.AlreadyExists, "duplicate request")
	b := connect(t, srv, bob, "phone")
	bf := friendsOf(t, srv, b)
	_, err = bf.c.SendFriendRequest(bf.ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.AlreadyExists, "reverse request while one is pending")
	// Nothing refused stored an event: alice's stream holds the one request.
	if l, err := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(alice.ID)); err != nil || l != 1 {
		t.Fatalf("alice's stream: latest %d, %v; want 1", l, err)
	}
	if l, err := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(bob.ID)); err != nil || l != 1 {
		t.Fatalf("bob's stream: latest %d, %v; want 1", l, err)
	}
	// Blocking twice or unblocking a stranger is no error and no event.
	for range 2 {
		if _, err := c.BlockUser(ctx, &starlingv1.BlockUserRequest{UserId: bob.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := nextEvent(t, a); ev.GetUserBlocked().GetUserId() != bob.ID {
		t.Fatalf("block event %v", ev)
	}
	for range 2 {
		if _, err := c.UnblockUser(ctx, &starlingv1.UnblockUserRequest{UserId: bob.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := nextEvent(t, a); ev.GetUserUnblocked().GetUserId() != bob.ID {
		t.Fatalf("unblock event %v", ev)
	}
	quiet(t, a, 100*time.Millisecond)
}

// latestOf is a conversation's latest seq as stored.
func latestOf(t *testing.T, srv *servertest.Server, conv string) int64 {
	t.Helper()
	l, err := srv.Store().LatestSeq(t.Context(), conv)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A block is enforced by the send path in both directions, at once, even
// for a pair whose relation the node had cached; nothing is stored.
// The blocked user is told nothing but the refusal.
func testBlockInSendPath(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	a, b := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
	conv := storage.C2CConversationID(alice.ID, bob.ID)
	expectAck(t, b, b.Text(t, alice.ID, "", "m1", "hello")) // warms the cache
	pushed(t, a, 1)

	if _, err := friendsOf(t, srv, a).c.BlockUser(friendsOf(t, srv, a).ctx, &starlingv1.BlockUserRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a); ev.GetUserBlocked().GetUserId() != bob.ID || ev.GetActorId() != alice.ID {
		t.Fatalf("block event %v", ev)
	}
	e := expectError(t, b, b.Text(t, alice.ID, "", "m2", "still there?"), codes.PermissionDenied)
	e2 := expectError(t, a, a.Text(t, bob.ID, "", "m3", "go away"), codes.PermissionDenied)
	if e.GetMessage() != e2.GetMessage() {
		t.Fatalf("the refusals tell who blocked whom: %q vs %q", e.GetMessage(), e2.GetMessage())
	}
	if l := latestOf(t, srv, conv); l != 1 {
		t.Fatalf("stored %d messages across a block, want 1", l)
	}
	quiet(t, b, 100*time.Millisecond) // no event about the block
	list, err := friendsOf(t, srv, a).c.ListBlockedUsers(friendsOf(t, srv, a).ctx, &starlingv1.ListBlockedUsersRequest{})
	if err != nil || len(list.GetUsers()) != 1 || list.GetUsers()[0].GetUserId() != bob.ID {
		t.Fatalf("blocked users: %v %v", list, err)
	}

	if _, err := friendsOf(t, srv, a).c.UnblockUser(friendsOf(t, srv, a).ctx, &starlingv1.UnblockUserRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, a)
	ack, _ := expectAck(t, b, b.Text(t, alice.ID, "", "m4", "friends again?"))
	if ack.GetSeq() != 2 {
		t.Fatalf("after unblock: seq %d", ack.GetSeq())
	}
}

// A block refuses friend requests and their acceptance both ways, and hides
// presence both ways.
func testBlockRequests(t *testing.T, srv *servertest.Server) {
	alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	a, b, c := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone"), connect(t, srv, carol, "phone")
	af, bf, cf := friendsOf(t, srv, a), friendsOf(t, srv, b), friendsOf(t, srv, c)
	befriend(t, srv, a, b)
	cf.request(t, alice.ID) // pending before the block
	nextEvent(t, c)
	nextEvent(t, a)
	for _, u := range []string{bob.ID, carol.ID} {
		if _, err := af.c.BlockUser(af.ctx, &starlingv1.BlockUserRequest{UserId: u}); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, a)
	}
	_, err := bf.c.SendFriendRequest(bf.ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.PermissionDenied, "request to a friend who blocked you") // the block is checked first
	_, err = cf.c.SendFriendRequest(cf.ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.PermissionDenied, "second request") // the block is checked first
	_, err = af.c.AcceptFriendRequest(af.ctx, &starlingv1.AcceptFriendRequestRequest{UserId: carol.ID})
	wantCode(t, err, codes.PermissionDenied, "accept across a block")
	if _, err := cf.c.CancelFriendRequest(cf.ctx, &starlingv1.CancelFriendRequestRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err) // withdrawing is still allowed
	}
	nextEvent(t, c)
	nextEvent(t, a)
	_, err = cf.c.SendFriendRequest(cf.ctx, &starlingv1.SendFriendRequestRequest{UserId: alice.ID})
	wantCode(t, err, codes.PermissionDenied, "request to a user who blocked you")
	_, err = af.c.SendFriendRequest(af.ctx, &starlingv1.SendFriendRequestRequest{UserId: carol.ID})
	wantCode(t, err, codes.PermissionDenied, "request to a user you blocked")
	// Bob (a friend, blocked) no longer sees alice online, nor she him.
	for _, p := range []struct {
		f    friendsAPI
		whom string
	}{{bf, alice.ID}, {af, bob.ID}} {
		res, err := p.f.c.GetPresence(p.f.ctx, &starlingv1.GetPresenceRequest{UserIds: []string{p.whom}})
		if err != nil || res.GetPresences()[0].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_HIDDEN {
			t.Fatalf("presence across a block: %v %v", res, err)
		}
	}
	quiet(t, c, 100*time.Millisecond)
}

func testDMPolicyFriends(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	a, b := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
	conv := storage.C2CConversationID(alice.ID, bob.ID)
	expectError(t, a, a.Text(t, bob.ID, "", "m1", "hi stranger"), codes.PermissionDenied)
	expectError(t, b, b.Text(t, alice.ID, "", "m2", "hi stranger"), codes.PermissionDenied)
	if l := latestOf(t, srv, conv); l != 0 {
		t.Fatalf("stored %d messages between strangers", l)
	}
	// Oneself is always allowed.
	expectAck(t, a, a.Text(t, alice.ID, "", "note", "note to self"))
	befriend(t, srv, a, b)
	ack, _ := expectAck(t, a, a.Text(t, bob.ID, "", "m3", "hi friend"))
	if ack.GetSeq() != 1 {
		t.Fatalf("seq %d", ack.GetSeq())
	}
	pushed(t, b, 1)
	if _, err := friendsOf(t, srv, b).c.RemoveFriend(friendsOf(t, srv, b).ctx, &starlingv1.RemoveFriendRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, b)
	nextEvent(t, a)
	expectError(t, a, a.Text(t, bob.ID, "", "m4", "still friends?"), codes.PermissionDenied)
	if l := latestOf(t, srv, conv); l != 1 {
		t.Fatalf("stored %d messages, want 1", l)
	}
}

func testFriendListsPaged(t *testing.T, srv *servertest.Server) {
	me := srv.NewUser(t, "mee")
	m := connect(t, srv, me, "phone")
	mf := friendsOf(t, srv, m)
	var others []device
	for i := range 5 {
		u := srv.NewUser(t, fmt.Sprintf("user%d", i))
		d := connect(t, srv, u, "phone")
		others = append(others, d)
		friendsOf(t, srv, d).request(t, me.ID)
		nextEvent(t, d)
		nextEvent(t, m)
	}
	var got []string
	tok := ""
	for pages := 0; ; pages++ {
		res, err := mf.c.ListFriendRequests(mf.ctx, &starlingv1.ListFriendRequestsRequest{Direction: starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_INCOMING, PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.GetRequests() {
			got = append(got, r.GetUser().GetUsername())
		}
		if tok = res.GetNextPageToken(); tok == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, ",") != "user4,user3,user2,user1,user0" {
		t.Fatalf("incoming, newest first: %v", got)
	}
	for _, d := range others {
		mf.accept(t, d.user.ID)
		nextEvent(t, m)
		nextEvent(t, d)
	}
	got = nil
	tok = ""
	for {
		res, err := mf.c.ListFriends(mf.ctx, &starlingv1.ListFriendsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.GetFriends() {
			got = append(got, f.GetUser().GetUserId())
		}
		if tok = res.GetNextPageToken(); tok == "" {
			break
		}
	}
	if len(got) != 5 {
		t.Fatalf("friends: %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("friends not by id: %v", got)
		}
	}
	out, err := friendsOf(t, srv, others[0]).c.ListFriendRequests(friendsOf(t, srv, others[0]).ctx, &starlingv1.ListFriendRequestsRequest{Direction: starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_OUTGOING})
	if err != nil || len(out.GetRequests()) != 0 {
		t.Fatalf("outgoing after acceptance: %v %v", out, err)
	}
}

func testPresenceQuery(t *testing.T, srv *servertest.Server) {
	alice, bob, carol, dave := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol"), srv.NewUser(t, "dave")
	a, b := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
	befriend(t, srv, a, b)
	newGroup(t, srv, a, dave) // dave shares a group with alice, offline
	connect(t, srv, carol, "phone")
	af := friendsOf(t, srv, a)
	res, err := af.c.GetPresence(af.ctx, &starlingv1.GetPresenceRequest{UserIds: []string{bob.ID, carol.ID, dave.ID, alice.ID, "u-nobody", bob.ID}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id string
		st starlingv1.PresenceStatus
	}{
		{bob.ID, starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE},
		{carol.ID, starlingv1.PresenceStatus_PRESENCE_STATUS_HIDDEN}, // a stranger, though online
		{dave.ID, starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE},
		{alice.ID, starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE},
		{"u-nobody", starlingv1.PresenceStatus_PRESENCE_STATUS_HIDDEN},
	}
	if len(res.GetPresences()) != len(want) {
		t.Fatalf("presences %v", res.GetPresences())
	}
	for i, w := range want {
		if p := res.GetPresences()[i]; p.GetUserId() != w.id || p.GetStatus() != w.st {
			t.Fatalf("presence %d: %v, want %v %v", i, p, w.id, w.st)
		}
	}
	b.Close()
	deadline := time.Now().Add(servertest.Timeout)
	for {
		res, err := af.c.GetPresence(af.ctx, &starlingv1.GetPresenceRequest{UserIds: []string{bob.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetPresences()[0].GetStatus() == starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob still online after closing his stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Friends' online devices hear, as ephemeral Events, when a friend comes
// online and goes offline; strangers hear nothing, and nothing is stored.
func testPresenceEvents(t *testing.T, srv *servertest.Server) {
	alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	a, c := connect(t, srv, alice, "phone"), connect(t, srv, carol, "phone")
	// Bob befriends alice from a device with no stream open.
	bobTok := srv.Login(t, bob, "laptop")
	bf := friendsOf(t, srv, device{token: bobTok})
	bf.request(t, alice.ID)
	nextEvent(t, a)
	friendsOf(t, srv, a).accept(t, bob.ID)
	nextEvent(t, a)

	b := device{user: bob, token: bobTok, Stream: srv.OpenStream(t, bobTok)}
	ev := nextPresence(t, a)
	if p := ev.GetPresenceChanged(); p.GetUserId() != bob.ID || p.GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE || ev.GetSeq() != 0 || ev.GetConversationId() != "" || ev.GetActorId() != bob.ID {
		t.Fatalf("presence event %v", ev)
	}
	b.Close()
	ev = nextPresence(t, a)
	if p := ev.GetPresenceChanged(); p.GetUserId() != bob.ID || p.GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		t.Fatalf("presence event %v", ev)
	}
	// Changes are coalesced: online, off and on again within the settle
	// time make one ONLINE event (on a slow machine, where the steps take
	// longer than the settle time, at most one per step), and the last
	// one told is the state now.
	b2 := device{user: bob, token: bobTok, Stream: srv.OpenStream(t, bobTok)}
	b2.Close()
	b3 := device{user: bob, token: bobTok, Stream: srv.OpenStream(t, bobTok)}
	var told []starlingv1.PresenceStatus
	for len(told) == 0 || told[len(told)-1] != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		told = append(told, nextPresence(t, a).GetPresenceChanged().GetStatus())
	}
	for {
		f, ok := a.Poll(time.Second)
		if !ok {
			break
		}
		told = append(told, f.GetEvent().GetPresenceChanged().GetStatus())
	}
	if len(told) > 3 || told[len(told)-1] != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("after online, offline, online: told %v", told)
	}
	t.Logf("online, offline, online told as %v", told)
	c.Quiet(t, 10*time.Millisecond) // a stranger hears nothing
	if n := b3.Next(t).GetNotify(); n.GetConversationId() != storage.EventsConversationID(bob.ID) || n.GetLatestSeq() != 2 {
		t.Fatalf("bob's catch-up: %v", n)
	}
	// Presence is not stored: alice's stream holds the two friend events.
	if l := latestOf(t, srv, storage.EventsConversationID(alice.ID)); l != 2 {
		t.Fatalf("alice's stream holds %d events, want 2", l)
	}
}

// Events share the push window with messages: past it the stream is
// announced with a Notify and pulled, and nothing is lost or repeated.
func testEventStreamWindow(t *testing.T, srv *servertest.Server) {
	alice := srv.NewUser(t, "alice")
	a := connect(t, srv, alice, "phone")
	af := friendsOf(t, srv, a)
	conv := storage.EventsConversationID(alice.ID)
	var users []servertest.User
	for i := range 5 {
		users = append(users, srv.NewUser(t, fmt.Sprintf("user%d", i)))
	}
	for _, u := range users {
		af.request(t, u.ID) // none acked: the window (2) fills
	}
	var evs []*starlingv1.Event
	var notify *starlingv1.Notify
	for notify == nil {
		f := a.Next(t)
		if ev := f.GetEvent(); ev != nil {
			evs = append(evs, ev)
		} else if notify = f.GetNotify(); notify == nil {
			t.Fatalf("frame %v", f)
		}
	}
	if len(evs) != 2 || notify.GetConversationId() != conv {
		t.Fatalf("pushed %v then %v", evs, notify)
	}
	rest := syncEvents(t, a, conv, evs[len(evs)-1].GetSeq())
	all := append(evs, rest...)
	if len(all) != 5 {
		t.Fatalf("got %d events: %v", len(all), all)
	}
	for i, ev := range all {
		if ev.GetSeq() != int64(i+1) || ev.GetFriendRequested().GetToUserId() != users[i].ID {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	// Pushes resumed.
	if _, err := af.c.BlockUser(af.ctx, &starlingv1.BlockUserRequest{UserId: users[0].ID}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a); ev.GetSeq() != 6 {
		t.Fatalf("after sync: %v", ev)
	}
}

// Only the user syncs their stream; a malformed stream id is refused.
func testEventStreamPrivate(t *testing.T, srv *servertest.Server) {
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	a, b := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
	friendsOf(t, srv, a).request(t, bob.ID)
	nextEvent(t, a)
	nextEvent(t, b)
	ref := b.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: storage.EventsConversationID(alice.ID)}}})
	expectError(t, b, ref, codes.PermissionDenied)
	ref = b.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: "evt:"}}})
	expectError(t, b, ref, codes.InvalidArgument)
	// An ack of another user's stream moves nothing.
	b.Ack(t, storage.EventsConversationID(alice.ID), 1)
	quiet(t, b, 100*time.Millisecond)
}
