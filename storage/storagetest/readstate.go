package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var readStateTests = []test{
	{"CursorsNeverMoveBack", testReadCursors},
	{"InboxUnread", testInboxUnread},
	{"InboxPaging", testInboxPaging},
	{"InboxGroupsAndPeers", testInboxGroupsAndPeers},
	{"InboxHidesPeerAcrossBlock", testInboxHidesPeerAcrossBlock},
	{"Mute", testMute},
	{"ReadBy", testReadBy},
	{"LastSeen", testLastSeen},
}

func (fx *fixture) inbox(user string) map[string]storage.InboxEntry {
	fx.t.Helper()
	list, err := fx.s.Inbox(fx.t.Context(), storage.InboxQuery{UserID: user, DeviceID: "phone"})
	must(fx.t, err, "inbox of "+user)
	out := make(map[string]storage.InboxEntry, len(list))
	var unread int64
	for _, e := range list {
		out[e.ConversationID] = e
		unread += e.Unread
	}
	// Wherever the inbox is read, the badge's total agrees with it.
	total, err := fx.s.UnreadTotal(fx.t.Context(), user)
	must(fx.t, err, "unread total of "+user)
	if total != unread {
		fx.t.Fatalf("unread total of %s = %d; its inbox's counts add up to %d", user, total, unread)
	}
	return out
}

func (fx *fixture) markRead(at time.Time, cs ...storage.ReadCursor) {
	fx.t.Helper()
	must(fx.t, fx.s.AdvanceReadCursors(fx.t.Context(), cs, at), "advance read cursors")
}

func testReadCursors(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	ab := storage.C2CConversationID("alice", "bob")
	fx.send(ab, "bob", 10)
	cur := func(read, delivered int64) storage.ReadCursor {
		return storage.ReadCursor{UserID: "alice", ConversationID: ab, ReadSeq: read, DeliveredSeq: delivered}
	}
	want := func(read, delivered int64) {
		t.Helper()
		got, err := fx.s.ReadCursorOf(t.Context(), "alice", ab)
		must(t, err, "read cursor")
		if got.ReadSeq != read || got.DeliveredSeq != delivered {
			t.Fatalf("cursor = read %d delivered %d, want %d %d", got.ReadSeq, got.DeliveredSeq, read, delivered)
		}
	}
	want(0, 0)
	t0 := time.Now()
	fx.markRead(t0, cur(0, 4))
	want(0, 4)
	fx.markRead(t0, cur(3, 0)) // reading implies delivered: 4 stays
	want(3, 4)
	fx.markRead(t0, cur(6, 0)) // delivered follows the read cursor
	want(6, 6)
	fx.markRead(t0, cur(2, 1)) // never back
	want(6, 6)
	fx.markRead(t0, cur(0, 9))
	want(6, 9)
	if e := fx.inbox("alice")[ab]; e.ReadSeq != 6 || e.Unread != 4 {
		t.Fatalf("inbox entry: read %d unread %d, want 6 and 4", e.ReadSeq, e.Unread)
	}
	// The change time moves only with a position.
	before := fx.inbox("alice")[ab].ChangedAt
	fx.markRead(t0.Add(time.Hour), cur(5, 5))
	if got := fx.inbox("alice")[ab].ChangedAt; !got.Equal(before) {
		t.Fatalf("a cursor that did not move changed ChangedAt: %v → %v", before, got)
	}
	fx.markRead(t0.Add(time.Hour), cur(7, 0))
	if got := fx.inbox("alice")[ab].ChangedAt; !sameTime(got, t0.Add(time.Hour)) {
		t.Fatalf("ChangedAt after a move = %v, want %v", got, t0.Add(time.Hour))
	}
	fx.markRead(t0) // nothing is fine
}

func testInboxUnread(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	ab := storage.C2CConversationID("alice", "bob")
	ac := storage.C2CConversationID("alice", "carol")
	// Interleaved: own messages are never unread.
	fx.send(ab, "bob", 3)   // 1-3
	fx.send(ab, "alice", 2) // 4-5
	fx.send(ab, "bob", 1)   // 6
	fx.send(ac, "alice", 4)
	in := fx.inbox("alice")
	if got := in[ab].Unread; got != 4 {
		t.Fatalf("alice's unread in ab = %d, want 4", got)
	}
	if got := in[ac].Unread; got != 0 {
		t.Fatalf("alice's unread in ac (only her own) = %d, want 0", got)
	}
	if got, err := fx.s.UnreadTotal(t.Context(), "alice"); err != nil || got != 4 {
		t.Fatalf("alice's unread total = %d (%v), want 4", got, err)
	}
	if got, err := fx.s.UnreadTotal(t.Context(), "nobody"); err != nil || got != 0 {
		t.Fatalf("an unknown user's unread total = %d (%v), want 0", got, err)
	}
	if got := fx.inbox("bob")[ab].Unread; got != 2 {
		t.Fatalf("bob's unread = %d, want 2", got)
	}
	if got := fx.inbox("carol")[ac].Unread; got != 4 {
		t.Fatalf("carol's unread = %d, want 4", got)
	}
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "alice", ConversationID: ab, ReadSeq: 2})
	if got := fx.inbox("alice")[ab].Unread; got != 2 {
		t.Fatalf("alice's unread after reading to 2 = %d, want 2 (seqs 3 and 6)", got)
	}
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "alice", ConversationID: ab, ReadSeq: 6})
	if got := fx.inbox("alice")[ab].Unread; got != 0 {
		t.Fatalf("alice's unread after reading all = %d, want 0", got)
	}
	// The last message is the newest.
	e := fx.inbox("alice")[ab]
	if e.Last == nil || e.Last.Seq != 6 || e.Last.SenderID != "bob" || string(e.Last.Content) != "message 0" {
		t.Fatalf("last message = %+v, want bob's seq 6", e.Last)
	}
	// A system message (sender "": a group change such as "bob added
	// dave") is history, not something to read: it never counts as unread,
	// even when it is the last message; nor for the user it is about.
	fx.users("dave")
	fx.group("u", "alice", "bob")
	gu := storage.GroupConversationID("u")
	fx.send(gu, "bob", 1)
	fx.change(fx.addTx("u", "dave"))
	if e := fx.inbox("alice")[gu]; e.Unread != 1 || e.Last == nil || e.Last.SenderID != "" {
		t.Fatalf("after a system message: unread %d, last %+v; want 1 and the system message", e.Unread, e.Last)
	}
	if got := fx.inbox("dave")[gu].Unread; got != 0 {
		t.Fatalf("dave's unread after being added = %d, want 0", got)
	}
	fx.send(gu, "bob", 1)
	if got := fx.inbox("alice")[gu].Unread; got != 2 {
		t.Fatalf("alice's unread after a system message and bob's = %d, want 2", got)
	}

	// Far behind: messages older than the scanned window count whatever
	// their sender; the newest UnreadScan are looked at.
	if testing.Short() {
		return
	}
	msgs := make([]storage.NewMessage, 0, storage.UnreadScan+10)
	for i := range storage.UnreadScan + 10 {
		sender := "carol"
		if i >= 10 && i < 20 {
			sender = "alice" // inside the window: not counted
		}
		msgs = append(msgs, fx.msg(ac, sender, "x"))
	}
	fx.append(msgs...)
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "alice", ConversationID: ac, ReadSeq: 4})
	if got, want := fx.inbox("alice")[ac].Unread, int64(storage.UnreadScan); got != want {
		t.Fatalf("alice's unread far behind = %d, want %d", got, want)
	}
}

func testInboxPaging(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("me")
	var want []string
	for i := range 7 {
		peer := fmt.Sprintf("peer%d", i)
		fx.users(peer)
		conv := storage.C2CConversationID("me", peer)
		fx.send(conv, peer, 1)
		want = append([]string{conv}, want...) // newest first
		time.Sleep(2 * time.Millisecond)       // distinct activity times
	}
	var got []string
	q := storage.InboxQuery{UserID: "me", DeviceID: "phone", Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, err := fx.s.Inbox(t.Context(), q)
		must(t, err, "inbox page")
		for _, e := range page {
			got = append(got, e.ConversationID)
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].Position()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	all, err := fx.s.Inbox(t.Context(), storage.InboxQuery{UserID: "me"})
	must(t, err, "whole inbox")
	if len(all) != 7 {
		t.Fatalf("whole inbox has %d entries, want 7", len(all))
	}
}

func testInboxGroupsAndPeers(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol", "dave")
	fx.group("g", "alice", "bob", "carol")
	g := storage.GroupConversationID("g")
	fx.send(g, "bob", 5)
	_, err := s.AddMembers(ctx, "g", []string{"dave"}, 10) // at seq 5
	must(t, err, "add dave")
	fx.send(g, "carol", 2) // 6, 7
	in := fx.inbox("dave")[g]
	if in.GroupName != "Group g" || in.MemberCount != 4 {
		t.Fatalf("group entry: name %q members %d, want \"Group g\" 4", in.GroupName, in.MemberCount)
	}
	if in.Unread != 2 {
		t.Fatalf("dave's unread = %d, want 2 (he joined at 5)", in.Unread)
	}
	must(t, s.LeaveGroup(ctx, "g", "alice"), "alice leaves") // at 7
	fx.send(g, "bob", 3)
	a := fx.inbox("alice")[g]
	if a.LatestSeq != 7 || a.Unread != 7 || a.Last == nil || a.Last.Seq != 7 || a.MemberCount != 3 {
		t.Fatalf("alice after leaving: latest %d unread %d last %+v members %d; want 7, 7, seq 7, 3", a.LatestSeq, a.Unread, a.Last, a.MemberCount)
	}

	// One-to-one: the other user's cursor.
	ab := storage.C2CConversationID("alice", "bob")
	fx.send(ab, "alice", 3)
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "bob", ConversationID: ab, ReadSeq: 2, DeliveredSeq: 3})
	e := fx.inbox("alice")[ab]
	if e.PeerReadSeq != 2 || e.PeerDeliveredSeq != 3 || e.GroupName != "" || e.MemberCount != 0 {
		t.Fatalf("alice's entry: peer read %d delivered %d, group %q %d; want 2 3", e.PeerReadSeq, e.PeerDeliveredSeq, e.GroupName, e.MemberCount)
	}
	if e := fx.inbox("bob")[ab]; e.PeerReadSeq != 0 || e.ReadSeq != 2 || e.Unread != 1 {
		t.Fatalf("bob's entry: peer read %d read %d unread %d; want 0 2 1", e.PeerReadSeq, e.ReadSeq, e.Unread)
	}
	// A group's other members are not "peers".
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "bob", ConversationID: g, ReadSeq: 10})
	if e := fx.inbox("carol")[g]; e.PeerReadSeq != 0 {
		t.Fatalf("carol's group entry has a peer read seq %d", e.PeerReadSeq)
	}
}

// testInboxHidesPeerAcrossBlock: while a block stands between the two
// users, made by either, neither's inbox shows the other's cursor, nor
// counts the other's cursor moves as a change; lifting it shows them again.
func testInboxHidesPeerAcrossBlock(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("alice", "bob")
	ab := storage.C2CConversationID("alice", "bob")
	fx.send(ab, "alice", 3)
	fx.send(ab, "bob", 1)
	t0 := time.Now().Add(-time.Minute)
	fx.markRead(t0, storage.ReadCursor{UserID: "alice", ConversationID: ab, ReadSeq: 1},
		storage.ReadCursor{UserID: "bob", ConversationID: ab, ReadSeq: 2, DeliveredSeq: 3})
	peers := func(when string, aliceSees, bobSees [2]int64) {
		t.Helper()
		a, b := fx.inbox("alice")[ab], fx.inbox("bob")[ab]
		if got := [2]int64{a.PeerReadSeq, a.PeerDeliveredSeq}; got != aliceSees {
			t.Fatalf("%s: alice sees bob's read/delivered %v, want %v", when, got, aliceSees)
		}
		if got := [2]int64{b.PeerReadSeq, b.PeerDeliveredSeq}; got != bobSees {
			t.Fatalf("%s: bob sees alice's read/delivered %v, want %v", when, got, bobSees)
		}
	}
	peers("no block", [2]int64{2, 3}, [2]int64{1, 1})
	for blocker, move := range map[string]int64{"alice": 3, "bob": 4} {
		other := map[string]string{"alice": "bob", "bob": "alice"}[blocker]
		_, err := fx.s.Block(ctx, blocker, other, time.Now(), nil)
		must(t, err, blocker+" blocks")
		peers(blocker+" blocks", [2]int64{}, [2]int64{})
		// The blocker's moves during the block are no change to the other.
		before := fx.inbox(other)[ab].ChangedAt
		fx.markRead(time.Now().Add(time.Minute), storage.ReadCursor{UserID: blocker, ConversationID: ab, ReadSeq: move})
		if got := fx.inbox(other)[ab]; !got.ChangedAt.Equal(before) || got.PeerReadSeq != 0 {
			t.Fatalf("%s blocks: %s's entry changed at %v (was %v), peer read %d, after %s read", blocker, other, got.ChangedAt, before, got.PeerReadSeq, blocker)
		}
		_, err = fx.s.Unblock(ctx, blocker, other, nil)
		must(t, err, blocker+" unblocks")
	}
	if e := fx.inbox("bob")[ab]; e.ReadSeq != 4 || e.Unread != 0 {
		t.Fatalf("bob's own cursor %d unread %d, want 4 0", e.ReadSeq, e.Unread)
	}
	peers("unblocked", [2]int64{4, 4}, [2]int64{3, 3})
}

func testMute(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	ab := storage.C2CConversationID("alice", "bob")
	fx.send(ab, "bob", 2)
	mute := func(until time.Time) {
		t.Helper()
		must(t, fx.s.SetMute(t.Context(), "alice", ab, until, time.Now()), "set mute")
	}
	if m := fx.inbox("alice")[ab].MutedUntil; !m.IsZero() {
		t.Fatalf("muted until %v before any mute", m)
	}
	until := time.Now().Add(time.Hour)
	mute(until)
	if m := fx.inbox("alice")[ab].MutedUntil; !sameTime(m, until) {
		t.Fatalf("muted until %v, want %v", m, until)
	}
	if m, err := fx.s.MutedUntil(t.Context(), "alice", ab); err != nil || !sameTime(m, until) {
		t.Fatalf("MutedUntil = %v, %v; want %v", m, err, until)
	}
	if m, err := fx.s.MutedUntil(t.Context(), "bob", ab); err != nil || !m.IsZero() {
		t.Fatalf("bob's MutedUntil = %v, %v; want zero (no row)", m, err)
	}
	if m := fx.inbox("bob")[ab].MutedUntil; !m.IsZero() {
		t.Fatalf("bob's mute %v: mutes are per user", m)
	}
	mute(storage.MutedForever)
	if m := fx.inbox("alice")[ab].MutedUntil; !m.Equal(storage.MutedForever) {
		t.Fatalf("muted until %v, want for ever", m)
	}
	if m, err := fx.s.MutedUntil(t.Context(), "alice", ab); err != nil || !m.Equal(storage.MutedForever) {
		t.Fatalf("MutedUntil = %v, %v; want for ever", m, err)
	}
	fx.markRead(time.Now(), storage.ReadCursor{UserID: "alice", ConversationID: ab, ReadSeq: 1})
	e := fx.inbox("alice")[ab]
	if !e.MutedUntil.Equal(storage.MutedForever) || e.ReadSeq != 1 {
		t.Fatalf("a read cursor move changed the mute (%v) or was lost (%d)", e.MutedUntil, e.ReadSeq)
	}
	mute(time.Time{})
	if e := fx.inbox("alice")[ab]; !e.MutedUntil.IsZero() || e.ReadSeq != 1 {
		t.Fatalf("unmuted: until %v read %d, want zero and 1", e.MutedUntil, e.ReadSeq)
	}
}

func testReadBy(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("a", "b", "c", "d", "e")
	fx.group("g", "a", "b", "c", "d")
	g := storage.GroupConversationID("g")
	fx.send(g, "a", 4)
	_, err := s.AddMembers(ctx, "g", []string{"e"}, 10) // e joins at 4: cannot read seq 3
	must(t, err, "add e")
	now := time.Now()
	fx.markRead(now,
		storage.ReadCursor{UserID: "a", ConversationID: g, ReadSeq: 4},
		storage.ReadCursor{UserID: "b", ConversationID: g, ReadSeq: 3},
		storage.ReadCursor{UserID: "c", ConversationID: g, ReadSeq: 2},
		storage.ReadCursor{UserID: "e", ConversationID: g, ReadSeq: 4})
	n, users, err := s.ReadBy(ctx, g, 3, "a", 10)
	must(t, err, "read by")
	if n != 1 || fmt.Sprint(users) != "[b]" {
		t.Fatalf("ReadBy(3) = %d %v, want 1 [b]", n, users)
	}
	n, users, err = s.ReadBy(ctx, g, 2, "a", 1)
	must(t, err, "read by")
	if n != 2 || len(users) != 1 {
		t.Fatalf("ReadBy(2, limit 1) = %d %v, want 2 and one user", n, users)
	}
	fx.send(g, "a", 1) // 5
	fx.markRead(now, storage.ReadCursor{UserID: "e", ConversationID: g, ReadSeq: 5})
	n, users, err = s.ReadBy(ctx, g, 5, "a", 10)
	must(t, err, "read by")
	if n != 1 || fmt.Sprint(users) != "[e]" {
		t.Fatalf("ReadBy(5) = %d %v, want 1 [e]", n, users)
	}
}

func testLastSeen(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	ctx := t.Context()
	fx.users("alice")
	seen := func(device string) time.Time {
		t.Helper()
		at, err := fx.s.LastSeen(ctx, "alice", device)
		must(t, err, "last seen")
		return at
	}
	if at := seen("phone"); !at.IsZero() {
		t.Fatalf("a device never seen was seen at %v", at)
	}
	t1 := time.Now()
	must(t, fx.s.MarkSeen(ctx, []storage.DeviceSeen{{UserID: "alice", DeviceID: "phone", At: t1}}), "mark seen")
	if at := seen("phone"); !sameTime(at, t1) {
		t.Fatalf("seen at %v, want %v", at, t1)
	}
	must(t, fx.s.MarkSeen(ctx, []storage.DeviceSeen{{UserID: "alice", DeviceID: "phone", At: t1.Add(-time.Hour)}, {UserID: "alice", DeviceID: "laptop", At: t1}}), "mark seen")
	if at := seen("phone"); !sameTime(at, t1) {
		t.Fatalf("seen moved back to %v", at)
	}
	if at := seen("laptop"); !sameTime(at, t1) {
		t.Fatalf("laptop seen at %v, want %v", at, t1)
	}
}
