package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// TestReadState runs the read state, inbox, receipt and typing scenarios
// against a real server, once per storage backend.
func TestReadState(t *testing.T) {
	cases := []e2eCase{
		{name: "unread counts", run: testUnreadCounts},
		{name: "unread across many conversations", run: testUnreadMany},
		{name: "cursor never moves back", run: testCursorNeverBack},
		{name: "inbox paging and mute", run: testInboxPagingMute},
		{name: "receipts coalesced", run: testReceiptsCoalesced},
		{name: "receipts to an offline sender", run: testReceiptsOffline},
		{name: "no receipts across a block", run: testReceiptsBlocked},
		{name: "inbox and welcome hide read state across a block", run: testInboxBlockHidesPeer},
		{name: "group who read", run: testGroupWhoRead},
		{name: "typing", run: testTyping},
		{name: "bad inputs", run: testReadBadInputs},
	}
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					srv := servertest.Start(t, append([]servertest.Option{servertest.WithStore(b.New(t))}, c.opts...)...)
					c.run(t, srv)
				})
			}
		})
	}
}

// listInbox lists every conversation of d's user as d sees it, by id.
func listInbox(t *testing.T, srv *servertest.Server, token string) (map[string]*starlingv1.ConversationState, []string) {
	t.Helper()
	res, err := chatClient(t, srv).ListConversations(servertest.WithToken(t.Context(), token), &starlingv1.ListConversationsRequest{})
	if err != nil {
		t.Fatalf("list conversations: %v", err)
	}
	out := make(map[string]*starlingv1.ConversationState)
	var order []string
	for _, c := range res.GetConversations() {
		out[c.GetConversationId()] = c
		order = append(order, c.GetConversationId())
	}
	return out, order
}

// markRead sends a MarkRead frame and waits until the server handled it
// (a Ping behind it is answered in order); it fails on an Error.
func markRead(t *testing.T, d device, conv string, seq int64) {
	t.Helper()
	ref := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: conv, Seq: seq}}})
	ping := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for {
		f := d.Next(t)
		if f.GetRef() == ref {
			t.Fatalf("MarkRead(%s, %d) refused: %v", conv, seq, f.GetError())
		}
		if f.GetRef() == ping {
			return
		}
	}
}

// receiptFor reads frames until a Receipt of conv by user reaching read
// seq and returns how many Receipts of conv came on the way (it included).
func receiptFor(t *testing.T, d device, conv, user string, read int64) int {
	t.Helper()
	n := 0
	for {
		r := d.Next(t).GetReceipt()
		if r == nil || r.GetConversationId() != conv {
			continue
		}
		n++
		if r.GetUserId() == user && r.GetReadSeq() >= read {
			return n
		}
	}
}

func sendN(t *testing.T, from device, to string, n int, tag string) int64 {
	t.Helper()
	var seq int64
	for i := range n {
		ack, _ := expectAck(t, from, from.Text(t, to, "", fmt.Sprintf("%s-%d", tag, i), fmt.Sprintf("%s %d", tag, i)))
		seq = ack.GetSeq()
	}
	return seq
}

func testUnreadCounts(t *testing.T, srv *servertest.Server) {
	aliceU, bobU, carolU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	phone, laptop := connect(t, srv, aliceU, "phone"), connect(t, srv, aliceU, "laptop")
	bob, carol := connect(t, srv, bobU, "phone"), connect(t, srv, carolU, "phone")
	ab, ac := storage.C2CConversationID(aliceU.ID, bobU.ID), storage.C2CConversationID(aliceU.ID, carolU.ID)
	sendN(t, bob, aliceU.ID, 3, "b")   // 1-3
	sendN(t, phone, bobU.ID, 2, "a")   // 4-5, alice's own
	sendN(t, carol, aliceU.ID, 4, "c") // ac 1-4
	time.Sleep(2 * time.Millisecond)   // a later activity time (ms) for the order below
	sendN(t, bob, aliceU.ID, 1, "b2")  // 6
	got, order := listInbox(t, srv, laptop.token)
	if !slices.Equal(order, []string{ab, ac}) {
		t.Fatalf("inbox order %v, want [ab ac]", order)
	}
	if got[ab].GetUnreadCount() != 4 || got[ac].GetUnreadCount() != 4 {
		t.Fatalf("unread ab %d ac %d, want 4 and 4", got[ab].GetUnreadCount(), got[ac].GetUnreadCount())
	}
	if lm := got[ab].GetLastMessage(); lm.GetSeq() != 6 || lm.GetContent().GetText() != "b2 0" || lm.GetSenderId() != bobU.ID {
		t.Fatalf("last message %v", lm)
	}
	if b, _ := listInbox(t, srv, bob.token); b[ab].GetUnreadCount() != 2 {
		t.Fatalf("bob's unread %d, want 2 (alice's two)", b[ab].GetUnreadCount())
	}
	// The phone reads: the laptop hears it (a Receipt of alice's own
	// cursor) and lists the new count; the count is the user's.
	markRead(t, phone, ab, 5)
	receiptFor(t, laptop, ab, aliceU.ID, 5)
	// The phone is not told what it said itself. (A listing writes what
	// is pending and sends its receipts before it answers.)
	listInbox(t, srv, phone.token)
	phone.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := phone.Next(t); f.GetPong() == nil; f = phone.Next(t) {
		if r := f.GetReceipt(); r.GetUserId() == aliceU.ID {
			t.Fatalf("the reading device got its own receipt: %v", r)
		}
	}
	if got, _ := listInbox(t, srv, laptop.token); got[ab].GetUnreadCount() != 1 || got[ab].GetReadSeq() != 5 {
		t.Fatalf("after reading to 5: unread %d read %d, want 1 and 5", got[ab].GetUnreadCount(), got[ab].GetReadSeq())
	}
	// The unary call reads too; the other conversation is untouched.
	if _, err := chatClient(t, srv).MarkRead(servertest.WithToken(t.Context(), laptop.token), &starlingv1.MarkReadRequest{ConversationId: ac, Seq: 4}); err != nil {
		t.Fatalf("unary MarkRead: %v", err)
	}
	got, _ = listInbox(t, srv, phone.token)
	if got[ab].GetUnreadCount() != 1 || got[ac].GetUnreadCount() != 0 {
		t.Fatalf("after reading ac: unread ab %d ac %d, want 1 and 0", got[ab].GetUnreadCount(), got[ac].GetUnreadCount())
	}
	// A new device's Welcome carries the total and the whole inbox.
	tablet := connect(t, srv, aliceU, "tablet")
	sum := tablet.Welcome.GetInbox()
	if sum.GetTotalUnread() != 1 || sum.GetSeenBefore() || len(sum.GetChanged()) != 2 {
		t.Fatalf("tablet's Welcome inbox: %v", sum)
	}
}

func testCursorNeverBack(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	sendN(t, bob, aliceU.ID, 6, "b")
	markRead(t, alice, ab, 5)
	markRead(t, alice, ab, 2) // accepted, changes nothing
	if _, err := chatClient(t, srv).MarkRead(servertest.WithToken(t.Context(), alice.token), &starlingv1.MarkReadRequest{ConversationId: ab, Seq: 1}); err != nil {
		t.Fatalf("a lower MarkRead is not an error: %v", err)
	}
	if got, _ := listInbox(t, srv, alice.token); got[ab].GetReadSeq() != 5 || got[ab].GetUnreadCount() != 1 {
		t.Fatalf("read %d unread %d, want 5 and 1", got[ab].GetReadSeq(), got[ab].GetUnreadCount())
	}
	// Across a restart (a graceful stop writes what is pending).
	markRead(t, alice, ab, 6)
	srv.Restart(t)
	tok := srv.Login(t, aliceU, "phone")
	if got, _ := listInbox(t, srv, tok); got[ab].GetReadSeq() != 6 || got[ab].GetUnreadCount() != 0 {
		t.Fatalf("after restart: read %d unread %d, want 6 and 0", got[ab].GetReadSeq(), got[ab].GetUnreadCount())
	}
}

func testInboxPagingMute(t *testing.T, srv *servertest.Server) {
	meU := srv.NewUser(t, "myself")
	me := connect(t, srv, meU, "phone")
	var want []string
	for i := range 5 {
		u := srv.NewUser(t, fmt.Sprintf("peer%d", i))
		d := connect(t, srv, u, "phone")
		sendN(t, d, meU.ID, 1, "hi")
		want = append([]string{storage.C2CConversationID(meU.ID, u.ID)}, want...)
		time.Sleep(2 * time.Millisecond) // distinct activity times (ms)
	}
	ctx := servertest.WithToken(t.Context(), me.token)
	var got []string
	req := &starlingv1.ListConversationsRequest{PageSize: 2}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		res, err := chatClient(t, srv).ListConversations(ctx, req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, c := range res.GetConversations() {
			got = append(got, c.GetConversationId())
		}
		if res.GetNextPageToken() == "" {
			break
		}
		req.PageToken = res.GetNextPageToken()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	// The cheap listing a client's resync uses: every conversation, the
	// delivery fields only.
	states, err := chatClient(t, srv).ListConversations(ctx, &starlingv1.ListConversationsRequest{StatesOnly: true})
	if err != nil || len(states.GetConversations()) != 5 || states.GetConversations()[0].GetLatestSeq() != 1 || states.GetConversations()[0].GetLastMessage() != nil {
		t.Fatalf("states only: %v %v", states, err)
	}
	// Mute one for ever, another for an hour, then unmute it.
	c := chatClient(t, srv)
	if _, err := c.SetMute(ctx, &starlingv1.SetMuteRequest{ConversationId: want[0], Forever: true}); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if _, err := c.SetMute(ctx, &starlingv1.SetMuteRequest{ConversationId: want[1], MutedUntil: timestamppb.New(until)}); err != nil {
		t.Fatal(err)
	}
	in, _ := listInbox(t, srv, me.token)
	if !in[want[0]].GetMuted() || in[want[0]].GetMutedUntil() != nil || !in[want[1]].GetMuted() || !in[want[1]].GetMutedUntil().AsTime().Equal(until) || in[want[2]].GetMuted() {
		t.Fatalf("mutes: %v / %v / %v", in[want[0]], in[want[1]], in[want[2]])
	}
	if _, err := c.SetMute(ctx, &starlingv1.SetMuteRequest{ConversationId: want[1]}); err != nil {
		t.Fatal(err)
	}
	if in, _ := listInbox(t, srv, me.token); in[want[1]].GetMuted() {
		t.Fatalf("still muted after unmute: %v", in[want[1]])
	}
}

func testReceiptsCoalesced(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	const n = 100
	start := time.Now()
	done := make(chan struct{})
	go func() {
		// Bob acks and reads each message as it arrives (pulling when
		// told to).
		defer close(done)
		read := func(seq int64) {
			bob.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: ab, Seq: seq}}})
		}
		for last := int64(0); last < n; {
			f := bob.Next(t)
			for _, m := range f.GetPush().GetMessages() {
				if m.GetSeq() > last {
					last = m.GetSeq()
					bob.Ack(t, ab, last)
					read(last)
				}
			}
			if f.GetNotify() != nil {
				if ms := syncAll(t, bob, ab, last); len(ms) > 0 {
					last = ms[len(ms)-1].GetSeq()
					read(last)
				}
			}
		}
	}()
	for i := range n {
		alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), "hello")
	}
	receipts, acks := 0, 0
	for {
		f := alice.Next(t)
		if f.GetSendAck() != nil {
			acks++
		}
		if r := f.GetReceipt(); r != nil {
			if r.GetUserId() != bobU.ID || r.GetConversationId() != ab {
				t.Fatalf("receipt %v", r)
			}
			receipts++
			if r.GetReadSeq() == n {
				break
			}
		}
	}
	<-done
	elapsed := time.Since(start)
	// One per flush at most, whatever the number of messages.
	bound := int(elapsed/server.DefaultConfig().ReadFlushInterval) + 2
	t.Logf("%d messages read: %d receipts in %v (acks %d)", n, receipts, elapsed, acks)
	if receipts > bound || receipts >= n/2 {
		t.Fatalf("%d receipts for %d messages in %v; want at most %d (one per flush)", receipts, n, elapsed, bound)
	}
}

// testReceiptsBlocked: bob blocks alice after her message; his read still
// moves his own cursor (his other device is told), but alice is told
// nothing.
func testReceiptsBlocked(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	tablet := connect(t, srv, bobU, "tablet")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "m1", "before the block"))
	if _, err := friendsOf(t, srv, bob).c.BlockUser(friendsOf(t, srv, bob).ctx, &starlingv1.BlockUserRequest{UserId: aliceU.ID}); err != nil {
		t.Fatal(err)
	}
	bob.Ack(t, ab, 1)
	bob.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: ab, Seq: 1}}})
	// The tablet's Receipt means the move was written and signalled: a
	// receipt for alice would have been handed over in the same call.
	for {
		if r := tablet.Next(t).GetReceipt(); r != nil && r.GetConversationId() == ab && r.GetReadSeq() == 1 {
			break
		}
	}
	ping := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := alice.Next(t); f.GetRef() != ping; f = alice.Next(t) {
		if r := f.GetReceipt(); r != nil {
			t.Fatalf("alice, blocked by bob, got his receipt %v", r)
		}
	}
}

func testReceiptsOffline(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	sendN(t, alice, bobU.ID, 10, "a")
	alice.Close()
	pushed(t, bob, 10)
	// Bob reads in three moves while alice is away; his own list makes
	// sure they are written.
	markRead(t, bob, ab, 3)
	if got, _ := listInbox(t, srv, bob.token); got[ab].GetReadSeq() != 3 {
		t.Fatalf("bob's read seq %d", got[ab].GetReadSeq())
	}
	markRead(t, bob, ab, 7)
	markRead(t, bob, ab, 10)
	if got, _ := listInbox(t, srv, bob.token); got[ab].GetReadSeq() != 10 || got[ab].GetUnreadCount() != 0 {
		t.Fatalf("bob's read seq %d unread %d", got[ab].GetReadSeq(), got[ab].GetUnreadCount())
	}
	// Alice comes back: the Welcome lists the conversation with bob's
	// positions, and one Receipt follows with the latest, not one per move.
	back := device{user: aliceU, token: alice.token, Stream: srv.OpenStream(t, alice.token)}
	sum := back.Welcome.GetInbox()
	if !sum.GetSeenBefore() || len(sum.GetChanged()) != 1 || sum.GetChanged()[0].GetPeerReadSeq() != 10 || sum.GetChanged()[0].GetPeerDeliveredSeq() != 10 {
		t.Fatalf("Welcome inbox %v", sum)
	}
	if n := receiptFor(t, back, ab, bobU.ID, 10); n != 1 {
		t.Fatalf("%d receipts before the latest, want exactly one", n)
	}
	// Nothing more about it while nothing moves.
	deadline := time.After(3 * server.DefaultConfig().ReadFlushInterval)
	for {
		select {
		case <-deadline:
			return
		default:
		}
		back.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
		if f := back.Next(t); f.GetReceipt() != nil {
			t.Fatalf("a second receipt: %v", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testGroupWhoRead(t *testing.T, srv *servertest.Server) {
	ownerU := srv.NewUser(t, "owner")
	owner := connect(t, srv, ownerU, "phone")
	var users []servertest.User
	var members []device
	for i := range 4 {
		u := srv.NewUser(t, fmt.Sprintf("member%d", i))
		users = append(users, u)
		members = append(members, connect(t, srv, u, "phone"))
	}
	g := newGroup(t, srv, owner, users...)
	conv := g.GetConversationId()
	ack, _ := expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "g1", "hello all"))
	markRead(t, members[0], conv, ack.GetSeq())
	markRead(t, members[2], conv, ack.GetSeq())
	res, err := chatClient(t, srv).GetReadReceipts(servertest.WithToken(t.Context(), members[1].token), &starlingv1.GetReadReceiptsRequest{ConversationId: conv, Seq: ack.GetSeq()})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{users[0].ID, users[2].ID}
	slices.Sort(want)
	if res.GetReadCount() != 2 || !slices.Equal(res.GetReadBy(), want) {
		t.Fatalf("read by %d %v, want 2 %v", res.GetReadCount(), res.GetReadBy(), want)
	}
	res, err = chatClient(t, srv).GetReadReceipts(servertest.WithToken(t.Context(), owner.token), &starlingv1.GetReadReceiptsRequest{ConversationId: conv, Seq: ack.GetSeq(), Limit: 1})
	if err != nil || res.GetReadCount() != 2 || len(res.GetReadBy()) != 1 {
		t.Fatalf("limit 1: %v %v", res, err)
	}
	if in, _ := listInbox(t, srv, members[3].token); in[conv].GetGroupName() != "team" || in[conv].GetMemberCount() != 5 || in[conv].GetUnreadCount() != 1 { // "hello all" (the creation is a system message)
		t.Fatalf("group entry %v", in[conv])
	}
	// No receipt storm: the sender hears no group Receipt; a reader's
	// own devices would.
	owner.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := owner.Next(t); f.GetPong() == nil; f = owner.Next(t) {
		if f.GetReceipt() != nil {
			t.Fatalf("group receipt to the sender: %v", f)
		}
	}
}

func testTyping(t *testing.T, srv *servertest.Server) {
	aliceU, bobU, carolU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	alice, laptop, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, aliceU, "laptop"), connect(t, srv, bobU, "phone")
	carol := connect(t, srv, carolU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	typing := func(d device, conv string) uint64 {
		return d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Typing{Typing: &starlingv1.Typing{ConversationId: conv}}})
	}
	typing(alice, ab)
	f := bob.Next(t)
	if n := f.GetTyping(); n.GetConversationId() != ab || n.GetUserId() != aliceU.ID || n.GetDeviceId() != "phone" {
		t.Fatalf("bob got %v, want alice's TypingNotice", f)
	}
	// Rate-limited per device: the burst passes, the rest is refused.
	refused := 0
	for range 10 {
		typing(alice, ab)
	}
	ping := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := alice.Next(t); f.GetRef() != ping; f = alice.Next(t) {
		if e := f.GetError(); e != nil {
			if codes.Code(e.GetCode()) != codes.ResourceExhausted {
				t.Fatalf("typing refused with %v", e)
			}
			refused++
		}
		if f.GetTyping() != nil {
			t.Fatalf("the typing device got its own notice")
		}
	}
	if refused < 10-3 {
		t.Fatalf("%d of 10 typing frames refused, want at least 7", refused)
	}
	// Not relayed to a non-member; a non-member's typing is refused.
	ref := typing(carol, ab)
	expectError(t, carol, ref, codes.PermissionDenied)
	// Never stored: the conversation has no message, and the other device
	// of alice did not hear her.
	if latest, err := srv.Store().LatestSeq(t.Context(), ab); err != nil || latest != 0 {
		t.Fatalf("latest seq %d (%v) after typing, want 0", latest, err)
	}
	laptop.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := laptop.Next(t); f.GetPong() == nil; f = laptop.Next(t) {
		if f.GetTyping() != nil {
			t.Fatalf("alice's laptop heard her typing: %v", f)
		}
	}
	// Groups: every other member.
	g := newGroup(t, srv, alice, bobU, carolU)
	typing(carol, g.GetConversationId())
	for _, d := range []device{alice, bob} {
		for {
			f := d.Next(t)
			if n := f.GetTyping(); n != nil && n.GetConversationId() == g.GetConversationId() {
				if n.GetUserId() != carolU.ID {
					t.Fatalf("notice %v", n)
				}
				break
			}
		}
	}
}

func testReadBadInputs(t *testing.T, srv *servertest.Server) {
	aliceU, bobU, carolU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	carol := connect(t, srv, carolU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	sendN(t, bob, aliceU.ID, 3, "b")
	frame := func(d device, conv string, seq int64, code codes.Code) {
		t.Helper()
		ref := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: conv, Seq: seq}}})
		expectError(t, d, ref, code)
	}
	frame(alice, ab, 0, codes.InvalidArgument)
	frame(alice, ab, -4, codes.InvalidArgument)
	frame(alice, ab, 4, codes.InvalidArgument) // past the newest
	frame(alice, "nonsense", 1, codes.InvalidArgument)
	frame(alice, "", 1, codes.InvalidArgument)
	frame(carol, ab, 1, codes.PermissionDenied)
	frame(alice, "grp:nosuchgroup", 1, codes.PermissionDenied)
	ref := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Typing{Typing: &starlingv1.Typing{ConversationId: "bad"}}})
	expectError(t, alice, ref, codes.InvalidArgument)

	c, ctx := chatClient(t, srv), servertest.WithToken(t.Context(), alice.token)
	wantCode := func(err error, code codes.Code, what string) {
		t.Helper()
		if status.Code(err) != code {
			t.Fatalf("%s: %v, want %v", what, err, code)
		}
	}
	_, err := c.MarkRead(ctx, &starlingv1.MarkReadRequest{ConversationId: ab, Seq: 9})
	wantCode(err, codes.InvalidArgument, "unary MarkRead past the newest")
	_, err = c.MarkRead(servertest.WithToken(t.Context(), carol.token), &starlingv1.MarkReadRequest{ConversationId: ab, Seq: 1})
	wantCode(err, codes.PermissionDenied, "unary MarkRead by a non-member")
	_, err = c.ListConversations(ctx, &starlingv1.ListConversationsRequest{PageSize: -1})
	wantCode(err, codes.InvalidArgument, "page_size -1")
	_, err = c.ListConversations(ctx, &starlingv1.ListConversationsRequest{PageSize: 1001})
	wantCode(err, codes.InvalidArgument, "page_size 1001")
	_, err = c.ListConversations(ctx, &starlingv1.ListConversationsRequest{PageSize: 1, PageToken: "%%%"})
	wantCode(err, codes.InvalidArgument, "bad page token")
	_, err = c.ListConversations(ctx, &starlingv1.ListConversationsRequest{PageSize: 1, StatesOnly: true})
	wantCode(err, codes.InvalidArgument, "states_only paged")
	_, err = c.SetMute(ctx, &starlingv1.SetMuteRequest{ConversationId: ab, MutedUntil: &timestamppb.Timestamp{Seconds: -1 << 50}})
	wantCode(err, codes.InvalidArgument, "bad mute time")
	_, err = c.SetMute(servertest.WithToken(t.Context(), carol.token), &starlingv1.SetMuteRequest{ConversationId: ab, Forever: true})
	wantCode(err, codes.PermissionDenied, "mute by a non-member")
	_, err = c.GetReadReceipts(ctx, &starlingv1.GetReadReceiptsRequest{ConversationId: ab, Seq: 1, Limit: 101})
	wantCode(err, codes.InvalidArgument, "receipts limit 101")
	_, err = c.GetReadReceipts(ctx, &starlingv1.GetReadReceiptsRequest{ConversationId: ab, Seq: 40})
	wantCode(err, codes.InvalidArgument, "receipts of no message")
	_, err = c.GetReadReceipts(servertest.WithToken(t.Context(), carol.token), &starlingv1.GetReadReceiptsRequest{ConversationId: ab, Seq: 1})
	wantCode(err, codes.PermissionDenied, "receipts by a non-member")
	// Nothing was lost or moved.
	if in, _ := listInbox(t, srv, alice.token); in[ab].GetReadSeq() != 0 || in[ab].GetUnreadCount() != 3 || in[ab].GetMuted() {
		t.Fatalf("after bad inputs: %v", in[ab])
	}
}

// Twelve conversations, each with its own mix of unread, own and read
// messages: every count is right, and the Welcome's total is their sum.
func testUnreadMany(t *testing.T, srv *servertest.Server) {
	meU := srv.NewUser(t, "myself")
	me := connect(t, srv, meU, "phone")
	want := make(map[string]int64)
	var total int64
	for i := range 12 {
		u := srv.NewUser(t, fmt.Sprintf("peer%02d", i))
		peer := connect(t, srv, u, "phone")
		conv := storage.C2CConversationID(meU.ID, u.ID)
		sendN(t, peer, meU.ID, i, "p")                 // i from the peer
		sendN(t, me, u.ID, i%3, fmt.Sprintf("m%d", i)) // some of mine, after them
		last := sendN(t, peer, meU.ID, 2, "q")         // two more from the peer
		read := int64(0)
		if i%4 == 0 && last > 0 {
			read = last - 1 // read all but the very last
			markRead(t, me, conv, read)
		}
		n := int64(i + 2)
		if read > 0 {
			n = 1
		}
		want[conv], total = n, total+n
	}
	got, _ := listInbox(t, srv, me.token)
	for conv, n := range want {
		if got[conv].GetUnreadCount() != n {
			t.Fatalf("%s: unread %d, want %d", conv, got[conv].GetUnreadCount(), n)
		}
	}
	me.Close()
	back := srv.OpenStream(t, me.token)
	if back.Welcome.GetInbox().GetTotalUnread() != total {
		t.Fatalf("Welcome's total unread %d, want %d", back.Welcome.GetInbox().GetTotalUnread(), total)
	}
}

// A block, whoever made it, hides each user's positions from the other in
// ListConversations and in the Welcome's inbox summary (and sends no
// Receipt after the Welcome); lifting it shows them again.
func testInboxBlockHidesPeer(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	ab := storage.C2CConversationID(aliceU.ID, bobU.ID)
	sendN(t, alice, bobU.ID, 3, "a")
	pushed(t, bob, 3)
	markRead(t, bob, ab, 2)
	expectAck(t, bob, bob.Text(t, aliceU.ID, "", "b4", "from bob"))
	pushed(t, alice, 1)
	markRead(t, alice, ab, 4)
	peers := func(when string, aliceSees, bobSees [2]int64) {
		t.Helper()
		a, _ := listInbox(t, srv, alice.token)
		b, _ := listInbox(t, srv, bob.token)
		if got := [2]int64{a[ab].GetPeerReadSeq(), a[ab].GetPeerDeliveredSeq()}; got != aliceSees {
			t.Fatalf("%s: alice sees bob's read/delivered %v, want %v", when, got, aliceSees)
		}
		if got := [2]int64{b[ab].GetPeerReadSeq(), b[ab].GetPeerDeliveredSeq()}; got != bobSees {
			t.Fatalf("%s: bob sees alice's read/delivered %v, want %v", when, got, bobSees)
		}
	}
	peers("before the block", [2]int64{2, 3}, [2]int64{4, 4})
	users := map[string]servertest.User{aliceU.ID: aliceU, bobU.ID: bobU}
	for _, pair := range [][2]servertest.User{{bobU, aliceU}, {aliceU, bobU}} {
		blocker, blocked := pair[0], pair[1]
		f := friendsOf(t, srv, device{token: map[string]string{aliceU.ID: alice.token, bobU.ID: bob.token}[blocker.ID]})
		if _, err := f.c.BlockUser(f.ctx, &starlingv1.BlockUserRequest{UserId: blocked.ID}); err != nil {
			t.Fatal(err)
		}
		peers(blocker.Username+" blocks", [2]int64{}, [2]int64{})
		// The Welcome of either side reveals nothing either.
		for _, d := range []*device{&alice, &bob} {
			d.Close()
			*d = device{user: users[d.user.ID], token: d.token, Stream: srv.OpenStream(t, d.token)}
			var entry *starlingv1.ConversationState
			for _, c := range d.Welcome.GetInbox().GetChanged() {
				if c.GetConversationId() == ab {
					entry = c
				}
			}
			if entry == nil || entry.GetPeerReadSeq() != 0 || entry.GetPeerDeliveredSeq() != 0 || entry.GetReadSeq() == 0 {
				t.Fatalf("%s blocks: %s's Welcome inbox %v, want the conversation without the other's positions", blocker.Username, d.user.Username, d.Welcome.GetInbox())
			}
			ping := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
			for fr := d.Next(t); fr.GetRef() != ping; fr = d.Next(t) {
				if r := fr.GetReceipt(); r.GetConversationId() == ab && r.GetUserId() != d.user.ID {
					t.Fatalf("%s blocks: %s got the other's receipt %v after the Welcome", blocker.Username, d.user.Username, r)
				}
			}
		}
		if _, err := f.c.UnblockUser(f.ctx, &starlingv1.UnblockUserRequest{UserId: blocked.ID}); err != nil {
			t.Fatal(err)
		}
		peers(blocker.Username+" unblocked", [2]int64{2, 3}, [2]int64{4, 4})
	}
}
