package storagetest

import (
	"slices"
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
}

// wantMembers checks ListMembers and GetGroup's MemberCount.
func (fx *fixture) wantMembers(groupID string, want ...string) {
	fx.t.Helper()
	got, err := fx.s.ListMembers(fx.t.Context(), groupID)
	must(fx.t, err, "list members of "+groupID)
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		fx.t.Fatalf("members of %s = %q, want %q", groupID, got, want)
	}
	g, err := fx.s.GetGroup(fx.t.Context(), groupID)
	must(fx.t, err, "get group "+groupID)
	if g.MemberCount != len(want) {
		fx.t.Fatalf("group %s: MemberCount = %d, want %d", groupID, g.MemberCount, len(want))
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
	fx.wantMembers("g1", "alice", "bob")

	conv := storage.GroupConversationID("g1")
	for _, u := range []string{"alice", "bob"} {
		m := fx.membership(conv, u)
		if m.ConversationID != conv || m.UserID != u || !m.Active || m.JoinedSeq != 0 {
			t.Fatalf("membership of %s = %+v, want active, joined at 0", u, m)
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
	fx.wantMembers("g1", "alice", "bob", "carol", "dave")
	for _, u := range []string{"carol", "dave"} {
		if m := fx.membership(conv, u); !m.Active || m.JoinedSeq != 3 {
			t.Fatalf("membership of %s = %+v, want active, joined at the latest seq 3", u, m)
		}
	}
	// Members already there keep where they joined.
	if m := fx.membership(conv, "bob"); !m.Active || m.JoinedSeq != 0 {
		t.Fatalf("membership of bob = %+v, want unchanged (active, joined at 0)", m)
	}

	fx.send(conv, "carol", 2)
	added, err = s.AddMembers(ctx, "g1", []string{"alice", "carol"}, 10)
	must(t, err, "add members that are all active")
	if len(added) != 0 {
		t.Fatalf("AddMembers of active members returned %q, want none", added)
	}
	if m := fx.membership(conv, "carol"); m.JoinedSeq != 3 {
		t.Fatalf("adding an active member again moved its JoinedSeq to %d, want 3", m.JoinedSeq)
	}
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
	if m := fx.membership(conv, "bob"); m.Active || m.LeftSeq != 2 || m.JoinedSeq != 0 {
		t.Fatalf("membership after leaving = %+v, want inactive, joined 0, left at 2", m)
	}
	fx.wantMembers("g1", "alice")
	wantErr(t, s.LeaveGroup(ctx, "g1", "bob"), storage.ErrNotFound, "leave twice")

	fx.send(conv, "alice", 3)
	if m := fx.membership(conv, "bob"); m.LeftSeq != 2 {
		t.Fatalf("LeftSeq moved to %d after later messages, want 2", m.LeftSeq)
	}

	added, err := s.AddMembers(ctx, "g1", []string{"bob"}, 10)
	must(t, err, "rejoin")
	if !slices.Equal(added, []string{"bob"}) {
		t.Fatalf("AddMembers of a member who left returned %q, want [bob]", added)
	}
	if m := fx.membership(conv, "bob"); !m.Active || m.JoinedSeq != 5 {
		t.Fatalf("membership after rejoining = %+v, want active, joined at 5", m)
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
