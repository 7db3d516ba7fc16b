package server_test

import (
	"slices"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// TestGroupEvents: the group changes that start or end a user's membership
// reach that user as Events of their stream (docs/social.md, "Group
// events"), once per device whether it was online or not, stored with the
// change; other changes reach members only as system messages. Once per
// storage backend, over a real connection.
func TestGroupEvents(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []e2eCase{
				{name: "added offline device gets the event once", run: testGroupEventAddedOffline},
				{name: "kicked member gets the removal and nothing after", run: testGroupEventKicked},
				{name: "disband reaches every member", run: testGroupEventDisband},
				{name: "a refused change stores no event", run: testGroupEventRefused},
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
	// The owner's membership did not change: the system message, no event.
	if got := append(early, pushed(t, o, 2-len(early))...); !slices.Equal(seqs(got), []int64{1, 2}) {
		t.Fatalf("owner was pushed %v, want the creation and the add", seqs(got))
	}
	quiet(t, o, 100*time.Millisecond)

	tablet := device{user: bU, token: tabletTok, Stream: srv.OpenStream(t, tabletTok)}
	evConv := storage.EventsConversationID(bU.ID)
	for notified := map[string]bool{}; !notified[evConv] || !notified[g.GetConversationId()]; {
		n := tablet.Next(t).GetNotify()
		if n == nil {
			t.Fatal("catch-up: a frame other than Notify")
		}
		notified[n.GetConversationId()] = true
	}
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
	// A role change starts or ends no membership: a system message only.
	if _, err := gs.SetMemberRole(by, &starlingv1.SetMemberRoleRequest{GroupId: g.GetGroupId(), UserId: wU.ID, Role: starlingv1.GroupRole_GROUP_ROLE_ADMIN}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []device{v, w} {
		if got := seqs(append(early[d.user.ID], pushed(t, d, 2-len(early[d.user.ID]))...)); !slices.Equal(got, []int64{1, 2}) {
			t.Fatalf("%s was pushed %v, want the creation and the role change", d.user.Username, got)
		}
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
	if got := pushed(t, w, 2); got[1].GetSeq() != 4 {
		t.Fatalf("witness was pushed %v", seqs(got))
	}
	quiet(t, w, 100*time.Millisecond) // no event for the witness
	quiet(t, v, 200*time.Millisecond) // nothing more for the victim
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
