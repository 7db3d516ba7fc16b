package storagetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var groupTests = []test{
	{"CreateAndGet", testCreateGroup},
	{"DuplicateID", testDuplicateGroup},
	{"CreateWithUnknownMember", testCreateGroupUnknownMember},
	{"CreateTooMany", testCreateGroupTooMany},
	{"AddMembers", testAddMembers},
	{"AddMembersErrors", testAddMembersErrors},
	{"GroupFull", testGroupFull},
	{"LeaveAndRejoin", testLeaveAndRejoin},
	{"LeaveErrors", testLeaveErrors},
	{"MembershipNotFound", testMembershipNotFound},
	{"LeaveBeforeFirstMessage", testLeaveBeforeFirstMessage},
	{"RejoinKeepsEarlierPeriods", testRejoinKeepsEarlierPeriods},
	{"MembershipEpoch", testMembershipEpoch},
	{"FailedChangesKeepEpoch", testFailedChangesKeepEpoch},
	{"EmptyGroup", testEmptyGroup},
	{"EpochNamesMembersUnderConcurrency", testEpochUnderConcurrency},
}

// openSeq is the LeftSeq of an active period.
const openSeq = storage.OpenSeq

// wantMembers checks ListMembers and GetGroup's MemberCount, and returns
// the membership epoch ListMembers reported.
func (fx *fixture) wantMembers(groupID string, want ...string) int64 {
	fx.t.Helper()
	set, err := fx.s.ListMembers(fx.t.Context(), groupID)
	must(fx.t, err, "list members of "+groupID)
	if got, want := slices.Sorted(slices.Values(set.Members)), slices.Sorted(slices.Values(want)); !slices.Equal(got, want) {
		fx.t.Fatalf("members of %s = %q, want %q", groupID, got, want)
	}
	g, err := fx.s.GetGroup(fx.t.Context(), groupID)
	must(fx.t, err, "get group "+groupID)
	if g.MemberCount != len(want) {
		fx.t.Fatalf("group %s: MemberCount = %d, want %d", groupID, g.MemberCount, len(want))
	}
	return set.Epoch
}

// wantEpoch checks the membership epoch ListMembers reports.
func (fx *fixture) wantEpoch(groupID string, want int64, when string) {
	fx.t.Helper()
	set, err := fx.s.ListMembers(fx.t.Context(), groupID)
	must(fx.t, err, "list members of "+groupID)
	if set.Epoch != want {
		fx.t.Fatalf("%s: epoch of %s = %d, want %d", when, groupID, set.Epoch, want)
	}
}

// wantPeriods checks every period of the user's membership in conv.
func (fx *fixture) wantPeriods(conv, user string, want ...storage.Period) storage.Membership {
	fx.t.Helper()
	m := fx.membership(conv, user)
	if m.ConversationID != conv || m.UserID != user {
		fx.t.Fatalf("membership of %s in %s names %s in %s", user, conv, m.UserID, m.ConversationID)
	}
	if !slices.Equal(m.Periods, want) {
		fx.t.Fatalf("periods of %s in %s = %s, want %s", user, conv, periods(m.Periods), periods(want))
	}
	return m
}

// periods formats periods as (joined, left], "open" for OpenSeq.
func periods(ps []storage.Period) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" ")
		}
		left := fmt.Sprint(p.LeftSeq)
		if p.Active() {
			left = "open"
		}
		fmt.Fprintf(&b, "(%d,%s]", p.JoinedSeq, left)
	}
	return "[" + b.String() + "]"
}

// wantMembersAt checks MembersAt(seq).
func (fx *fixture) wantMembersAt(groupID string, seq int64, want ...string) {
	fx.t.Helper()
	got, err := fx.s.MembersAt(fx.t.Context(), groupID, seq)
	must(fx.t, err, fmt.Sprintf("members of %s at seq %d", groupID, seq))
	if g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)); !slices.Equal(g, w) {
		fx.t.Fatalf("members of %s at seq %d = %q, want %q", groupID, seq, g, w)
	}
}

func testCreateGroup(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol")
	want := storage.Group{ID: "g1", Name: "Friends", OwnerID: "alice", CreatedAt: time.Now()}
	must(t, s.CreateGroup(ctx, want, []string{"alice", "bob"}, 10), "create group")

	got, err := s.GetGroup(ctx, "g1")
	must(t, err, "get group")
	if got.ID != want.ID || got.Name != want.Name || got.OwnerID != want.OwnerID || !sameTime(got.CreatedAt, want.CreatedAt) {
		t.Fatalf("GetGroup = %+v, want %+v", got, want)
	}
	if epoch := fx.wantMembers("g1", "alice", "bob"); epoch != 1 {
		t.Fatalf("epoch of a new group = %d, want 1", epoch)
	}

	conv := storage.GroupConversationID("g1")
	for _, u := range []string{"alice", "bob"} {
		if m := fx.wantPeriods(conv, u, storage.Period{JoinedSeq: 0, LeftSeq: openSeq}); !m.Active() {
			t.Fatalf("membership of %s = %+v, want active", u, m)
		}
	}
	_, err = s.GetMembership(ctx, conv, "carol")
	wantErr(t, err, storage.ErrNotFound, "membership of a user not in the group")
	if seq := fx.latestSeq(conv); seq != 0 {
		t.Fatalf("LatestSeq of a new group = %d, want 0", seq)
	}
	_, err = s.GetGroup(ctx, "g2")
	wantErr(t, err, storage.ErrNotFound, "GetGroup of an unknown group")
}

func testDuplicateGroup(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	fx.group("g1", "alice")
	err := fx.s.CreateGroup(t.Context(), storage.Group{ID: "g1", Name: "again", OwnerID: "bob", CreatedAt: time.Now()},
		[]string{"bob"}, 10)
	wantErr(t, err, storage.ErrAlreadyExists, "create group with a taken id")
	fx.wantMembers("g1", "alice")
	g, err := fx.s.GetGroup(t.Context(), "g1")
	must(t, err, "get group")
	if g.OwnerID != "alice" {
		t.Fatalf("refused CreateGroup changed the owner to %q", g.OwnerID)
	}
}

func testCreateGroupUnknownMember(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	g := storage.Group{ID: "g1", Name: "n", OwnerID: "alice", CreatedAt: time.Now()}
	err := s.CreateGroup(ctx, g, []string{"alice", "ghost", "bob"}, 10)
	wantErr(t, err, storage.ErrNotFound, "create group with an unknown member")

	// Nothing of it was stored...
	_, err = s.GetGroup(ctx, "g1")
	wantErr(t, err, storage.ErrNotFound, "group after a refused CreateGroup")
	_, err = s.GetMembership(ctx, storage.GroupConversationID("g1"), "alice")
	wantErr(t, err, storage.ErrNotFound, "membership after a refused CreateGroup")
	// ...so the same id is free.
	must(t, s.CreateGroup(ctx, g, []string{"alice", "bob"}, 10), "create group after the refusal")
	fx.wantMembers("g1", "alice", "bob")
}

func testCreateGroupTooMany(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("a", "b", "c")
	g := storage.Group{ID: "g1", Name: "n", OwnerID: "a", CreatedAt: time.Now()}
	wantErr(t, s.CreateGroup(ctx, g, []string{"a", "b", "c"}, 2), storage.ErrGroupFull, "create group over the limit")
	_, err := s.GetGroup(ctx, "g1")
	wantErr(t, err, storage.ErrNotFound, "group after ErrGroupFull")
	must(t, s.CreateGroup(ctx, g, []string{"a", "b", "c"}, 3), "create group at the limit")
	fx.wantMembers("g1", "a", "b", "c")
}

func testAddMembers(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol", "dave")
	fx.group("g1", "alice", "bob")
	conv := storage.GroupConversationID("g1")
	fx.send(conv, "alice", 3)

	added, err := s.AddMembers(ctx, "g1", []string{"bob", "carol", "dave"}, 10)
	must(t, err, "add members")
	slices.Sort(added)
	if !slices.Equal(added, []string{"carol", "dave"}) {
		t.Fatalf("AddMembers returned %q, want only the new members [carol dave]", added)
	}
	if epoch := fx.wantMembers("g1", "alice", "bob", "carol", "dave"); epoch != 2 {
		t.Fatalf("epoch after adding members = %d, want 2", epoch)
	}
	for _, u := range []string{"carol", "dave"} {
		// Joined at the latest seq, 3.
		fx.wantPeriods(conv, u, storage.Period{JoinedSeq: 3, LeftSeq: openSeq})
	}
	// Members already there keep where they joined.
	fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: openSeq})

	fx.send(conv, "carol", 2)
	added, err = s.AddMembers(ctx, "g1", []string{"alice", "carol"}, 10)
	must(t, err, "add members that are all active")
	if len(added) != 0 {
		t.Fatalf("AddMembers of active members returned %q, want none", added)
	}
	fx.wantPeriods(conv, "carol", storage.Period{JoinedSeq: 3, LeftSeq: openSeq})
	fx.wantEpoch("g1", 2, "after adding only active members")
}

func testAddMembersErrors(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	fx.group("g1", "alice")

	_, err := s.AddMembers(ctx, "nope", []string{"bob"}, 10)
	wantErr(t, err, storage.ErrNotFound, "add members to an unknown group")

	_, err = s.AddMembers(ctx, "g1", []string{"bob", "ghost"}, 10)
	wantErr(t, err, storage.ErrNotFound, "add an unknown user")
	fx.wantMembers("g1", "alice") // bob was not added either
}

func testGroupFull(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("a", "b", "c", "d", "e")
	fx.group("g1", "a", "b")
	conv := storage.GroupConversationID("g1")

	_, err := s.AddMembers(ctx, "g1", []string{"c", "d"}, 3)
	wantErr(t, err, storage.ErrGroupFull, "add members over the limit")
	fx.wantMembers("g1", "a", "b")
	_, err = s.GetMembership(ctx, conv, "c")
	wantErr(t, err, storage.ErrNotFound, "membership after ErrGroupFull")

	// Members already in the group do not count as additions.
	added, err := s.AddMembers(ctx, "g1", []string{"a", "b", "c"}, 3)
	must(t, err, "add members up to the limit")
	if !slices.Equal(added, []string{"c"}) {
		t.Fatalf("AddMembers returned %q, want [c]", added)
	}
	fx.wantMembers("g1", "a", "b", "c")

	// A member who left frees a place.
	must(t, s.LeaveGroup(ctx, "g1", "a"), "leave")
	_, err = s.AddMembers(ctx, "g1", []string{"d", "e"}, 3)
	wantErr(t, err, storage.ErrGroupFull, "add two members into one free place")
	fx.wantMembers("g1", "b", "c")
	added, err = s.AddMembers(ctx, "g1", []string{"d"}, 3)
	must(t, err, "add a member into the free place")
	if !slices.Equal(added, []string{"d"}) {
		t.Fatalf("AddMembers returned %q, want [d]", added)
	}
	fx.wantMembers("g1", "b", "c", "d")
}

func testLeaveAndRejoin(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	fx.group("g1", "alice", "bob")
	conv := storage.GroupConversationID("g1")
	fx.send(conv, "alice", 2)

	must(t, s.LeaveGroup(ctx, "g1", "bob"), "leave")
	if m := fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 2}); m.Active() {
		t.Fatalf("membership after leaving = %+v, want inactive", m)
	}
	fx.wantMembers("g1", "alice")
	wantErr(t, s.LeaveGroup(ctx, "g1", "bob"), storage.ErrNotFound, "leave twice")

	fx.send(conv, "alice", 3)
	// Later messages do not move where bob left.
	fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 2})

	added, err := s.AddMembers(ctx, "g1", []string{"bob"}, 10)
	must(t, err, "rejoin")
	if !slices.Equal(added, []string{"bob"}) {
		t.Fatalf("AddMembers of a member who left returned %q, want [bob]", added)
	}
	// A new period from the latest seq, 5; the first one stays.
	if m := fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 2}, storage.Period{JoinedSeq: 5, LeftSeq: openSeq}); !m.Active() {
		t.Fatalf("membership after rejoining = %+v, want active", m)
	}
	fx.wantMembers("g1", "alice", "bob")

	// Everyone can leave; the group stays, empty.
	must(t, s.LeaveGroup(ctx, "g1", "alice"), "alice leaves")
	must(t, s.LeaveGroup(ctx, "g1", "bob"), "bob leaves")
	fx.wantMembers("g1")
}

func testLeaveErrors(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	fx.group("g1", "alice")
	wantErr(t, s.LeaveGroup(ctx, "g1", "bob"), storage.ErrNotFound, "leave by a non-member")
	wantErr(t, s.LeaveGroup(ctx, "g1", "ghost"), storage.ErrNotFound, "leave by an unknown user")
	wantErr(t, s.LeaveGroup(ctx, "nope", "alice"), storage.ErrNotFound, "leave an unknown group")
	_, err := s.ListMembers(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound, "ListMembers of an unknown group")
	fx.wantMembers("g1", "alice")
}

func testMembershipNotFound(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	_, err := fx.s.GetMembership(t.Context(), storage.C2CConversationID("alice", "bob"), "alice")
	wantErr(t, err, storage.ErrNotFound, "c2c membership before any message")
	_, err = fx.s.GetMembership(t.Context(), storage.GroupConversationID("nope"), "alice")
	wantErr(t, err, storage.ErrNotFound, "membership of an unknown group")
}

// testLeaveBeforeFirstMessage: a user who leaves before the group's first
// message has the period (0,0], which reads nothing; it must never be
// taken for "never left" (a left_seq of 0 once meant "no upper bound").
func testLeaveBeforeFirstMessage(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	fx.group("g1", "alice", "bob")
	conv := storage.GroupConversationID("g1")
	must(t, s.LeaveGroup(ctx, "g1", "bob"), "bob leaves before any message")
	fx.send(conv, "alice", 3)

	m := fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 0})
	if m.Active() || m.Contains(1) {
		t.Fatalf("membership %+v: active %v, contains seq 1 %v; want neither", m, m.Active(), m.Contains(1))
	}
	// What a sync of bob's period reads: nothing.
	msgs, err := s.ListMessages(ctx, conv, m.Periods[0].JoinedSeq, m.Periods[0].LeftSeq, 100)
	must(t, err, "list messages of the period (0,0]")
	if len(msgs) != 0 {
		t.Fatalf("ListMessages(after 0, upto 0) returned seqs %v, want none", seqsOf(msgs))
	}
	all, _ := fx.conversations("bob", "phone", false)
	cs, ok := all[conv]
	if !ok {
		t.Fatalf("%s is not among bob's conversations: he was a member", conv)
	}
	if cs.LatestSeq != 0 || cs.JoinedSeq != 0 {
		t.Fatalf("bob's state of %s: latest %d, joined %d; want 0, 0", conv, cs.LatestSeq, cs.JoinedSeq)
	}
	if behind, _ := fx.conversations("bob", "phone", true); len(behind) != 0 {
		t.Fatalf("bob is behind in %v, want nothing to catch up on", behind)
	}
	fx.wantMembersAt("g1", 1, "alice")
	fx.wantMembersAt("g1", 3, "alice")

	// Added again, at 3: readable from 4 on, and still nothing before.
	_, err = s.AddMembers(ctx, "g1", []string{"bob"}, 10)
	must(t, err, "bob is added again")
	fx.send(conv, "alice", 1)
	m = fx.membership(conv, "bob")
	if !m.Active() || m.Periods[len(m.Periods)-1] != (storage.Period{JoinedSeq: 3, LeftSeq: openSeq}) {
		t.Fatalf("membership after rejoining = %s, want it to end with (3,open]", periods(m.Periods))
	}
	for seq := int64(1); seq <= 4; seq++ {
		if m.Contains(seq) != (seq == 4) {
			t.Fatalf("membership %s: Contains(%d) = %v", periods(m.Periods), seq, m.Contains(seq))
		}
	}
	fx.wantMembersAt("g1", 2, "alice")
	fx.wantMembersAt("g1", 4, "alice", "bob")
}

// testRejoinKeepsEarlierPeriods: every stay is a period of its own, and
// the earlier ones stay readable (a rejoin once overwrote them).
func testRejoinKeepsEarlierPeriods(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice", "bob")
	conv := storage.GroupConversationID("g1")
	add := func(users ...string) {
		t.Helper()
		_, err := s.AddMembers(ctx, "g1", users, 10)
		must(t, err, fmt.Sprintf("add %q", users))
	}
	leave := func(user string) {
		t.Helper()
		must(t, s.LeaveGroup(ctx, "g1", user), user+" leaves")
	}

	fx.send(conv, "alice", 2)
	add("carol") // at 2
	fx.send(conv, "alice", 3)
	leave("bob") // at 5
	leave("carol")
	fx.send(conv, "alice", 4)
	add("bob", "carol") // at 9
	fx.send(conv, "alice", 3)

	fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 5}, storage.Period{JoinedSeq: 9, LeftSeq: openSeq})
	fx.wantPeriods(conv, "carol", storage.Period{JoinedSeq: 2, LeftSeq: 5}, storage.Period{JoinedSeq: 9, LeftSeq: openSeq})
	fx.wantPeriods(conv, "alice", storage.Period{JoinedSeq: 0, LeftSeq: openSeq})
	for seq, want := range map[int64][]string{
		1:  {"alice", "bob"},
		2:  {"alice", "bob"}, // carol joined at 2: from 3 on
		3:  {"alice", "bob", "carol"},
		5:  {"alice", "bob", "carol"}, // they left at 5: 5 is theirs
		6:  {"alice"},
		7:  {"alice"},
		9:  {"alice"},
		10: {"alice", "bob", "carol"},
		11: {"alice", "bob", "carol"},
		12: {"alice", "bob", "carol"},
	} {
		fx.wantMembersAt("g1", seq, want...)
	}
	// The state starts at the first period; the latest seq is the
	// conversation's while a member.
	got, _ := fx.conversations("carol", "phone", false)
	if cs := got[conv]; cs.JoinedSeq != 2 || cs.LatestSeq != 12 {
		t.Fatalf("carol's state: joined %d, latest %d; want 2 (the first period's), 12", cs.JoinedSeq, cs.LatestSeq)
	}
	got, _ = fx.conversations("bob", "phone", false)
	if cs := got[conv]; cs.JoinedSeq != 0 || cs.LatestSeq != 12 {
		t.Fatalf("bob's state: joined %d, latest %d; want 0 (the first period's), 12", cs.JoinedSeq, cs.LatestSeq)
	}

	// A third stay, and a third leave.
	leave("carol") // at 12
	fx.send(conv, "alice", 2)
	add("carol") // at 14
	fx.send(conv, "alice", 1)
	leave("carol") // at 15
	fx.send(conv, "alice", 2)
	m := fx.wantPeriods(conv, "carol",
		storage.Period{JoinedSeq: 2, LeftSeq: 5}, storage.Period{JoinedSeq: 9, LeftSeq: 12}, storage.Period{JoinedSeq: 14, LeftSeq: 15})
	if m.Active() {
		t.Fatal("carol is active after leaving a third time")
	}
	fx.wantMembersAt("g1", 11, "alice", "bob", "carol")
	fx.wantMembersAt("g1", 13, "alice", "bob")
	fx.wantMembersAt("g1", 15, "alice", "bob", "carol")
	fx.wantMembersAt("g1", 16, "alice", "bob")
	got, _ = fx.conversations("carol", "phone", false)
	if cs := got[conv]; cs.JoinedSeq != 2 || cs.LatestSeq != 15 {
		t.Fatalf("carol's state after leaving: joined %d, latest %d; want 2, 15 (where she left)", cs.JoinedSeq, cs.LatestSeq)
	}
	fx.wantMembers("g1", "alice", "bob")
}

// testMembershipEpoch: every membership change increments the group's
// epoch, and each new message reports the epoch it was stored under.
func testMembershipEpoch(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice", "bob")
	fx.group("g2", "alice")
	g1, g2, ab := storage.GroupConversationID("g1"), storage.GroupConversationID("g2"), storage.C2CConversationID("alice", "bob")
	wantEpochs := func(res []storage.AppendResult, want ...int64) {
		t.Helper()
		for i, r := range res {
			if r.MemberEpoch != want[i] {
				t.Fatalf("message %d (%s seq %d): MemberEpoch %d, want %d", i, r.Message.ConversationID, r.Message.Seq, r.MemberEpoch, want[i])
			}
		}
	}
	fx.wantEpoch("g1", 1, "after CreateGroup")
	wantEpochs(fx.append(fx.msg(g1, "alice", "a"), fx.msg(ab, "bob", "b"), fx.msg(g2, "alice", "c")), 1, 0, 1)

	added, err := s.AddMembers(ctx, "g1", []string{"carol"}, 10)
	must(t, err, "add carol")
	if !slices.Equal(added, []string{"carol"}) {
		t.Fatalf("AddMembers returned %q, want [carol]", added)
	}
	fx.wantEpoch("g1", 2, "after adding carol")
	fx.wantEpoch("g2", 1, "another group, after adding carol to g1")
	added, err = s.AddMembers(ctx, "g1", []string{"alice", "carol"}, 10)
	must(t, err, "add active members")
	if len(added) != 0 {
		t.Fatalf("AddMembers of active members returned %q", added)
	}
	fx.wantEpoch("g1", 2, "after adding only active members")
	wantEpochs(fx.append(fx.msg(g1, "carol", "d")), 2)

	must(t, s.LeaveGroup(ctx, "g1", "bob"), "bob leaves")
	fx.wantEpoch("g1", 3, "after bob left")
	wantEpochs(fx.append(fx.msg(g1, "alice", "e"), fx.msg(ab, "alice", "f")), 3, 0)

	_, err = s.AddMembers(ctx, "g1", []string{"bob"}, 10)
	must(t, err, "bob is added again")
	if epoch := fx.wantMembers("g1", "alice", "bob", "carol"); epoch != 4 {
		t.Fatalf("epoch after bob rejoined = %d, want 4", epoch)
	}
	wantEpochs(fx.append(fx.msg(g1, "bob", "g"), fx.msg(ab, "bob", "h"), fx.msg(g1, "carol", "i"), fx.msg(g2, "alice", "j")), 4, 0, 4, 1)
}

// testFailedChangesKeepEpoch: a refused AddMembers or LeaveGroup changes
// nothing, the epoch and the periods included.
func testFailedChangesKeepEpoch(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("a", "b", "c", "d")
	fx.group("g1", "a", "b")
	conv := storage.GroupConversationID("g1")

	_, err := s.AddMembers(ctx, "g1", []string{"c", "d"}, 3)
	wantErr(t, err, storage.ErrGroupFull, "add members over the limit")
	fx.wantEpoch("g1", 1, "after ErrGroupFull")
	_, err = s.AddMembers(ctx, "g1", []string{"c", "ghost"}, 10)
	wantErr(t, err, storage.ErrNotFound, "add an unknown user")
	fx.wantEpoch("g1", 1, "after adding an unknown user")
	_, err = s.GetMembership(ctx, conv, "c")
	wantErr(t, err, storage.ErrNotFound, "membership after the refused additions")
	wantErr(t, s.LeaveGroup(ctx, "g1", "c"), storage.ErrNotFound, "leave by a non-member")
	fx.wantEpoch("g1", 1, "after a non-member's leave")

	fx.send(conv, "a", 1)
	must(t, s.LeaveGroup(ctx, "g1", "b"), "b leaves") // at 1
	fx.wantEpoch("g1", 2, "after b left")
	wantErr(t, s.LeaveGroup(ctx, "g1", "b"), storage.ErrNotFound, "leave twice")
	fx.wantEpoch("g1", 2, "after leaving twice")

	// A refused rejoin keeps the ended period as it was.
	_, err = s.AddMembers(ctx, "g1", []string{"b", "c"}, 2)
	wantErr(t, err, storage.ErrGroupFull, "rejoin over the limit")
	fx.wantEpoch("g1", 2, "after a refused rejoin")
	fx.wantPeriods(conv, "b", storage.Period{JoinedSeq: 0, LeftSeq: 1})
	fx.wantMembers("g1", "a")

	// And a rejoin that goes through starts where the last period ended.
	_, err = s.AddMembers(ctx, "g1", []string{"b"}, 2)
	must(t, err, "rejoin")
	fx.wantPeriods(conv, "b", storage.Period{JoinedSeq: 0, LeftSeq: 1}, storage.Period{JoinedSeq: 1, LeftSeq: openSeq})
	fx.wantEpoch("g1", 3, "after the rejoin")
}

// testEmptyGroup: a group whose members all left still exists.
func testEmptyGroup(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	fx.group("g1", "alice", "bob")
	conv := storage.GroupConversationID("g1")
	fx.send(conv, "alice", 2)
	must(t, s.LeaveGroup(ctx, "g1", "alice"), "alice leaves")
	must(t, s.LeaveGroup(ctx, "g1", "bob"), "bob leaves")

	set, err := s.ListMembers(ctx, "g1")
	must(t, err, "ListMembers of a group without active members")
	if len(set.Members) != 0 || set.Epoch != 3 {
		t.Fatalf("ListMembers = %+v, want no members at epoch 3", set)
	}
	fx.wantMembers("g1")
	fx.wantMembersAt("g1", 2, "alice", "bob")
	fx.wantMembersAt("g1", 3)
	fx.wantMembersAt("g1", 0)

	_, err = s.ListMembers(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound, "ListMembers of an unknown group")
	_, err = s.MembersAt(ctx, "nope", 1)
	wantErr(t, err, storage.ErrNotFound, "MembersAt of an unknown group")
}

// testEpochUnderConcurrency sends to a group while its members change and
// while the member set is read: every message's epoch must name exactly
// the users MembersAt says may read it, which must be the members
// ListMembers reported with that epoch.
func testEpochUnderConcurrency(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	others := []string{"u0", "u1", "u2", "u3"}
	fx.users(append([]string{"alice"}, others...)...)
	fx.group("g", "alice")
	conv := storage.GroupConversationID("g")
	const changes, sends = 24, 60

	var (
		wg      sync.WaitGroup
		sent    = make([]storage.AppendResult, 0, sends)
		mu      sync.Mutex
		sets    = map[int64][]string{}
		done    = make(chan struct{})
		changed = make(chan struct{})
	)
	msgs := make([]storage.NewMessage, sends)
	for i := range msgs {
		msgs[i] = fx.msg(conv, "alice", fmt.Sprint(i))
	}
	wg.Go(func() { // the sender
		for _, m := range msgs {
			res, err := s.AppendMessages(ctx, []storage.NewMessage{m})
			if err != nil {
				t.Errorf("send: %v", err)
				return
			}
			sent = append(sent, res[0])
		}
	})
	wg.Go(func() { // membership changes
		defer close(changed)
		active := map[string]bool{}
		for i := range changes {
			u := others[i%len(others)]
			var err error
			if active[u] {
				err = s.LeaveGroup(ctx, "g", u)
			} else {
				_, err = s.AddMembers(ctx, "g", []string{u}, 100)
			}
			if err != nil {
				t.Errorf("change %d: %v", i, err)
				return
			}
			active[u] = !active[u]
		}
	})
	wg.Go(func() { // readers of the member set
		for {
			set, err := s.ListMembers(ctx, "g")
			if err != nil {
				t.Errorf("list members: %v", err)
				return
			}
			members := slices.Sorted(slices.Values(set.Members))
			mu.Lock()
			if seen, ok := sets[set.Epoch]; ok && !slices.Equal(seen, members) {
				t.Errorf("epoch %d: ListMembers returned %q, and %q before", set.Epoch, members, seen)
			}
			sets[set.Epoch] = members
			mu.Unlock()
			select {
			case <-done:
				return
			default:
			}
		}
	})
	go func() { <-changed; close(done) }()
	wg.Wait()
	if t.Failed() {
		return
	}

	fx.wantEpoch("g", 1+changes, "after every change")
	var prev int64
	compared := 0
	for _, r := range sent {
		if r.MemberEpoch < prev {
			t.Fatalf("seq %d: epoch %d after epoch %d: epochs went back", r.Message.Seq, r.MemberEpoch, prev)
		}
		prev = r.MemberEpoch
		at, err := s.MembersAt(ctx, "g", r.Message.Seq)
		must(t, err, "members at a sent message")
		slices.Sort(at)
		want, ok := sets[r.MemberEpoch]
		if !ok {
			sets[r.MemberEpoch] = at // later messages of this epoch must agree
			continue
		}
		compared++
		if !slices.Equal(at, want) {
			t.Fatalf("seq %d stored under epoch %d: MembersAt = %q, but the member set of that epoch is %q",
				r.Message.Seq, r.MemberEpoch, at, want)
		}
	}
	t.Logf("%d messages over %d epochs; %d compared with another message's or ListMembers' set", len(sent), prev, compared)
}
