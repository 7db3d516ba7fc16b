package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var groupRoleTests = []test{
	{"CreateWithSystemMessage", testChangeGroupCreate},
	{"AddRemoveAndSystemMessageSeqs", testChangeGroupMembers},
	{"RolesAndTransfer", testChangeGroupRoles},
	{"InfoUpdate", testChangeGroupInfo},
	{"DecideRefusalChangesNothing", testChangeGroupRefused},
	{"ChangeErrors", testChangeGroupErrors},
	{"Disband", testChangeGroupDisband},
	{"MemberAndGroupPaging", testGroupPaging},
	{"DecisionsSeeConcurrentChanges", testChangeGroupConcurrent},
	{"AllMembers", testChangeGroupAllMembers},
	{"EventsInTheSameTransaction", testChangeGroupEvents},
}

// sysMsg is a system message for ChangeGroup (the conversation id is set
// by the store).
func (fx *fixture) sysMsg(text string) *storage.NewMessage {
	m := fx.msg("grp:x", "", text)
	m.SenderDeviceID = ""
	m.ClientMsgID = fmt.Sprintf("sys-%d", m.MsgID)
	return &m
}

// change runs ChangeGroup and fails the test on error.
func (fx *fixture) change(gt storage.GroupTx) storage.GroupTxResult {
	fx.t.Helper()
	res, err := fx.s.ChangeGroup(fx.t.Context(), gt)
	must(fx.t, err, "change group "+gt.GroupID)
	return res
}

// wantRoles checks ListGroupMembers (one page).
func (fx *fixture) wantRoles(groupID string, want map[string]storage.GroupRole) {
	fx.t.Helper()
	got, err := fx.s.ListGroupMembers(fx.t.Context(), groupID, "", 1000)
	must(fx.t, err, "list group members")
	have := map[string]storage.GroupRole{}
	for i, m := range got {
		if i > 0 && got[i-1].UserID >= m.UserID {
			fx.t.Fatalf("members not ascending: %v", got)
		}
		have[m.UserID] = m.Role
	}
	if fmt.Sprint(have) != fmt.Sprint(want) {
		fx.t.Fatalf("roles of %s = %v, want %v", groupID, have, want)
	}
}

func testChangeGroupCreate(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	g := storage.Group{ID: "g1", Name: "team", OwnerID: "alice", CreatedAt: time.Now(),
		Description: "about", AvatarURL: "https://x/a.png", JoinPolicy: storage.JoinOpen, AddPolicy: storage.AddByAdmins}
	var seen storage.GroupState
	res := fx.change(storage.GroupTx{GroupID: "g1", Create: &g, Members: []string{"alice", "bob", "alice"}, Users: []string{"alice", "bob"}, MaxMembers: 10,
		Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
			seen = st
			return storage.GroupEdit{Message: fx.sysMsg("created")}, nil
		}})
	if seen.Roles["alice"] != storage.RoleOwner || seen.Roles["bob"] != storage.RoleMember || seen.Group.MemberCount != 2 {
		t.Fatalf("Decide saw %+v", seen)
	}
	if !res.Changed || res.Message.Message.Seq != 1 || res.Message.Message.SenderID != "" || res.Message.MemberEpoch != 1 {
		t.Fatalf("result %+v, want the system message at seq 1, epoch 1", res)
	}
	got, err := fx.s.GetGroup(t.Context(), "g1")
	must(t, err, "get group")
	if got.Name != "team" || got.Description != "about" || got.AvatarURL != "https://x/a.png" ||
		got.JoinPolicy != storage.JoinOpen || got.AddPolicy != storage.AddByAdmins || got.Disbanded || got.MemberCount != 2 {
		t.Fatalf("group = %+v", got)
	}
	if got.Name != res.Group.Name || res.Group.MemberCount != 2 {
		t.Fatalf("result group %+v", res.Group)
	}
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleOwner, "bob": storage.RoleMember})
	msgs := fx.wantSeqs("grp:g1", 1)
	if string(msgs[0].Content) != "created" || msgs[0].SenderID != "" {
		t.Fatalf("stored system message %+v", msgs[0])
	}
	if m := fx.membership("grp:g1", "bob"); !m.Contains(1) || !m.Active() {
		t.Fatalf("bob's membership %+v does not read the creation", m)
	}
	// A failed creation (unknown member) stores nothing, not even the group.
	g2 := g
	g2.ID = "g2"
	_, err = fx.s.ChangeGroup(t.Context(), storage.GroupTx{GroupID: "g2", Create: &g2, Members: []string{"alice", "ghost"}, MaxMembers: 10,
		Decide: func(storage.GroupState) (storage.GroupEdit, error) {
			return storage.GroupEdit{Message: fx.sysMsg("created")}, nil
		}})
	wantErr(t, err, storage.ErrNotFound, "create with an unknown member")
	_, err = fx.s.GetGroup(t.Context(), "g2")
	wantErr(t, err, storage.ErrNotFound, "group of a failed creation")
	_, err = fx.s.ChangeGroup(t.Context(), storage.GroupTx{GroupID: "g1", Create: &g, Members: []string{"alice"}, MaxMembers: 10,
		Decide: func(storage.GroupState) (storage.GroupEdit, error) {
			return storage.GroupEdit{Message: fx.sysMsg("created")}, nil
		}})
	wantErr(t, err, storage.ErrAlreadyExists, "create an existing group")
}

// add returns a GroupTx that adds users to group (no rules).
func (fx *fixture) addTx(group string, users ...string) storage.GroupTx {
	return storage.GroupTx{GroupID: group, MaxMembers: 10, Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Add: users, Message: fx.sysMsg("added")}, nil
	}}
}

func (fx *fixture) removeTx(group string, users ...string) storage.GroupTx {
	return storage.GroupTx{GroupID: group, Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Remove: users, Message: fx.sysMsg("removed")}, nil
	}}
}

func testChangeGroupMembers(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice", "bob")
	fx.send("grp:g1", "alice", 2) // seqs 1, 2
	epoch := fx.wantEpoch
	epoch("g1", 1, "start")

	// Added at seq 3: carol joins at 2, so the message recording it is
	// the first she reads; it is stored under the new epoch.
	res := fx.change(fx.addTx("g1", "carol"))
	if res.Message.Message.Seq != 3 || res.Message.MemberEpoch != 2 {
		t.Fatalf("add: message seq %d epoch %d, want 3 and 2", res.Message.Message.Seq, res.Message.MemberEpoch)
	}
	if m := fx.membership("grp:g1", "carol"); m.Periods[0].JoinedSeq != 2 || !m.Contains(3) || m.Contains(2) {
		t.Fatalf("carol's membership %+v", m)
	}
	fx.wantMembers("g1", "alice", "bob", "carol")
	at, err := fx.s.MembersAt(t.Context(), "g1", 3)
	must(t, err, "members at 3")
	if slices.Sort(at); !slices.Equal(at, []string{"alice", "bob", "carol"}) {
		t.Fatalf("members at the add message: %v", at)
	}

	// Removed at seq 4: bob reads the message that removes him, and
	// nothing after it; it is stored under the epoch that still has him.
	res = fx.change(fx.removeTx("g1", "bob"))
	if res.Message.Message.Seq != 4 || res.Message.MemberEpoch != 2 {
		t.Fatalf("remove: message seq %d epoch %d, want 4 and 2", res.Message.Message.Seq, res.Message.MemberEpoch)
	}
	epoch("g1", 3, "after the removal")
	if m := fx.membership("grp:g1", "bob"); m.Active() || !m.Contains(4) || m.Contains(5) {
		t.Fatalf("bob's membership %+v", m)
	}
	fx.wantMembers("g1", "alice", "carol")
	at, err = fx.s.MembersAt(t.Context(), "g1", 4)
	must(t, err, "members at 4")
	if slices.Sort(at); !slices.Equal(at, []string{"alice", "bob", "carol"}) {
		t.Fatalf("members at the removal message: %v", at)
	}
	if seq := fx.send("grp:g1", "alice", 1); seq != 5 {
		t.Fatalf("next message at %d, want 5", seq)
	}
	fx.wantSeqs("grp:g1", 5)

	// Added again: a new period; the old one stays readable.
	fx.change(fx.addTx("g1", "bob")) // seq 6, joined at 5
	if m := fx.membership("grp:g1", "bob"); len(m.Periods) != 2 || !m.Contains(4) || m.Contains(5) || !m.Contains(6) {
		t.Fatalf("bob's membership after rejoining %+v", m)
	}
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleOwner, "bob": storage.RoleMember, "carol": storage.RoleMember})
}

func testChangeGroupRoles(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice", "bob", "carol")
	set := func(roles map[string]storage.GroupRole) storage.GroupTx {
		return storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
			return storage.GroupEdit{Roles: roles, Message: fx.sysMsg("roles")}, nil
		}}
	}
	fx.change(set(map[string]storage.GroupRole{"bob": storage.RoleAdmin}))
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleOwner, "bob": storage.RoleAdmin, "carol": storage.RoleMember})
	// Roles change no membership: the epoch stays.
	fx.wantEpoch("g1", 1, "after a role change")

	// Transfer: carol owns, alice is an admin.
	res := fx.change(set(map[string]storage.GroupRole{"carol": storage.RoleOwner, "alice": storage.RoleAdmin}))
	if res.Group.OwnerID != "carol" {
		t.Fatalf("owner after the transfer: %q", res.Group.OwnerID)
	}
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleAdmin, "bob": storage.RoleAdmin, "carol": storage.RoleOwner})
	var seen storage.GroupState
	fx.change(storage.GroupTx{GroupID: "g1", Users: []string{"alice", "carol", "ghost"}, Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
		seen = st
		return storage.GroupEdit{}, nil
	}})
	if len(seen.Roles) != 2 || seen.Roles["alice"] != storage.RoleAdmin || seen.Roles["carol"] != storage.RoleOwner {
		t.Fatalf("Decide saw roles %v", seen.Roles)
	}

	// An admin who leaves and comes back is a member again.
	fx.change(fx.removeTx("g1", "bob"))
	fx.change(fx.addTx("g1", "bob"))
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleAdmin, "bob": storage.RoleMember, "carol": storage.RoleOwner})
	// LeaveGroup resets the role too.
	fx.change(set(map[string]storage.GroupRole{"bob": storage.RoleAdmin}))
	must(t, fx.s.LeaveGroup(t.Context(), "g1", "bob"), "bob leaves")
	fx.change(fx.addTx("g1", "bob"))
	fx.wantRoles("g1", map[string]storage.GroupRole{"alice": storage.RoleAdmin, "bob": storage.RoleMember, "carol": storage.RoleOwner})

	// A role for a non-member fails the whole change.
	_, err := fx.s.ChangeGroup(t.Context(), set(map[string]storage.GroupRole{"ghost": storage.RoleAdmin}))
	wantErr(t, err, storage.ErrNotFound, "role for a non-member")
}

func testChangeGroupInfo(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice")
	fx.group("g1", "alice")
	info := storage.Group{Name: "new", Description: "d", AvatarURL: "https://a/b", JoinPolicy: storage.JoinOpen, AddPolicy: storage.AddByAdmins}
	res := fx.change(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Info: &info, Message: fx.sysMsg("info")}, nil
	}})
	g, err := fx.s.GetGroup(t.Context(), "g1")
	must(t, err, "get group")
	if g.Name != "new" || g.Description != "d" || g.AvatarURL != "https://a/b" || g.JoinPolicy != storage.JoinOpen || g.AddPolicy != storage.AddByAdmins || g.OwnerID != "alice" {
		t.Fatalf("group after the update: %+v", g)
	}
	if res.Group.Name != "new" {
		t.Fatalf("result group %+v", res.Group)
	}
	fx.wantEpoch("g1", 1, "after an info change")
}

func testChangeGroupRefused(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	fx.group("g1", "alice")
	refused := errors.New("refused")
	_, err := fx.s.ChangeGroup(t.Context(), storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{}, refused
	}})
	wantErr(t, err, refused, "Decide's refusal")
	// No message: nothing is written.
	res := fx.change(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Add: []string{"bob"}}, nil
	}})
	if res.Changed {
		t.Fatal("an edit without a message reported a change")
	}
	fx.wantMembers("g1", "alice")
	if l := fx.latestSeq("grp:g1"); l != 0 {
		t.Fatalf("latest seq %d after refusals, want 0", l)
	}
	fx.wantEpoch("g1", 1, "after refusals")
}

func testChangeGroupErrors(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice")
	_, err := fx.s.ChangeGroup(t.Context(), fx.addTx("nope", "bob"))
	wantErr(t, err, storage.ErrNotFound, "change an unknown group")
	_, err = fx.s.ChangeGroup(t.Context(), fx.addTx("g1", "bob", "ghost"))
	wantErr(t, err, storage.ErrNotFound, "add an unknown user")
	gt := fx.addTx("g1", "bob", "carol")
	gt.MaxMembers = 2
	_, err = fx.s.ChangeGroup(t.Context(), gt)
	wantErr(t, err, storage.ErrGroupFull, "add past the limit")
	_, err = fx.s.ChangeGroup(t.Context(), fx.removeTx("g1", "bob"))
	wantErr(t, err, storage.ErrNotFound, "remove a non-member")
	fx.wantMembers("g1", "alice")
	if l := fx.latestSeq("grp:g1"); l != 0 {
		t.Fatalf("latest seq %d after failed changes, want 0", l)
	}
	fx.wantEpoch("g1", 1, "after failed changes")
}

func testChangeGroupDisband(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	fx.group("g1", "alice", "bob", "carol")
	fx.send("grp:g1", "bob", 1)
	must(t, fx.s.LeaveGroup(t.Context(), "g1", "carol"), "carol leaves") // at 1
	res := fx.change(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Disband: true, Message: fx.sysMsg("disbanded")}, nil
	}})
	if res.Message.Message.Seq != 2 || !res.Group.Disbanded || res.Group.MemberCount != 0 {
		t.Fatalf("disband result %+v", res)
	}
	fx.wantMembers("g1")
	for _, u := range []string{"alice", "bob"} {
		if m := fx.membership("grp:g1", u); m.Active() || !m.Contains(1) || !m.Contains(2) {
			t.Fatalf("%s's membership after the disbanding: %+v", u, m)
		}
	}
	if m := fx.membership("grp:g1", "carol"); m.Contains(2) {
		t.Fatalf("carol, who left before, reads the disbanding: %+v", m)
	}
	groups, err := fx.s.ListUserGroups(t.Context(), "alice", "", 10)
	must(t, err, "alice's groups")
	if len(groups) != 0 {
		t.Fatalf("alice's groups after the disbanding: %+v", groups)
	}
	var seen storage.GroupState
	fx.change(storage.GroupTx{GroupID: "g1", Users: []string{"alice"}, Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
		seen = st
		return storage.GroupEdit{}, nil
	}})
	if !seen.Group.Disbanded || len(seen.Roles) != 0 {
		t.Fatalf("Decide after the disbanding saw %+v", seen)
	}
}

func testGroupPaging(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	fx.users(users...)
	fx.group("g1", users...)
	fx.group("g2", "u2", "u1")
	fx.group("g3", "u3")
	fx.group("g4", "u2", "u1")
	var all []string
	after := ""
	for {
		page, err := fx.s.ListGroupMembers(t.Context(), "g1", after, 2)
		must(t, err, "page of members")
		for _, m := range page {
			all = append(all, m.UserID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].UserID
	}
	if !slices.Equal(all, users) {
		t.Fatalf("paged members %v, want %v", all, users)
	}
	_, err := fx.s.ListGroupMembers(t.Context(), "nope", "", 2)
	wantErr(t, err, storage.ErrNotFound, "members of an unknown group")

	must(t, fx.s.LeaveGroup(t.Context(), "g4", "u1"), "u1 leaves g4")
	page, err := fx.s.ListUserGroups(t.Context(), "u1", "", 1)
	must(t, err, "u1's first group")
	if len(page) != 1 || page[0].Group.ID != "g1" || page[0].Role != storage.RoleOwner || page[0].Group.MemberCount != 5 || page[0].Group.Name != "Group g1" {
		t.Fatalf("u1's first page %+v", page)
	}
	page, err = fx.s.ListUserGroups(t.Context(), "u1", "g1", 10)
	must(t, err, "u1's next groups")
	if len(page) != 1 || page[0].Group.ID != "g2" || page[0].Role != storage.RoleMember {
		t.Fatalf("u1's second page %+v (g4, left, must not be listed)", page)
	}
	// A one-to-one conversation is no group.
	fx.send(storage.C2CConversationID("u1", "u2"), "u1", 1)
	page, err = fx.s.ListUserGroups(t.Context(), "u1", "", 10)
	must(t, err, "u1's groups")
	if len(page) != 2 {
		t.Fatalf("u1's groups %+v, want g1 and g2", page)
	}
}

// Two concurrent changes decide on what the other did: the owner demotes
// an admin while the admin kicks members. Whatever the interleaving, no
// kick is recorded after the demotion (its decision saw the admin role).
func testChangeGroupConcurrent(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	const n = 8
	var victims []string
	for i := range n {
		victims = append(victims, fmt.Sprintf("v%d", i))
	}
	fx.users(append([]string{"owner", "admin"}, victims...)...)
	fx.group("g1", append([]string{"owner", "admin"}, victims...)...)
	fx.change(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Roles: map[string]storage.GroupRole{"admin": storage.RoleAdmin}, Message: fx.sysMsg("promote")}, nil
	}})
	notAdmin := errors.New("not an admin")
	var wg sync.WaitGroup
	var mu sync.Mutex
	kicked := map[string]int64{}
	var demotedAt int64
	for _, v := range victims {
		wg.Go(func() {
			res, err := fx.s.ChangeGroup(t.Context(), storage.GroupTx{GroupID: "g1", Users: []string{"admin", v}, Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
				if st.Roles["admin"] < storage.RoleAdmin {
					return storage.GroupEdit{}, notAdmin
				}
				return storage.GroupEdit{Remove: []string{v}, Message: fx.sysMsg("kick " + v)}, nil
			}})
			if err != nil && !errors.Is(err, notAdmin) {
				t.Errorf("kick %s: %v", v, err)
				return
			}
			if err == nil {
				mu.Lock()
				kicked[v] = res.Message.Message.Seq
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		res, err := fx.s.ChangeGroup(t.Context(), storage.GroupTx{GroupID: "g1", Users: []string{"admin"}, Decide: func(storage.GroupState) (storage.GroupEdit, error) {
			return storage.GroupEdit{Roles: map[string]storage.GroupRole{"admin": storage.RoleMember}, Message: fx.sysMsg("demote")}, nil
		}})
		if err != nil {
			t.Errorf("demote: %v", err)
			return
		}
		demotedAt = res.Message.Message.Seq
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	var members []string
	for v, seq := range kicked {
		if seq > demotedAt {
			t.Errorf("%s kicked at seq %d, after the demotion at %d", v, seq, demotedAt)
		}
	}
	for _, v := range victims {
		if _, ok := kicked[v]; !ok {
			members = append(members, v)
		}
	}
	fx.wantMembers("g1", append([]string{"owner", "admin"}, members...)...)
	fx.wantSeqs("grp:g1", int64(2+len(kicked)))
	fx.wantRoles("g1", func() map[string]storage.GroupRole {
		m := map[string]storage.GroupRole{"owner": storage.RoleOwner, "admin": storage.RoleMember}
		for _, v := range members {
			m[v] = storage.RoleMember
		}
		return m
	}())
}

// AllMembers gives Decide every active member's role (and only active
// members': a removed one is absent), besides the Users asked for.
func testChangeGroupAllMembers(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol", "dave")
	fx.group("g1", "alice", "bob", "carol")
	fx.change(fx.removeTx("g1", "carol"))
	fx.change(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Roles: map[string]storage.GroupRole{"bob": storage.RoleAdmin}, Message: fx.sysMsg("bob is an admin")}, nil
	}})
	var seen map[string]storage.GroupRole
	fx.change(storage.GroupTx{GroupID: "g1", Users: []string{"dave"}, AllMembers: true, Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
		seen = st.Roles
		return storage.GroupEdit{}, nil
	}})
	want := map[string]storage.GroupRole{"alice": storage.RoleOwner, "bob": storage.RoleAdmin}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("Decide saw %v, want %v", seen, want)
	}
}

// eventsTx sets gt.Events to store one event per user it is called with,
// recording the users and seq of each call in calls.
func (fx *fixture) eventsTx(gt storage.GroupTx, calls *[]string) storage.GroupTx {
	gt.Events = func(seq int64, users []string) ([]storage.NewMessage, error) {
		*calls = append(*calls, fmt.Sprint(seq, users))
		evs := make([]storage.NewMessage, len(users))
		for i, u := range users {
			evs[i] = fx.event(u, fmt.Sprintf("group@%d", seq))
		}
		return evs, nil
	}
	return gt
}

// testChangeGroupEvents: the users whose membership a change starts or
// ends get events stored with it, in its transaction; nobody else does,
// and a change whose events fail stores nothing.
func testChangeGroupEvents(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("a", "b", "c", "d")
	var calls []string
	wantCalls := func(when string, want ...string) {
		t.Helper()
		if !slices.Equal(calls, want) {
			t.Fatalf("%s: Events called with %q, want %q", when, calls, want)
		}
		calls = nil
	}
	wantEvents := func(res storage.GroupTxResult, users ...string) {
		t.Helper()
		if len(res.Events) != len(users) {
			t.Fatalf("events %+v, want one for each of %v", res.Events, users)
		}
		for i, u := range users {
			e := res.Events[i].Message
			if e.ConversationID != storage.EventsConversationID(u) || string(e.Content) != fmt.Sprintf("group@%d", res.Message.Message.Seq) {
				t.Fatalf("event %d = %+v, want %s's for seq %d", i, e, u, res.Message.Message.Seq)
			}
		}
	}
	g := storage.Group{ID: "g1", Name: "team", OwnerID: "a", CreatedAt: time.Now()}
	res := fx.change(fx.eventsTx(storage.GroupTx{GroupID: "g1", Create: &g, Members: []string{"b", "a", "b"}, Users: []string{"a"}, MaxMembers: 10,
		Decide: func(storage.GroupState) (storage.GroupEdit, error) {
			return storage.GroupEdit{Message: fx.sysMsg("created")}, nil
		}}, &calls))
	wantCalls("create", "1 [a b]")
	wantEvents(res, "a", "b")

	res = fx.change(fx.eventsTx(fx.addTx("g1", "d", "c"), &calls))
	wantCalls("add", "2 [c d]")
	wantEvents(res, "c", "d")

	// A role change starts and ends no membership: no call, no event.
	res = fx.change(fx.eventsTx(storage.GroupTx{GroupID: "g1", Users: []string{"b"}, Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Roles: map[string]storage.GroupRole{"b": storage.RoleAdmin}, Message: fx.sysMsg("admin")}, nil
	}}, &calls))
	wantCalls("role")
	wantEvents(res)

	res = fx.change(fx.eventsTx(fx.removeTx("g1", "c"), &calls))
	wantCalls("remove", "4 [c]")
	wantEvents(res, "c")

	// The events fail (one was stored before): the change is not made.
	failing := fx.removeTx("g1", "d")
	stored := fx.event("d", "again")
	evs, err := fx.s.ListMessages(t.Context(), "evt:d", 0, storage.OpenSeq, 10)
	must(t, err, "list d's events")
	stored.ClientMsgID = evs[0].ClientMsgID
	failing.Events = func(int64, []string) ([]storage.NewMessage, error) { return []storage.NewMessage{stored}, nil }
	_, err = fx.s.ChangeGroup(t.Context(), failing)
	wantErr(t, err, storage.ErrAlreadyExists, "a change whose event was stored before")
	boom := errors.New("boom")
	failing.Events = func(int64, []string) ([]storage.NewMessage, error) { return nil, boom }
	_, err = fx.s.ChangeGroup(t.Context(), failing)
	wantErr(t, err, boom, "a change whose events cannot be made")
	fx.wantSeqs("grp:g1", 4)
	fx.wantMembers("g1", "a", "b", "d")
	fx.wantSeqs("evt:d", 1)

	res = fx.change(fx.eventsTx(storage.GroupTx{GroupID: "g1", Decide: func(storage.GroupState) (storage.GroupEdit, error) {
		return storage.GroupEdit{Disband: true, Message: fx.sysMsg("disbanded")}, nil
	}}, &calls))
	wantCalls("disband", "5 [a b d]")
	wantEvents(res, "a", "b", "d")
	for u, n := range map[string]int64{"a": 2, "b": 2, "c": 2, "d": 2} {
		fx.wantSeqs(storage.EventsConversationID(u), n)
	}
}
