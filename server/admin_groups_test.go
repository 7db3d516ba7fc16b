package server_test

import (
	"maps"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/servertest"
)

// roles lists a group's members with their roles, as a member sees them.
func roles(t *testing.T, e adminEnv, d device, gid string) map[string]starlingv1.GroupRole {
	t.Helper()
	res, err := groups(t, e.srv).ListGroupMembers(servertest.WithToken(t.Context(), d.token), &starlingv1.ListGroupMembersRequest{GroupId: gid})
	if err != nil {
		t.Fatalf("list members: %v", err)
	}
	out := map[string]starlingv1.GroupRole{}
	for _, m := range res.GetMembers() {
		out[m.GetUserId()] = m.GetRole()
	}
	return out
}

// changesAfter returns the group's system messages after seq, as history
// shows them to d.
func changesAfter(t *testing.T, e adminEnv, d device, conv string, seq int64) []*starlingv1.GroupChange {
	t.Helper()
	var out []*starlingv1.GroupChange
	for _, m := range history(t, e.srv, d, conv, 100).GetMessages() {
		if m.GetSeq() <= seq {
			continue
		}
		ch, ok := client.GroupChangeOf(m)
		if !ok || ch.GetActorId() != chat.SystemUserID || m.GetSenderId() != "" {
			t.Fatalf("seq %d: %v, want a system message of a change by %q", m.GetSeq(), m, chat.SystemUserID)
		}
		out = append(out, ch)
	}
	return out
}

// testAdminSetMembers: CreateGroup with admins and SetMembers with roles
// go through the group-change path: every change is a system message by
// "system" in the group's history, roles are what the backend set, and a
// repeated call changes and records nothing.
func testAdminSetMembers(t *testing.T, e adminEnv) {
	alice, bob, carol, dave := e.srv.NewUser(t, "alice"), e.srv.NewUser(t, "bob"), e.srv.NewUser(t, "carol"), e.srv.NewUser(t, "dave")
	admin, member := starlingv1.GroupRole_GROUP_ROLE_ADMIN, starlingv1.GroupRole_GROUP_ROLE_MEMBER
	owner := starlingv1.GroupRole_GROUP_ROLE_OWNER
	cg, err := e.api.CreateGroup(e.ctx, &starlingv1.AdminServiceCreateGroupRequest{OwnerId: alice.ID, Name: "team",
		MemberIds: []string{carol.ID}, Members: []*starlingv1.AdminGroupMember{{UserId: bob.ID, Role: admin}}})
	if err != nil || cg.GetGroup().GetMemberCount() != 3 {
		t.Fatalf("create group: %v %v", cg, err)
	}
	gid, conv := cg.GetGroup().GetGroupId(), cg.GetGroup().GetConversationId()
	a := connect(t, e.srv, alice, "phone")
	if got, want := roles(t, e, a, gid), map[string]starlingv1.GroupRole{alice.ID: owner, bob.ID: admin, carol.ID: member}; !maps.Equal(got, want) {
		t.Fatalf("roles after create: %v, want %v", got, want)
	}
	// Seq 1 records the creation (by the owner); seq 2 the admins.
	chs := changesAfter(t, e, a, conv, 1)
	if len(chs) != 1 || chs[0].GetKind() != starlingv1.GroupChange_KIND_ROLE_CHANGED || chs[0].GetRole() != admin || !slices.Equal(chs[0].GetTargetIds(), []string{bob.ID}) {
		t.Fatalf("history after create: %v", chs)
	}

	// carol goes, dave comes as an admin, bob becomes a member.
	set := &starlingv1.SetMembersRequest{GroupId: gid, Members: []*starlingv1.AdminGroupMember{{UserId: bob.ID, Role: member}, {UserId: dave.ID, Role: admin}}}
	sm, err := e.api.SetMembers(e.ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sm.GetRemovedUserIds(), []string{carol.ID}) || !slices.Equal(sm.GetAddedUserIds(), []string{dave.ID}) ||
		!slices.Equal(sm.GetRoleChangedUserIds(), []string{dave.ID, bob.ID}) || sm.GetGroup().GetMemberCount() != 3 {
		t.Fatalf("set members: %v", sm)
	}
	if got, want := roles(t, e, a, gid), map[string]starlingv1.GroupRole{alice.ID: owner, bob.ID: member, dave.ID: admin}; !maps.Equal(got, want) {
		t.Fatalf("roles: %v, want %v", got, want)
	}
	chs = changesAfter(t, e, a, conv, 2)
	var got []starlingv1.GroupChange_Kind
	for _, ch := range chs {
		got = append(got, ch.GetKind())
	}
	if want := []starlingv1.GroupChange_Kind{starlingv1.GroupChange_KIND_MEMBER_KICKED, starlingv1.GroupChange_KIND_MEMBERS_ADDED,
		starlingv1.GroupChange_KIND_ROLE_CHANGED, starlingv1.GroupChange_KIND_ROLE_CHANGED}; !slices.Equal(got, want) {
		t.Fatalf("history kinds %v, want %v", got, want)
	}
	if chs[2].GetRole() != admin || chs[3].GetRole() != member {
		t.Fatalf("role changes %v", chs[2:])
	}
	latest := int64(6)
	// The same call again changes and records nothing.
	again, err := e.api.SetMembers(e.ctx, set)
	if err != nil || len(again.GetAddedUserIds())+len(again.GetRemovedUserIds())+len(again.GetRoleChangedUserIds()) != 0 {
		t.Fatalf("set members again: %v %v", again, err)
	}
	if chs := changesAfter(t, e, a, conv, latest); len(chs) != 0 {
		t.Fatalf("a repeated call recorded %v", chs)
	}
	// Plain user_ids keep their roles.
	if _, err := e.api.SetMembers(e.ctx, &starlingv1.SetMembersRequest{GroupId: gid, UserIds: []string{bob.ID, dave.ID}}); err != nil {
		t.Fatal(err)
	}
	if chs := changesAfter(t, e, a, conv, latest); len(chs) != 0 {
		t.Fatalf("user_ids with the same members recorded %v", chs)
	}

	// Ownership moves to dave; alice, unlisted, is an admin a moment and
	// then goes.
	tr, err := e.api.SetMembers(e.ctx, &starlingv1.SetMembersRequest{GroupId: gid, UserIds: []string{bob.ID}, Members: []*starlingv1.AdminGroupMember{{UserId: dave.ID, Role: owner}}})
	if err != nil || tr.GetGroup().GetOwnerId() != dave.ID || !slices.Equal(tr.GetRemovedUserIds(), []string{alice.ID}) || !slices.Equal(tr.GetRoleChangedUserIds(), []string{dave.ID, alice.ID}) {
		t.Fatalf("transfer: %v %v", tr, err)
	}
	d := connect(t, e.srv, dave, "phone")
	if got, want := roles(t, e, d, gid), map[string]starlingv1.GroupRole{dave.ID: owner, bob.ID: member}; !maps.Equal(got, want) {
		t.Fatalf("roles after transfer: %v, want %v", got, want)
	}

	// Bad inputs change nothing.
	for name, req := range map[string]*starlingv1.SetMembersRequest{
		"two owners":          {GroupId: gid, Members: []*starlingv1.AdminGroupMember{{UserId: bob.ID, Role: owner}, {UserId: dave.ID, Role: owner}}},
		"owner demoted":       {GroupId: gid, Members: []*starlingv1.AdminGroupMember{{UserId: dave.ID, Role: member}}},
		"listed twice":        {GroupId: gid, UserIds: []string{bob.ID}, Members: []*starlingv1.AdminGroupMember{{UserId: bob.ID, Role: admin}}},
		"unknown role":        {GroupId: gid, Members: []*starlingv1.AdminGroupMember{{UserId: bob.ID, Role: 42}}},
		"bad user id":         {GroupId: gid, UserIds: []string{""}},
		"the system sender":   {GroupId: gid, UserIds: []string{chat.SystemUserID}},
		"bad group id":        {GroupId: "", UserIds: []string{bob.ID}},
		"owner by create api": nil,
	} {
		if req == nil {
			_, err := e.api.CreateGroup(e.ctx, &starlingv1.AdminServiceCreateGroupRequest{OwnerId: bob.ID, Name: "x", Members: []*starlingv1.AdminGroupMember{{UserId: dave.ID, Role: owner}}})
			wantCode(t, err, codes.InvalidArgument, name)
			continue
		}
		_, err := e.api.SetMembers(e.ctx, req)
		wantCode(t, err, codes.InvalidArgument, name)
	}
	_, err = e.api.SetMembers(e.ctx, &starlingv1.SetMembersRequest{GroupId: "g-missing", UserIds: []string{bob.ID}})
	wantCode(t, err, codes.NotFound, "missing group")
	_, err = e.api.SetMembers(e.ctx, &starlingv1.SetMembersRequest{GroupId: gid, UserIds: []string{bob.ID, "nobody"}})
	wantCode(t, err, codes.NotFound, "unknown user")
	if got, want := roles(t, e, d, gid), map[string]starlingv1.GroupRole{dave.ID: owner, bob.ID: member}; !maps.Equal(got, want) {
		t.Fatalf("roles after refusals: %v, want %v", got, want)
	}
}
