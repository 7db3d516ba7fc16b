package server_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// TestGroupEvents: the group changes that start or end a user's membership
// reach that user as Events of their stream (docs/social.md, "Group
// events"), once per device whether it was online or not, stored with the
// change; every other member's online devices hear of every change as an
// ephemeral Event, and read it after an absence as the system message.
// Once per storage backend, over a real connection.
func TestGroupEvents(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []e2eCase{
				{name: "added offline device gets the event once", run: testGroupEventAddedOffline},
				{name: "kicked member gets the removal and nothing after", run: testGroupEventKicked},
				{name: "disband reaches every member", run: testGroupEventDisband},
				{name: "a refused change stores no event", run: testGroupEventRefused},
				{name: "members online hear of every change", run: testGroupEventMembersTold},
			} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, servertest.Start(t, servertest.WithStore(b.New(t))))
				})
			}
		})
	}
}

// nextStoredEvent reads frames until a stored Event, which it acks and
// returns; pushes on the way are acked and returned too.
func nextStoredEvent(t *testing.T, d device) (*starlingv1.Event, []*starlingv1.Message) {
	t.Helper()
	var msgs []*starlingv1.Message
	for {
		f := d.Next(t)
		for _, m := range f.GetPush().GetMessages() {
			msgs = append(msgs, m)
			d.Ack(t, m.GetConversationId(), m.GetSeq())
		}
		if ev := f.GetEvent(); ev.GetSeq() > 0 {
			d.Ack(t, ev.GetConversationId(), ev.GetSeq())
			return ev, msgs
		}
	}
}

// catchUp reads the Notify frames of a device's catch-up until every one of
// convs was notified; any other frame fails the test.
func catchUp(t *testing.T, d device, convs ...string) {
	t.Helper()
	notified := map[string]bool{}
	for len(notified) < len(convs) {
		n := d.Next(t).GetNotify()
		if n == nil || !slices.Contains(convs, n.GetConversationId()) {
			t.Fatalf("catch-up: %v, want a Notify of one of %v", n, convs)
		}
		notified[n.GetConversationId()] = true
	}
}

// pushedAndTold reads frames until n messages were pushed (acking them) and
// told ephemeral group events came, and returns both.
func pushedAndTold(t *testing.T, d device, n, told int) ([]*starlingv1.Message, []*starlingv1.Event) {
	t.Helper()
	var msgs []*starlingv1.Message
	var evs []*starlingv1.Event
	for len(msgs) < n || len(evs) < told {
		f := d.Next(t)
		for _, m := range f.GetPush().GetMessages() {
			msgs = append(msgs, m)
			d.Ack(t, m.GetConversationId(), m.GetSeq())
		}
		switch ev := f.GetEvent(); {
		case ev.GetGroupChanged() != nil && ev.GetSeq() == 0:
			evs = append(evs, ev)
		case ev.GetGroupChanged() != nil:
			t.Fatalf("%s: a stored group event %v, want ephemeral ones", d.user.Username, ev)
		}
	}
	return msgs, evs
}

// wantGroupEvent checks that ev records a change of kind by actor in group
// g at seq.
func wantGroupEvent(t *testing.T, ev *starlingv1.Event, g *starlingv1.Group, kind starlingv1.GroupChange_Kind, actor string, seq int64) *starlingv1.GroupEvent {
	t.Helper()
	ge := ev.GetGroupChanged()
	if ge.GetGroupId() != g.GetGroupId() || ge.GetConversationId() != g.GetConversationId() || ge.GetSeq() != seq ||
		ge.GetChange().GetKind() != kind || ge.GetChange().GetActorId() != actor || ev.GetActorId() != actor || ge.GetGroupName() != "team" {
		t.Fatalf("event %v, want %v in %s at seq %d by %s", ev, kind, g.GetGroupId(), seq, actor)
	}
	return ge
}

func testGroupEventAddedOffline(t *testing.T, srv *servertest.Server) {
	oU, bU := srv.NewUser(t, "owner"), srv.NewUser(t, "bob")
	o := connect(t, srv, oU, "phone")
	tabletTok := srv.Login(t, bU, "tablet") // offline until the add
	g := newGroup(t, srv, o)
	ev, early := nextStoredEvent(t, o)
	if ev.GetSeq() != 1 {
		t.Fatalf("owner's creation event %v, want seq 1 of the stream", ev)
	} else if ch := wantGroupEvent(t, ev, g, starlingv1.GroupChange_KIND_CREATED, oU.ID, 1).GetChange(); ch.GetInfo().GetName() != "team" {
		t.Fatalf("creation %v", ch)
	}
	add, err := groups(t, srv).AddMembers(servertest.WithToken(t.Context(), o.token), &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: ids(bU)})
	if err != nil || add.GetChangeSeq() != 2 {
		t.Fatalf("add: %v (%v)", add, err)
	}
	// The owner's membership did not change: the system message, and an
	// ephemeral event naming everyone added.
	msgs, told := pushedAndTold(t, o, 2-len(early), 1)
	if got := append(early, msgs...); !slices.Equal(seqs(got), []int64{1, 2}) {
		t.Fatalf("owner was pushed %v, want the creation and the add", seqs(got))
	}
	if ev := told[0]; ev.GetConversationId() != "" || !slices.Equal(wantGroupEvent(t, ev, g, starlingv1.GroupChange_KIND_MEMBERS_ADDED, oU.ID, 2).GetChange().GetTargetIds(), ids(bU)) {
		t.Fatalf("owner was told %v", ev)
	}
	quiet(t, o, 100*time.Millisecond)

	tablet := device{user: bU, token: tabletTok, Stream: srv.OpenStream(t, tabletTok)}
	evConv := storage.EventsConversationID(bU.ID)
	catchUp(t, tablet, evConv, g.GetConversationId())
	evs := syncEvents(t, tablet, evConv, 0)
	if len(evs) != 1 || evs[0].GetSeq() != 1 || evs[0].GetConversationId() != evConv {
		t.Fatalf("bob's tablet synced events %v, want the add only", evs)
	}
	ge := wantGroupEvent(t, evs[0], g, starlingv1.GroupChange_KIND_MEMBERS_ADDED, oU.ID, 2)
	if !slices.Equal(ge.GetChange().GetTargetIds(), ids(bU)) {
		t.Fatalf("targets %v, want bob", ge.GetChange().GetTargetIds())
	}
	// From seq-1 on, the add is the first message bob reads.
	if got := seqs(syncAll(t, tablet, g.GetConversationId(), ge.GetSeq()-1)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("bob synced the group from the event: %v, want [2]", got)
	}
	waitCursor(t, srv, bU.ID, "tablet", evConv, 1)
	waitCursor(t, srv, bU.ID, "tablet", g.GetConversationId(), 2)
	tablet.Close()

	// Reconnected: the event does not come again.
	again := device{user: bU, token: tabletTok, Stream: srv.OpenStream(t, tabletTok)}
	quiet(t, again, 300*time.Millisecond)
}

func testGroupEventKicked(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, vU, wU := srv.NewUser(t, "owner"), srv.NewUser(t, "victim"), srv.NewUser(t, "witness")
	o, v, w := connect(t, srv, oU, "phone"), connect(t, srv, vU, "phone"), connect(t, srv, wU, "phone")
	g := newGroup(t, srv, o, vU, wU)
	by := servertest.WithToken(t.Context(), o.token)
	early := map[string][]*starlingv1.Message{} // pushes read before the event
	for _, d := range []device{o, v, w} {
		ev, msgs := nextStoredEvent(t, d)
		wantGroupEvent(t, ev, g, starlingv1.GroupChange_KIND_CREATED, oU.ID, 1)
		early[d.user.ID] = msgs
	}
	// A role change starts or ends no membership: a system message and an
	// ephemeral event, nothing stored.
	if _, err := gs.SetMemberRole(by, &starlingv1.SetMemberRoleRequest{GroupId: g.GetGroupId(), UserId: wU.ID, Role: starlingv1.GroupRole_GROUP_ROLE_ADMIN}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []device{v, w} {
		msgs, told := pushedAndTold(t, d, 2-len(early[d.user.ID]), 1)
		if got := seqs(append(early[d.user.ID], msgs...)); !slices.Equal(got, []int64{1, 2}) {
			t.Fatalf("%s was pushed %v, want the creation and the role change", d.user.Username, got)
		}
		wantGroupEvent(t, told[0], g, starlingv1.GroupChange_KIND_ROLE_CHANGED, oU.ID, 2)
		quiet(t, d, 100*time.Millisecond)
	}
	if _, err := gs.KickMember(by, &starlingv1.KickMemberRequest{GroupId: g.GetGroupId(), UserId: vU.ID}); err != nil {
		t.Fatal(err)
	}
	ev, msgs := nextStoredEvent(t, v)
	if ev.GetSeq() != 2 || !slices.Equal(wantGroupEvent(t, ev, g, starlingv1.GroupChange_KIND_MEMBER_KICKED, oU.ID, 3).GetChange().GetTargetIds(), ids(vU)) {
		t.Fatalf("victim's removal event %v, want seq 2 of their stream", ev)
	}
	if len(msgs) == 0 {
		pushed(t, v, 1) // the kick's system message, if it came after the event
	}
	expectAck(t, o, o.Text(t, "", g.GetGroupId(), "after", "after the kick"))
	got, told := pushedAndTold(t, w, 2, 1)
	if got[1].GetSeq() != 4 {
		t.Fatalf("witness was pushed %v", seqs(got))
	}
	if !slices.Equal(wantGroupEvent(t, told[0], g, starlingv1.GroupChange_KIND_MEMBER_KICKED, oU.ID, 3).GetChange().GetTargetIds(), ids(vU)) {
		t.Fatalf("witness was told %v", told[0])
	}
	quiet(t, w, 100*time.Millisecond) // nothing stored for the witness
	quiet(t, v, 200*time.Millisecond) // nothing more for the victim: not even the ephemeral copy
	if l, err := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(vU.ID)); err != nil || l != 2 {
		t.Fatalf("victim's stream ends at %d (%v), want 2 events", l, err)
	}
}

func testGroupEventDisband(t *testing.T, srv *servertest.Server) {
	oU, aU, bU := srv.NewUser(t, "owner"), srv.NewUser(t, "anna"), srv.NewUser(t, "bert")
	devs := []device{connect(t, srv, oU, "phone"), connect(t, srv, aU, "phone"), connect(t, srv, bU, "phone")}
	g := newGroup(t, srv, devs[0], aU, bU)
	for _, d := range devs {
		nextStoredEvent(t, d)
	}
	if _, err := groups(t, srv).DisbandGroup(servertest.WithToken(t.Context(), devs[0].token), &starlingv1.DisbandGroupRequest{GroupId: g.GetGroupId()}); err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		ev, _ := nextStoredEvent(t, d)
		if ev.GetSeq() != 2 {
			t.Fatalf("%s: disband event %v, want seq 2", d.user.Username, ev)
		}
		wantGroupEvent(t, ev, g, starlingv1.GroupChange_KIND_DISBANDED, oU.ID, 2)
	}
}

func testGroupEventRefused(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, mU, cU := srv.NewUser(t, "owner"), srv.NewUser(t, "member"), srv.NewUser(t, "carol")
	o := connect(t, srv, oU, "phone")
	g, err := gs.CreateGroup(servertest.WithToken(t.Context(), o.token), &starlingv1.CreateGroupRequest{
		Name: "team", MemberIds: ids(mU), AddPolicy: starlingv1.AddPolicy_ADD_POLICY_ADMINS})
	if err != nil {
		t.Fatal(err)
	}
	gid := g.GetGroup().GetGroupId()
	// An unknown user among those added: nothing is stored, not even carol's event.
	_, err = gs.AddMembers(servertest.WithToken(t.Context(), o.token), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: []string{cU.ID, "unobody"}})
	wantRefusal(t, err, apierr.MemberNotFound, "add an unknown user")
	// A member may not add under ADD_POLICY_ADMINS.
	_, err = gs.AddMembers(servertest.WithToken(t.Context(), srv.Login(t, mU, "phone")), &starlingv1.AddMembersRequest{GroupId: gid, UserIds: ids(cU)})
	wantRefusal(t, err, apierr.NotGroupAdmin, "a member adds")
	// A failed creation: no group, no event for its would-be members.
	_, err = gs.CreateGroup(servertest.WithToken(t.Context(), o.token), &starlingv1.CreateGroupRequest{Name: "x", MemberIds: []string{cU.ID, "unobody"}})
	wantRefusal(t, err, apierr.MemberNotFound, "create with an unknown user")
	for u, want := range map[string]int64{oU.ID: 1, mU.ID: 1, cU.ID: 0} {
		if l, err := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(u)); err != nil || l != want {
			t.Fatalf("stream of %s ends at %d (%v), want %d", u, l, err, want)
		}
	}
	if l, err := srv.Store().LatestSeq(t.Context(), g.GetGroup().GetConversationId()); err != nil || l != 1 {
		t.Fatalf("group ends at %d (%v), want 1 (the creation)", l, err)
	}
}

// Changes that start or end no membership, and the others seen from the
// members they leave alone: each member's online devices (the actor's
// too) are told once, ephemeral, with the system message's seq; a device
// offline at the time reads the changes as system messages, and is told
// nothing after.
func testGroupEventMembersTold(t *testing.T, srv *servertest.Server) {
	gs := groups(t, srv)
	oU, aU, bU, cU := srv.NewUser(t, "owner"), srv.NewUser(t, "anna"), srv.NewUser(t, "bert"), srv.NewUser(t, "carl")
	o, a := connect(t, srv, oU, "phone"), connect(t, srv, aU, "phone")
	a2 := connect(t, srv, aU, "tablet")
	bTok := srv.Login(t, bU, "phone") // offline throughout the changes
	g := newGroup(t, srv, o, aU, bU)
	for _, d := range []device{o, a, a2} {
		if _, msgs := nextStoredEvent(t, d); len(msgs) == 0 {
			pushed(t, d, 1) // the creation's system message came after the event
		}
	}
	by := servertest.WithToken(t.Context(), o.token)
	// A refused change tells nobody anything.
	bad := "anna's"
	_, err := gs.UpdateGroup(servertest.WithToken(t.Context(), a.token), &starlingv1.UpdateGroupRequest{GroupId: g.GetGroupId(), Name: &bad})
	wantRefusal(t, err, apierr.NotGroupAdmin, "a member renames")
	for _, d := range []device{o, a, a2} {
		quiet(t, d, 50*time.Millisecond)
	}
	name := "team"
	type step struct {
		kind starlingv1.GroupChange_Kind
		do   func() (int64, error)
	}
	steps := []step{
		{starlingv1.GroupChange_KIND_INFO_UPDATED, func() (int64, error) {
			name = "renamed"
			r, err := gs.UpdateGroup(by, &starlingv1.UpdateGroupRequest{GroupId: g.GetGroupId(), Name: &name})
			return r.GetChangeSeq(), err
		}},
		{starlingv1.GroupChange_KIND_ROLE_CHANGED, func() (int64, error) {
			r, err := gs.SetMemberRole(by, &starlingv1.SetMemberRoleRequest{GroupId: g.GetGroupId(), UserId: aU.ID, Role: starlingv1.GroupRole_GROUP_ROLE_ADMIN})
			return r.GetChangeSeq(), err
		}},
		{starlingv1.GroupChange_KIND_MEMBERS_ADDED, func() (int64, error) {
			r, err := gs.AddMembers(by, &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: ids(cU)})
			return r.GetChangeSeq(), err
		}},
		{starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED, func() (int64, error) {
			r, err := gs.TransferOwnership(by, &starlingv1.TransferOwnershipRequest{GroupId: g.GetGroupId(), UserId: aU.ID})
			return r.GetChangeSeq(), err
		}},
	}
	for i, st := range steps {
		seq, err := st.do()
		if err != nil || seq != int64(i+2) {
			t.Fatalf("%v: seq %d (%v), want %d", st.kind, seq, err, i+2)
		}
		for _, d := range []device{o, a, a2} {
			msgs, told := pushedAndTold(t, d, 1, 1)
			ge := told[0].GetGroupChanged()
			if msgs[0].GetSeq() != seq || told[0].GetSeq() != 0 || told[0].GetActorId() != oU.ID ||
				ge.GetSeq() != seq || ge.GetChange().GetKind() != st.kind || ge.GetGroupName() != name || ge.GetGroupId() != g.GetGroupId() {
				t.Fatalf("%s after %v: pushed %v, told %v", d.user.Username, st.kind, seqs(msgs), told[0])
			}
			quiet(t, d, 50*time.Millisecond)
		}
	}
	// Nothing was stored for the members the changes left alone.
	for _, u := range []servertest.User{oU, aU, bU} {
		if l, err := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(u.ID)); err != nil || l != 1 {
			t.Fatalf("stream of %s ends at %d (%v), want 1 (the creation)", u.Username, l, err)
		}
	}
	// Bert, back: the changes are system messages; no ephemeral event.
	b := device{user: bU, token: bTok, Stream: srv.OpenStream(t, bTok)}
	evConv := storage.EventsConversationID(bU.ID)
	catchUp(t, b, evConv, g.GetConversationId())
	kinds := []starlingv1.GroupChange_Kind{starlingv1.GroupChange_KIND_CREATED}
	for _, st := range steps {
		kinds = append(kinds, st.kind)
	}
	got := syncAll(t, b, g.GetConversationId(), 0)
	if !slices.Equal(seqs(got), []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("bert synced %v, want the five changes", seqs(got))
	}
	for i, m := range got {
		var ch starlingv1.GroupChange
		if err := proto.Unmarshal(m.GetContent().GetData(), &ch); err != nil || ch.GetKind() != kinds[i] || m.GetSenderId() != "" {
			t.Fatalf("bert's #%d: %v (%v), want a system message of %v", m.GetSeq(), m, err, kinds[i])
		}
	}
	if evs := syncEvents(t, b, evConv, 0); len(evs) != 1 {
		t.Fatalf("bert's events %v, want the creation only", evs)
	}
	quiet(t, b, 100*time.Millisecond)
}
