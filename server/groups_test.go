package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
)

// TestGroupRoles runs the group role scenarios against a real server over
// a real connection, once per storage backend.
func TestGroupRoles(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []e2eCase{
				{name: "rules and system messages", run: testGroupRules},
				{name: "kicked devices stop at once", run: testGroupKickLive},
				{name: "disband", run: testGroupDisband},
				{name: "concurrent changes", run: testGroupConcurrentChanges},
				{name: "bad inputs", run: testGroupBadInputs},
			} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, servertest.Start(t, servertest.WithStore(b.New(t))))
				})
			}
		})
	}
}

// wantRefusal fails unless err is the apierr entry want.
func wantRefusal(t *testing.T, err error, want *apierr.Error, what string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != want.Code || st.Message() != want.Message {
		t.Fatalf("%s: %v, want %v %q", what, err, want.Code, want.Message)
	}
}

// wantChange checks that m is the system message of a change of kind by
// actor.
func wantChange(t *testing.T, m *starlingv1.Message, kind starlingv1.GroupChange_Kind, actor string) *starlingv1.GroupChange {
	t.Helper()
	ch, ok := client.GroupChangeOf(m)
	if !ok || ch.GetKind() != kind || ch.GetActorId() != actor || m.GetSenderId() != "" {
		t.Fatalf("message %v: want the system message of %v by %s", m, kind, actor)
	}
	return ch
}

func kinds(t *testing.T, ms []*starlingv1.Message) []starlingv1.GroupChange_Kind {
	t.Helper()
	out := make([]starlingv1.GroupChange_Kind, len(ms))
	for i, m := range ms {
		ch, ok := client.GroupChangeOf(m)
		if !ok {
			t.Fatalf("seq %d is no system message: %v", m.GetSeq(), m)
		}
		out[i] = ch.GetKind()
	}
	return out
}

func ids(us ...servertest.User) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

// Every permission rule, and every change recorded at its own seq.
func testGroupRules(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, aU, m1U, m2U, outU := srv.NewUser(t, "owner"), srv.NewUser(t, "admin"), srv.NewUser(t, "mem1"), srv.NewUser(t, "mem2"), srv.NewUser(t, "out")
	o, a, m1, m2, out := connect(t, srv, oU, "phone"), connect(t, srv, aU, "phone"), connect(t, srv, m1U, "phone"), connect(t, srv, m2U, "phone"), connect(t, srv, outU, "phone")
	by := func(d device) context.Context { return servertest.WithToken(t.Context(), d.token) }

	res, err := gs.CreateGroup(by(o), &starlingv1.CreateGroupRequest{Name: "team", MemberIds: ids(aU, m1U, m2U),
		Description: "our team", AvatarUrl: "https://example.com/a.png"})
	if err != nil {
		t.Fatal(err)
	}
	g := res.GetGroup()
	if g.GetOwnerId() != oU.ID || g.GetMemberCount() != 4 || g.GetDescription() != "our team" || g.GetAvatarUrl() != "https://example.com/a.png" ||
		g.GetJoinPolicy() != starlingv1.JoinPolicy_JOIN_POLICY_INVITE_ONLY || g.GetAddPolicy() != starlingv1.AddPolicy_ADD_POLICY_MEMBERS {
		t.Fatalf("created %v", g)
	}
	gid := g.GetGroupId()
	seq := int64(1) // the creation's system message
	wantSeq := func(got int64, err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		seq++
		if got != seq {
			t.Fatalf("%s recorded at seq %d, want %d", what, got, seq)
		}
	}
	setRole := func(d device, u servertest.User, r starlingv1.GroupRole) (*starlingv1.SetMemberRoleResponse, error) {
		return gs.SetMemberRole(by(d), &starlingv1.SetMemberRoleRequest{GroupId: gid, UserId: u.ID, Role: r})
	}
	kick := func(d device, u servertest.User) (*starlingv1.KickMemberResponse, error) {
		return gs.KickMember(by(d), &starlingv1.KickMemberRequest{GroupId: gid, UserId: u.ID})
	}
	update := func(d device, req *starlingv1.UpdateGroupRequest) (*starlingv1.UpdateGroupResponse, error) {
		req.GroupId = gid
		return gs.UpdateGroup(by(d), req)
	}
	name := func(s string) *string { return &s }

	// Roles: only the owner sets them.
	_, err = setRole(a, m2U, starlingv1.GroupRole_GROUP_ROLE_ADMIN)
	wantRefusal(t, err, apierr.NotGroupOwner, "a member sets a role")
	r1, err := setRole(o, aU, starlingv1.GroupRole_GROUP_ROLE_ADMIN)
	wantSeq(r1.GetChangeSeq(), err, "promote admin")
	if again, err := setRole(o, aU, starlingv1.GroupRole_GROUP_ROLE_ADMIN); err != nil || again.GetChangeSeq() != 0 {
		t.Fatalf("promoting an admin again: %v (%v), want no change", again, err)
	}
	_, err = setRole(o, oU, starlingv1.GroupRole_GROUP_ROLE_MEMBER)
	wantRefusal(t, err, apierr.OwnerRoleFixed, "the owner demotes themself")
	_, err = setRole(o, aU, starlingv1.GroupRole_GROUP_ROLE_OWNER)
	wantRefusal(t, err, apierr.BadGroupRole, "role OWNER by SetMemberRole")
	_, err = setRole(o, outU, starlingv1.GroupRole_GROUP_ROLE_ADMIN)
	wantRefusal(t, err, apierr.TargetNotMember, "promote a non-member")

	// Info: admins only.
	_, err = update(m1, &starlingv1.UpdateGroupRequest{Name: name("mine")})
	wantRefusal(t, err, apierr.NotGroupAdmin, "a member updates the info")
	u1, err := update(a, &starlingv1.UpdateGroupRequest{Name: name("renamed"), Description: name("")})
	wantSeq(u1.GetChangeSeq(), err, "update info")
	if u1.GetGroup().GetName() != "renamed" || u1.GetGroup().GetDescription() != "" || u1.GetGroup().GetAvatarUrl() != "https://example.com/a.png" {
		t.Fatalf("group after the update: %v", u1.GetGroup())
	}
	if same, err := update(a, &starlingv1.UpdateGroupRequest{Name: name("renamed")}); err != nil || same.GetChangeSeq() != 0 {
		t.Fatalf("an update that changes nothing: %v (%v)", same, err)
	}

	// Kicks: admins kick members, the owner kicks admins, nobody the owner.
	_, err = kick(m1, m2U)
	wantRefusal(t, err, apierr.NotGroupAdmin, "a member kicks a member")
	_, err = kick(m1, oU)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a member kicks the owner: %v", err)
	}
	_, err = kick(a, oU)
	wantRefusal(t, err, apierr.KickOwner, "an admin kicks the owner")
	r3, err := setRole(o, m2U, starlingv1.GroupRole_GROUP_ROLE_ADMIN)
	wantSeq(r3.GetChangeSeq(), err, "promote m2")
	_, err = kick(a, m2U)
	wantRefusal(t, err, apierr.NotGroupOwner, "an admin kicks an admin")
	_, err = kick(a, aU)
	wantRefusal(t, err, apierr.KickSelf, "kick oneself")
	_, err = kick(a, outU)
	wantRefusal(t, err, apierr.TargetNotMember, "kick a non-member")
	_, err = gs.LeaveGroup(by(o), &starlingv1.LeaveGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.OwnerCannotLeave, "the owner leaves")
	k1, err := kick(a, m1U)
	wantSeq(k1.GetChangeSeq(), err, "admin kicks m1")
	k2, err := kick(o, m2U)
	wantSeq(k2.GetChangeSeq(), err, "owner kicks admin m2")

	// Adding: admins only once the add policy says so.
	u2, err := update(a, &starlingv1.UpdateGroupRequest{AddPolicy: starlingv1.AddPolicy_ADD_POLICY_ADMINS})
	wantSeq(u2.GetChangeSeq(), err, "admins-only adding")
	add1, err := gs.AddMembers(by(o), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(m1U)})
	wantSeq(add1.GetChangeSeq(), err, "owner adds m1 back")
	_, err = gs.AddMembers(by(m1), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(outU)})
	wantRefusal(t, err, apierr.NotGroupAdmin, "a member adds under admins-only adding")
	if none, err := gs.AddMembers(by(a), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(m1U)}); err != nil || none.GetChangeSeq() != 0 || len(none.GetAddedUserIds()) != 0 {
		t.Fatalf("adding a member again: %v (%v), want no change", none, err)
	}

	// Joining: only open groups.
	_, err = gs.JoinGroup(by(out), &starlingv1.JoinGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.GroupInviteOnly, "join an invite-only group")
	u3, err := update(a, &starlingv1.UpdateGroupRequest{JoinPolicy: starlingv1.JoinPolicy_JOIN_POLICY_OPEN})
	wantSeq(u3.GetChangeSeq(), err, "open the group")
	j, err := gs.JoinGroup(by(out), &starlingv1.JoinGroupRequest{GroupId: gid})
	wantSeq(j.GetChangeSeq(), err, "join the open group")
	_, err = gs.JoinGroup(by(out), &starlingv1.JoinGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.AlreadyMember, "join twice")

	// Ownership: to a member, never to oneself; then the old owner may leave.
	_, err = gs.TransferOwnership(by(o), &starlingv1.TransferOwnershipRequest{GroupId: gid, UserId: m2U.ID})
	wantRefusal(t, err, apierr.TargetNotMember, "transfer to a non-member")
	_, err = gs.TransferOwnership(by(o), &starlingv1.TransferOwnershipRequest{GroupId: gid, UserId: oU.ID})
	wantRefusal(t, err, apierr.TransferToSelf, "transfer to oneself")
	_, err = gs.TransferOwnership(by(a), &starlingv1.TransferOwnershipRequest{GroupId: gid, UserId: m1U.ID})
	wantRefusal(t, err, apierr.NotGroupOwner, "an admin transfers")
	tr, err := gs.TransferOwnership(by(o), &starlingv1.TransferOwnershipRequest{GroupId: gid, UserId: aU.ID})
	wantSeq(tr.GetChangeSeq(), err, "transfer to the admin")
	lv, err := gs.LeaveGroup(by(o), &starlingv1.LeaveGroupRequest{GroupId: gid})
	wantSeq(lv.GetChangeSeq(), err, "the former owner leaves")

	// Members, paged, with roles.
	var members []*starlingv1.GroupMember
	token := ""
	for {
		page, err := gs.ListGroupMembers(by(a), &starlingv1.ListGroupMembersRequest{GroupId: gid, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, page.GetMembers()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	roles := map[string]starlingv1.GroupRole{}
	for i, m := range members {
		if i > 0 && members[i-1].GetUserId() >= m.GetUserId() {
			t.Fatalf("members not in user id order: %v", members)
		}
		roles[m.GetUserId()] = m.GetRole()
	}
	wantRoles := map[string]starlingv1.GroupRole{aU.ID: starlingv1.GroupRole_GROUP_ROLE_OWNER, m1U.ID: starlingv1.GroupRole_GROUP_ROLE_MEMBER, outU.ID: starlingv1.GroupRole_GROUP_ROLE_MEMBER}
	if fmt.Sprint(roles) != fmt.Sprint(wantRoles) {
		t.Fatalf("roles %v, want %v", roles, wantRoles)
	}
	_, err = gs.ListGroupMembers(by(o), &starlingv1.ListGroupMembersRequest{GroupId: gid})
	wantRefusal(t, err, apierr.NotMember, "a former member lists members")
	mine, err := gs.ListMyGroups(by(a), &starlingv1.ListMyGroupsRequest{})
	if err != nil || len(mine.GetGroups()) != 1 || mine.GetGroups()[0].GetRole() != starlingv1.GroupRole_GROUP_ROLE_OWNER ||
		mine.GetGroups()[0].GetGroup().GetName() != "renamed" || mine.GetGroups()[0].GetGroup().GetMemberCount() != 3 {
		t.Fatalf("admin's groups %v (%v)", mine, err)
	}
	if mine, err := gs.ListMyGroups(by(o), &starlingv1.ListMyGroupsRequest{}); err != nil || len(mine.GetGroups()) != 0 {
		t.Fatalf("the former owner's groups %v (%v)", mine, err)
	}

	// History: every change, in order, each at its own seq.
	h := history(t, srv, a, g.GetConversationId(), 0).GetMessages()
	want := []starlingv1.GroupChange_Kind{
		starlingv1.GroupChange_KIND_CREATED, starlingv1.GroupChange_KIND_ROLE_CHANGED, starlingv1.GroupChange_KIND_INFO_UPDATED, starlingv1.GroupChange_KIND_ROLE_CHANGED,
		starlingv1.GroupChange_KIND_MEMBER_KICKED, starlingv1.GroupChange_KIND_MEMBER_KICKED, starlingv1.GroupChange_KIND_INFO_UPDATED,
		starlingv1.GroupChange_KIND_MEMBERS_ADDED, starlingv1.GroupChange_KIND_INFO_UPDATED, starlingv1.GroupChange_KIND_MEMBER_JOINED,
		starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED, starlingv1.GroupChange_KIND_MEMBER_LEFT,
	}
	if got := kinds(t, h); !slices.Equal(got, want) {
		t.Fatalf("history of changes %v, want %v", got, want)
	}
	wantSeqs(t, h, 1, seq)
	if ch := wantChange(t, h[0], starlingv1.GroupChange_KIND_CREATED, oU.ID); ch.GetInfo().GetName() != "team" || len(ch.GetTargetIds()) != 0 {
		t.Fatalf("creation %v", ch)
	}
	if ch := wantChange(t, h[4], starlingv1.GroupChange_KIND_MEMBER_KICKED, aU.ID); !slices.Equal(ch.GetTargetIds(), ids(m1U)) {
		t.Fatalf("kick targets %v", ch.GetTargetIds())
	}
	if ch := wantChange(t, h[2], starlingv1.GroupChange_KIND_INFO_UPDATED, aU.ID); ch.GetInfo().GetName() != "renamed" {
		t.Fatalf("info change %v", ch)
	}
	if ch := wantChange(t, h[3], starlingv1.GroupChange_KIND_ROLE_CHANGED, oU.ID); ch.GetRole() != starlingv1.GroupRole_GROUP_ROLE_ADMIN || !slices.Equal(ch.GetTargetIds(), ids(m2U)) {
		t.Fatalf("role change %v", ch)
	}
	// m1 reads up to the kick that removed them (5) and from the add (8).
	if got := seqs(history(t, srv, m1, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 8, 9, 10, 11, 12}) {
		t.Fatalf("m1's history %v", got)
	}
	// out reads from the change that let them in.
	if got := seqs(history(t, srv, out, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{10, 11, 12}) {
		t.Fatalf("out's history %v", got)
	}
	// Online members were pushed every change they may read, in order.
	if got := seqs(pushed(t, m2, 6)); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("m2 (kicked at 6) was pushed %v", got)
	}
	m2.Quiet(t, 100*time.Millisecond)
}

// A kicked member's devices are pushed the kick and nothing after it, at
// once; a member added later reads from the add on.
func testGroupKickLive(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, vU, wU, lateU := srv.NewUser(t, "owner"), srv.NewUser(t, "victim"), srv.NewUser(t, "witness"), srv.NewUser(t, "late")
	o, w, late := connect(t, srv, oU, "phone"), connect(t, srv, wU, "phone"), connect(t, srv, lateU, "phone")
	phone, laptop := connect(t, srv, vU, "phone"), connect(t, srv, vU, "laptop")
	g := newGroup(t, srv, o, vU, wU)
	gid := g.GetGroupId()
	expectAck(t, o, o.Text(t, "", gid, "1", "one"))
	for _, d := range []device{phone, laptop, w} {
		pushed(t, d, 2) // the creation, "one"
	}
	k, err := gs.KickMember(servertest.WithToken(t.Context(), o.token), &starlingv1.KickMemberRequest{GroupId: gid, UserId: vU.ID})
	if err != nil || k.GetChangeSeq() != 3 {
		t.Fatalf("kick: %v (%v)", k, err)
	}
	for _, d := range []device{phone, laptop, w} {
		m := pushed(t, d, 1)[0]
		if ch := wantChange(t, m, starlingv1.GroupChange_KIND_MEMBER_KICKED, oU.ID); m.GetSeq() != 3 || !slices.Equal(ch.GetTargetIds(), ids(vU)) {
			t.Fatalf("pushed %v, want the kick at seq 3", m)
		}
	}
	expectAck(t, o, o.Text(t, "", gid, "3", "after the kick"))
	if m := pushed(t, w, 1)[0]; m.GetSeq() != 4 {
		t.Fatalf("witness was pushed %v", m)
	}
	phone.Quiet(t, 100*time.Millisecond)
	laptop.Quiet(t, 50*time.Millisecond)
	wantRefusal(t, errorOf(expectError(t, phone, phone.Text(t, "", gid, "v", "still here?"), codes.PermissionDenied)), apierr.NotMember, "a kicked member sends")
	if got := seqs(syncAll(t, laptop, g.GetConversationId(), 0)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("the kicked member syncs %v, want 1 to 3", got)
	}
	if got := seqs(history(t, srv, phone, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("the kicked member's history %v", got)
	}
	// A later member: the add is the first message they read.
	if _, err := gs.AddMembers(servertest.WithToken(t.Context(), w.token), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(lateU)}); err != nil {
		t.Fatal(err)
	}
	expectAck(t, o, o.Text(t, "", gid, "5", "welcome"))
	got := pushed(t, late, 2)
	wantChange(t, got[0], starlingv1.GroupChange_KIND_MEMBERS_ADDED, wU.ID)
	if !slices.Equal(seqs(got), []int64{5, 6}) {
		t.Fatalf("late member was pushed %v, want 5 and 6", seqs(got))
	}
	if got := seqs(history(t, srv, late, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{5, 6}) {
		t.Fatalf("late member's history %v", got)
	}
}

// errorOf turns an Error frame into a status error, for wantRefusal.
func errorOf(e *starlingv1.Error) error {
	return status.Error(codes.Code(e.GetCode()), e.GetMessage())
}

// Disbanding ends every membership at its system message; sends and
// changes are refused after it, history stays readable.
func testGroupDisband(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, mU := srv.NewUser(t, "owner"), srv.NewUser(t, "member")
	o, m := connect(t, srv, oU, "phone"), connect(t, srv, mU, "phone")
	by := func(d device) context.Context { return servertest.WithToken(t.Context(), d.token) }
	g := newGroup(t, srv, o, mU)
	gid := g.GetGroupId()
	expectAck(t, o, o.Text(t, "", gid, "1", "one"))
	pushed(t, m, 2) // the creation, "one"
	_, err := gs.DisbandGroup(by(m), &starlingv1.DisbandGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.NotGroupOwner, "a member disbands")
	d, err := gs.DisbandGroup(by(o), &starlingv1.DisbandGroupRequest{GroupId: gid})
	if err != nil || d.GetChangeSeq() != 3 {
		t.Fatalf("disband: %v (%v)", d, err)
	}
	if got := pushed(t, m, 1)[0]; got.GetSeq() != 3 {
		t.Fatalf("pushed %v, want the disbanding at 3", got)
	} else {
		wantChange(t, got, starlingv1.GroupChange_KIND_DISBANDED, oU.ID)
	}
	for _, dev := range []device{o, m} {
		wantRefusal(t, errorOf(expectError(t, dev, dev.Text(t, "", gid, "after", "anyone?"), codes.FailedPrecondition)), apierr.GroupDisbanded, "send to a disbanded group")
		if got := seqs(history(t, srv, dev, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{1, 2, 3}) {
			t.Fatalf("history after the disbanding %v, want 1 to 3", got)
		}
	}
	_, _, err = func() (*starlingv1.Group, []string, error) {
		r, err := gs.GetGroup(by(o), &starlingv1.GetGroupRequest{GroupId: gid})
		return r.GetGroup(), r.GetMemberIds(), err
	}()
	wantRefusal(t, err, apierr.GroupDisbanded, "get a disbanded group")
	_, err = gs.AddMembers(by(o), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(mU)})
	wantRefusal(t, err, apierr.GroupDisbanded, "add to a disbanded group")
	_, err = gs.DisbandGroup(by(o), &starlingv1.DisbandGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.GroupDisbanded, "disband twice")
	_, err = gs.JoinGroup(by(m), &starlingv1.JoinGroupRequest{GroupId: gid})
	wantRefusal(t, err, apierr.GroupDisbanded, "join a disbanded group")
	if mine, err := gs.ListMyGroups(by(o), &starlingv1.ListMyGroupsRequest{}); err != nil || len(mine.GetGroups()) != 0 {
		t.Fatalf("owner's groups after the disbanding %v (%v)", mine, err)
	}
	// Nothing was stored after the disbanding.
	if l, err := srv.Store().LatestSeq(t.Context(), g.GetConversationId()); err != nil || l != 3 {
		t.Fatalf("latest seq %d (%v), want 3", l, err)
	}
}

// Two admins kicking and adding at once, the owner demoting one of them
// meanwhile, and members sending: every change is recorded once, at its
// own seq, and the members and roles after are what the recorded changes
// say.
func testGroupConcurrentChanges(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, a1U, a2U := srv.NewUser(t, "owner"), srv.NewUser(t, "admin1"), srv.NewUser(t, "admin2")
	var victims, newcomers []servertest.User
	for i := range 6 {
		victims = append(victims, srv.NewUser(t, fmt.Sprintf("victim%d", i)))
		newcomers = append(newcomers, srv.NewUser(t, fmt.Sprintf("new%d", i)))
	}
	o := connect(t, srv, oU, "phone")
	a1 := device{user: a1U, token: srv.Login(t, a1U, "phone")}
	a2 := device{user: a2U, token: srv.Login(t, a2U, "phone")}
	by := func(d device) context.Context { return servertest.WithToken(t.Context(), d.token) }
	g := newGroup(t, srv, o, append([]servertest.User{a1U, a2U}, victims...)...)
	gid := g.GetGroupId()
	for _, a := range []servertest.User{a1U, a2U} {
		if _, err := gs.SetMemberRole(by(o), &starlingv1.SetMemberRoleRequest{GroupId: gid, UserId: a.ID, Role: starlingv1.GroupRole_GROUP_ROLE_ADMIN}); err != nil {
			t.Fatal(err)
		}
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		kicked  = map[string]int{}
		changes = 3 // the creation, the promotions
		demoted int64
		a2After []int64 // seqs of a2's kicks
	)
	record := func(seq int64, err error, who device, what string, allowed ...*apierr.Error) bool {
		if err != nil {
			for _, a := range allowed {
				if st := status.Convert(err); st.Code() == a.Code && st.Message() == a.Message {
					return false
				}
			}
			t.Errorf("%s: %v", what, err)
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		changes++
		if who.user.ID == a2U.ID && what == "kick" { // a member may still add
			a2After = append(a2After, seq)
		}
		return true
	}
	for _, admin := range []device{a1, a2} {
		wg.Go(func() {
			for _, v := range victims {
				res, err := gs.KickMember(by(admin), &starlingv1.KickMemberRequest{GroupId: gid, UserId: v.ID})
				if record(res.GetChangeSeq(), err, admin, "kick", apierr.TargetNotMember, apierr.NotGroupAdmin) {
					mu.Lock()
					kicked[v.ID]++
					mu.Unlock()
				}
			}
		})
	}
	for i, admin := range []device{a1, a2} {
		wg.Go(func() {
			for _, n := range newcomers[3*i : 3*i+3] {
				res, err := gs.AddMembers(by(admin), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(n)})
				record(res.GetChangeSeq(), err, admin, "add", apierr.NotGroupAdmin)
			}
		})
	}
	wg.Go(func() {
		res, err := gs.SetMemberRole(by(o), &starlingv1.SetMemberRoleRequest{GroupId: gid, UserId: a2U.ID, Role: starlingv1.GroupRole_GROUP_ROLE_MEMBER})
		if record(res.GetChangeSeq(), err, o, "demote") {
			mu.Lock()
			demoted = res.GetChangeSeq()
			mu.Unlock()
		}
	})
	sent := 0
	wg.Go(func() {
		for i := range 10 {
			expectAck(t, o, o.Text(t, "", gid, fmt.Sprint("s", i), "meanwhile"))
			mu.Lock()
			sent++
			mu.Unlock()
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, v := range victims {
		if kicked[v.ID] != 1 {
			t.Fatalf("%s kicked %d times", v.ID, kicked[v.ID])
		}
	}
	for _, seq := range a2After {
		if seq > demoted {
			t.Fatalf("admin2 kicked at seq %d, after the demotion at %d", seq, demoted)
		}
	}
	// History: seqs 1..n without gaps, system messages = recorded changes.
	var all []*starlingv1.Message
	before := int64(0)
	for {
		h, err := chatClient(t, srv).GetHistory(by(o), &starlingv1.GetHistoryRequest{ConversationId: g.GetConversationId(), BeforeSeq: before, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		all = append(h.GetMessages(), all...)
		if !h.GetHasMore() {
			break
		}
		before = h.GetMessages()[0].GetSeq()
	}
	wantSeqs(t, all, 1, int64(changes+sent))
	system := 0
	for _, m := range all {
		if _, ok := client.GroupChangeOf(m); ok {
			system++
		}
	}
	if system != changes {
		t.Fatalf("%d system messages, %d changes", system, changes)
	}
	res, err := gs.ListGroupMembers(by(o), &starlingv1.ListGroupMembersRequest{GroupId: g.GetGroupId()})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]starlingv1.GroupRole{}
	for _, m := range res.GetMembers() {
		got[m.GetUserId()] = m.GetRole()
	}
	want := map[string]starlingv1.GroupRole{oU.ID: starlingv1.GroupRole_GROUP_ROLE_OWNER, a1U.ID: starlingv1.GroupRole_GROUP_ROLE_ADMIN, a2U.ID: starlingv1.GroupRole_GROUP_ROLE_MEMBER}
	for _, n := range newcomers {
		want[n.ID] = starlingv1.GroupRole_GROUP_ROLE_MEMBER
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members after the changes %v, want %v", got, want)
	}
}

// Bad inputs get clear errors and change nothing.
func testGroupBadInputs(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, mU := srv.NewUser(t, "owner"), srv.NewUser(t, "member")
	o := connect(t, srv, oU, "phone")
	by := servertest.WithToken(t.Context(), o.token)
	for _, tc := range []struct {
		req  *starlingv1.CreateGroupRequest
		want *apierr.Error
	}{
		{&starlingv1.CreateGroupRequest{Name: ""}, apierr.BadGroupName},
		{&starlingv1.CreateGroupRequest{Name: "x", AvatarUrl: "ftp://example.com/a.png"}, apierr.BadAvatarURL},
		{&starlingv1.CreateGroupRequest{Name: "x", AvatarUrl: "https://"}, apierr.BadAvatarURL},
		{&starlingv1.CreateGroupRequest{Name: "x", Description: string(make([]rune, 513))}, apierr.BadGroupDescription},
		{&starlingv1.CreateGroupRequest{Name: "x", Description: "a\u202eb"}, apierr.BadGroupDescription},
		{&starlingv1.CreateGroupRequest{Name: "x", JoinPolicy: 9}, apierr.BadGroupPolicy},
		{&starlingv1.CreateGroupRequest{Name: "x", AddPolicy: 9}, apierr.BadGroupPolicy},
		{&starlingv1.CreateGroupRequest{Name: "x", MemberIds: []string{"nobody"}}, apierr.MemberNotFound},
	} {
		_, err := gs.CreateGroup(by, tc.req)
		wantRefusal(t, err, tc.want, fmt.Sprintf("create %v", tc.req))
	}
	if mine, err := gs.ListMyGroups(by, &starlingv1.ListMyGroupsRequest{}); err != nil || len(mine.GetGroups()) != 0 {
		t.Fatalf("groups after refused creations: %v (%v)", mine, err)
	}
	g := newGroup(t, srv, o, mU)
	gid := g.GetGroupId()
	_, err := gs.SetMemberRole(by, &starlingv1.SetMemberRoleRequest{GroupId: gid, UserId: mU.ID, Role: starlingv1.GroupRole_GROUP_ROLE_UNSPECIFIED})
	wantRefusal(t, err, apierr.BadGroupRole, "role unspecified")
	_, err = gs.KickMember(by, &starlingv1.KickMemberRequest{GroupId: gid, UserId: ""})
	wantRefusal(t, err, apierr.BadUserID, "kick no one")
	_, err = gs.KickMember(by, &starlingv1.KickMemberRequest{GroupId: "gmissing", UserId: mU.ID})
	wantRefusal(t, err, apierr.GroupNotFound, "kick in a missing group")
	_, err = gs.UpdateGroup(by, &starlingv1.UpdateGroupRequest{GroupId: gid, AvatarUrl: proto.String("javascript:alert(1)")})
	wantRefusal(t, err, apierr.BadAvatarURL, "update to a bad avatar")
	_, err = gs.UpdateGroup(by, &starlingv1.UpdateGroupRequest{GroupId: ""})
	wantRefusal(t, err, apierr.BadConversationID, "update no group")
	_, err = gs.ListGroupMembers(by, &starlingv1.ListGroupMembersRequest{GroupId: gid, PageSize: 501})
	wantRefusal(t, err, apierr.BadPageSize, "page size 501")
	_, err = gs.ListGroupMembers(by, &starlingv1.ListGroupMembersRequest{GroupId: gid, PageToken: "a:b"})
	wantRefusal(t, err, apierr.BadPageToken, "page token with ':'")
	_, err = gs.ListMyGroups(by, &starlingv1.ListMyGroupsRequest{PageSize: -1})
	wantRefusal(t, err, apierr.BadPageSize, "negative page size")
	// Clients cannot pass for the server.
	ref := o.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{
		ClientMsgId: "fake", To: &starlingv1.Send_GroupId{GroupId: gid},
		Content: &starlingv1.Content{Type: client.GroupChangeType, Data: []byte{8, 8}},
	}}})
	wantRefusal(t, errorOf(expectError(t, o, ref, codes.InvalidArgument)), apierr.ReservedContentType, "a client sends a system message")
	if l, err := srv.Store().LatestSeq(t.Context(), g.GetConversationId()); err != nil || l != 1 {
		t.Fatalf("latest seq %d (%v) after refusals, want 1 (the creation)", l, err)
	}
}

// Across two nodes: a member kicked through node-0 is pushed the kick on
// node-1 and nothing after it, and node-1 refuses their next send at once
// (it heard GroupChanged before the kick's push); disbanding through
// node-0 stops the others' sends on node-1 the same way.
func TestClusterGroupKickAndDisband(t *testing.T) {
	t.Parallel()
	m := newMetered(noRecheck)
	c := servertest.StartCluster(t, 2, m.configure)
	n0, n1 := c.Nodes[0], c.Nodes[1]
	oU, vU, wU := n0.NewUser(t, "owner"), n1.NewUser(t, "victim"), n1.NewUser(t, "witness")
	o := connect(t, n0.Server, oU, "phone")
	v, w := connect(t, n1.Server, vU, "phone"), connect(t, n1.Server, wU, "phone")
	g := newGroup(t, n0.Server, o, vU, wU)
	gid := g.GetGroupId()
	m.awaitDevices(t, 3, n0, n1)
	for _, d := range []device{v, w} {
		pushed(t, d, 1) // the creation
	}

	// Traffic first, so node-1 authorizes the victim from its member cache.
	expectAck(t, v, v.Text(t, "", gid, "v1", "from node-1"))
	pushed(t, w, 1)
	expectAck(t, o, o.Text(t, "", gid, "o2", "from node-0"))
	pushed(t, v, 1)
	pushed(t, w, 1)
	expectAck(t, v, v.Text(t, "", gid, "v3", "cached"))
	pushed(t, w, 1)

	gs := starlingv1.NewGroupServiceClient(n0.Dial(t))
	k, err := gs.KickMember(servertest.WithToken(t.Context(), o.token), &starlingv1.KickMemberRequest{GroupId: gid, UserId: vU.ID})
	if err != nil || k.GetChangeSeq() != 5 {
		t.Fatalf("kick: %v (%v)", k, err)
	}
	for _, d := range []device{v, w} {
		got := pushed(t, d, 1)[0]
		if got.GetSeq() != 5 {
			t.Fatalf("pushed %v, want the kick at seq 5", got)
		}
		wantChange(t, got, starlingv1.GroupChange_KIND_MEMBER_KICKED, oU.ID)
	}
	wantRefusal(t, errorOf(expectError(t, v, v.Text(t, "", gid, "v5", "still here?"), codes.PermissionDenied)), apierr.NotMember, "the kicked member sends through node-1")
	expectAck(t, o, o.Text(t, "", gid, "o5", "after the kick"))
	if got := pushed(t, w, 1)[0]; got.GetSeq() != 6 {
		t.Fatalf("witness was pushed %v, want seq 6", got)
	}
	v.Quiet(t, 150*time.Millisecond)

	// Disband through node-0: the witness on node-1 is pushed it last, and
	// node-1 refuses the next send.
	if _, err := gs.DisbandGroup(servertest.WithToken(t.Context(), o.token), &starlingv1.DisbandGroupRequest{GroupId: gid}); err != nil {
		t.Fatal(err)
	}
	got := pushed(t, w, 1)[0]
	wantChange(t, got, starlingv1.GroupChange_KIND_DISBANDED, oU.ID)
	wantRefusal(t, errorOf(expectError(t, w, w.Text(t, "", gid, "w7", "hello?"), codes.FailedPrecondition)), apierr.GroupDisbanded, "send through node-1 after the disbanding")
	if h := history(t, n1.Server, w, g.GetConversationId(), 50); !slices.Equal(seqs(h.GetMessages()), []int64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("history %v, want 1..7: the refused sends stored nothing", seqs(h.GetMessages()))
	}
}
