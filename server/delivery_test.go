package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// faultCase is a delivery scenario that needs to hold or fail store calls
// at a chosen moment; each runs on every backend.
type faultCase struct {
	name string
	cfg  func(*server.Config)
	run  func(t *testing.T, srv *servertest.Server, f *servertest.Faults)
}

// TestDeliveryCorrectness pins the delivery promises that need a race or a
// failure to show: each scenario makes its race happen in one order, with
// the real server on a real database, instead of hoping for it.
func TestDeliveryCorrectness(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range faultCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					f := &servertest.Faults{}
					opts := []servertest.Option{servertest.WithFaults(b.New(t), f)}
					if c.cfg != nil {
						opts = append(opts, servertest.WithConfig(c.cfg))
					}
					c.run(t, servertest.Start(t, opts...), f)
				})
			}
		})
	}
}

var faultCases = []faultCase{
	{name: "fan-out by membership at the message's seq", run: testFanoutAtSeq},
	{name: "rejoin reads every period", run: testRejoinPeriods},
	{name: "leave before the first message", run: testLeaveBeforeFirst},
	{name: "large backlog in bounded frames", run: testLargeBacklog, cfg: func(c *server.Config) { c.Window = 200 }},
	{name: "client_msg_id reused", run: testClientMsgIDReused},
	{name: "member read fails: announced", run: testMemberReadFails},
	{name: "one failing send fails alone", run: testOneFailingSend},
	{name: "shutdown answers sends in flight", run: testShutdownAnswers},
	{name: "rate limit before any read", run: testRateLimitFirst, cfg: func(c *server.Config) { c.SendRate, c.SendBurst = 1, 1 }},
	{name: "group sends read members once", run: testMemberCache},
	{name: "errors are fixed texts", run: testFixedErrorTexts, cfg: func(c *server.Config) { c.MaxGroupMembers = 2 }},
}

// hold makes the first AppendMessages call wait, after (or before) its
// commit, until release is called; committed is closed when it is held.
type hold struct {
	once      sync.Once
	committed chan struct{}
	released  chan struct{}
}

func newHold() *hold { return &hold{committed: make(chan struct{}), released: make(chan struct{})} }

func (h *hold) wait() {
	h.once.Do(func() {
		close(h.committed)
		<-h.released
	})
}

func (h *hold) release() { close(h.released) }

func (h *hold) held(t *testing.T) {
	t.Helper()
	select {
	case <-h.committed:
	case <-time.After(servertest.Timeout):
		t.Fatal("no commit reached the hold")
	}
}

func groups(t *testing.T, srv *servertest.Server) starlingv1.GroupServiceClient {
	return starlingv1.NewGroupServiceClient(srv.Dial(t))
}

func chatClient(t *testing.T, srv *servertest.Server) starlingv1.ChatServiceClient {
	return starlingv1.NewChatServiceClient(srv.Dial(t))
}

func addMembers(t *testing.T, srv *servertest.Server, by device, g *starlingv1.Group, users ...servertest.User) {
	t.Helper()
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	if _, err := groups(t, srv).AddMembers(servertest.WithToken(t.Context(), by.token), &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: ids}); err != nil {
		t.Fatalf("add members: %v", err)
	}
}

func leave(t *testing.T, srv *servertest.Server, d device, g *starlingv1.Group) {
	t.Helper()
	if _, err := groups(t, srv).LeaveGroup(servertest.WithToken(t.Context(), d.token), &starlingv1.LeaveGroupRequest{GroupId: g.GetGroupId()}); err != nil {
		t.Fatalf("leave group: %v", err)
	}
}

func history(t *testing.T, srv *servertest.Server, d device, conv string, limit int32) *starlingv1.GetHistoryResponse {
	t.Helper()
	h, err := chatClient(t, srv).GetHistory(servertest.WithToken(t.Context(), d.token), &starlingv1.GetHistoryRequest{ConversationId: conv, Limit: limit})
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	return h
}

// A message goes to the members whose membership contains its seq: a user
// added right after it commits is not pushed it (a privacy leak before),
// and one who leaves right after it commits still is (a loss before).
func testFanoutAtSeq(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	ownerU, leaverU, joinerU := srv.NewUser(t, "owner"), srv.NewUser(t, "leaver"), srv.NewUser(t, "joiner")
	owner, leaver, joiner := connect(t, srv, ownerU, "phone"), connect(t, srv, leaverU, "phone"), connect(t, srv, joinerU, "phone")
	g := newGroup(t, srv, owner, leaverU)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "m1", "warm-up"))
	pushed(t, leaver, 2) // the creation, m1

	h := newHold()
	f.Set(servertest.Hooks{AfterAppend: func([]storage.NewMessage, []storage.AppendResult) { h.wait() }})
	ref := owner.Text(t, "", g.GetGroupId(), "m2", "said before the change")
	h.held(t) // m2 is committed; its fan-out has not run
	// The members change meanwhile, as another node changes them (a change
	// made on this node would queue behind m2 on the group's shard).
	if _, err := srv.Store().AddMembers(t.Context(), g.GetGroupId(), []string{joinerU.ID}, 100); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store().LeaveGroup(t.Context(), g.GetGroupId(), leaverU.ID); err != nil {
		t.Fatal(err)
	}
	h.release()
	if ack, _ := expectAck(t, owner, ref); ack.GetSeq() != 3 {
		t.Fatalf("m2 got seq %d", ack.GetSeq())
	}
	if m := pushed(t, leaver, 1)[0]; m.GetSeq() != 3 {
		t.Fatalf("the member who left after seq 3 got %v, want seq 3", m)
	}
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "m3", "said after the change"))
	if m := pushed(t, joiner, 1)[0]; m.GetSeq() != 4 {
		t.Fatalf("the member who joined at seq 3 was pushed seq %d first; want 4", m.GetSeq())
	}
	leaver.Quiet(t, 150*time.Millisecond)
	if got := seqs(history(t, srv, joiner, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, []int64{4}) {
		t.Fatalf("joiner's history %v, want [4]", got)
	}
}

// A user who leaves and is added again reads both stays, and nothing from
// between them.
func testRejoinPeriods(t *testing.T, srv *servertest.Server, _ *servertest.Faults) {
	ownerU, memberU := srv.NewUser(t, "owner"), srv.NewUser(t, "member")
	owner, member := connect(t, srv, ownerU, "phone"), connect(t, srv, memberU, "phone")
	g := newGroup(t, srv, owner, memberU)
	send := func(ids ...string) {
		for _, id := range ids {
			expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), id, id))
		}
	}
	send("1", "2")
	leave(t, srv, member, g)
	send("3", "4")
	addMembers(t, srv, owner, g, memberU)
	send("5", "6")
	leave(t, srv, member, g)
	send("7")
	addMembers(t, srv, owner, g, memberU)
	send("8")
	member.Close()

	fresh := connect(t, srv, memberU, "laptop") // no cursor: catches up from scratch
	// Every change is a message: 1 creation, 4 leave, 7 add, 10 leave, 12
	// add. A member reads the one that removes them and the one that adds
	// them.
	want := []int64{1, 2, 3, 4, 7, 8, 9, 10, 12, 13}
	if got := seqs(syncAll(t, fresh, g.GetConversationId(), 0)); !slices.Equal(got, want) {
		t.Fatalf("sync of a rejoined member: %v, want %v", got, want)
	}
	if got := seqs(history(t, srv, fresh, g.GetConversationId(), 0).GetMessages()); !slices.Equal(got, want) {
		t.Fatalf("history of a rejoined member: %v, want %v", got, want)
	}
	// Paging back across the gap between stays.
	var paged []int64
	before := int64(0)
	for {
		h, err := chatClient(t, srv).GetHistory(servertest.WithToken(t.Context(), fresh.token), &starlingv1.GetHistoryRequest{ConversationId: g.GetConversationId(), BeforeSeq: before, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(seqs(h.GetMessages()), paged...)
		if !h.GetHasMore() {
			break
		}
		before = h.GetMessages()[0].GetSeq()
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("history paged by 2: %v, want %v", paged, want)
	}
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "9", "9"))
	if m := pushed(t, fresh, 1)[0]; m.GetSeq() != 14 {
		t.Fatalf("pushed %v, want seq 14", m)
	}
}

// Leaving before the group's first message means reading nothing of it
// (left_seq 0 once read as "never left"). LeaveGroup records a system
// message, so its period ends at 1 at the earliest; a period ending at 0
// (left through the store, as before group changes were recorded) must
// still read as ended. (CreateGroup records the creation at seq 1 now: the
// group is made through the store, empty, as groups were made before.)
func testLeaveBeforeFirst(t *testing.T, srv *servertest.Server, _ *servertest.Faults) {
	ownerU, goneU := srv.NewUser(t, "owner"), srv.NewUser(t, "gone")
	owner, gone := connect(t, srv, ownerU, "phone"), connect(t, srv, goneU, "phone")
	g := storeGroup(t, srv, ownerU, goneU)
	if err := srv.Store().LeaveGroup(t.Context(), g.GetGroupId(), goneU.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), fmt.Sprint(i), "after you left"))
	}
	gone.Quiet(t, 100*time.Millisecond)
	if got := syncAll(t, gone, g.GetConversationId(), 0); len(got) != 0 {
		t.Fatalf("sync after leaving at 0: %v", seqs(got))
	}
	if got := history(t, srv, gone, g.GetConversationId(), 0).GetMessages(); len(got) != 0 {
		t.Fatalf("history after leaving at 0: %v", seqs(got))
	}
	cs, err := chatClient(t, srv).ListConversations(servertest.WithToken(t.Context(), gone.token), &starlingv1.ListConversationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.GetConversations() {
		if c.GetConversationId() == g.GetConversationId() && c.GetLatestSeq() != 0 {
			t.Fatalf("conversation state %v, want latest_seq 0", c)
		}
	}
	gone.Close()
	again := connect(t, srv, goneU, "laptop")
	again.Quiet(t, 100*time.Millisecond) // no catch-up Notify for the group
}

// Every frame the server builds stays under MaxResponseBytes, so a client
// with gRPC's default 4 MiB receive limit gets a large backlog in pieces:
// through Sync, through packed pushes and through history.
func testLargeBacklog(t *testing.T, srv *servertest.Server, _ *servertest.Faults) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	big := strings.Repeat("x", 60<<10)
	for i := range 80 {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("b%d", i), big))
	}
	limit := srv.Config().MaxResponseBytes
	bob := connect(t, srv, bobU, "phone") // a raw stub with default options
	nt := bob.Next(t).GetNotify()
	if nt.GetLatestSeq() != 80 {
		t.Fatalf("catch-up %v", nt)
	}
	var got []int64
	after := int64(0)
	for {
		ref := bob.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: nt.GetConversationId(), AfterSeq: after, Limit: 500}}})
		f := bob.Next(t)
		b := f.GetSyncBatch()
		if f.GetRef() != ref || b == nil {
			t.Fatalf("answer to sync: %v", f)
		}
		if n := proto.Size(f); n > limit {
			t.Fatalf("SyncBatch of %d bytes, limit %d", n, limit)
		}
		got = append(got, seqs(b.GetMessages())...)
		after = b.GetMessages()[len(b.GetMessages())-1].GetSeq()
		if !b.GetHasMore() {
			break
		}
	}
	wantSeqs(t, msgsOf(got), 1, 80)
	bob.Ack(t, nt.GetConversationId(), 80)

	// Pushes: 60 more, sent faster than bob's stream takes them, so they
	// pack; each Push frame stays under the bound.
	var refs []uint64
	for i := range 60 {
		refs = append(refs, alice.Text(t, bobU.ID, "", fmt.Sprintf("p%d", i), big))
	}
	for _, r := range refs {
		expectAck(t, alice, r)
	}
	got = nil
	for len(got) < 60 {
		f := bob.Next(t)
		if n := proto.Size(f); n > limit {
			t.Fatalf("Push of %d bytes, limit %d", n, limit)
		}
		got = append(got, seqs(f.GetPush().GetMessages())...)
	}
	wantSeqs(t, msgsOf(got), 81, 140)

	// History: a page of 100 is cut to what fits, newest first kept.
	h := history(t, srv, bob, nt.GetConversationId(), 100)
	if n := proto.Size(h); n > limit || !h.GetHasMore() || len(h.GetMessages()) == 0 || h.GetMessages()[len(h.GetMessages())-1].GetSeq() != 140 {
		t.Fatalf("history page: %d bytes, %d messages, has_more %v", n, len(h.GetMessages()), h.GetHasMore())
	}
}

func msgsOf(seqs []int64) []*starlingv1.Message {
	out := make([]*starlingv1.Message, len(seqs))
	for i, s := range seqs {
		out[i] = &starlingv1.Message{Seq: s}
	}
	return out
}

// A client_msg_id used again for another conversation or other content is
// refused: acknowledging it as a duplicate would lose the new message.
func testClientMsgIDReused(t *testing.T, srv *servertest.Server, _ *servertest.Faults) {
	aliceU, bobU, carolU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	alice, carol := connect(t, srv, aliceU, "phone"), connect(t, srv, carolU, "phone")
	first, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "same-id", "hi bob"))
	e := expectError(t, alice, alice.Text(t, carolU.ID, "", "same-id", "hi carol"), codes.AlreadyExists)
	if e.GetMessage() != apierr.ClientMsgIDReused.Message {
		t.Fatalf("message %q", e.GetMessage())
	}
	expectError(t, alice, alice.Text(t, bobU.ID, "", "same-id", "other words"), codes.AlreadyExists)
	carol.Quiet(t, 100*time.Millisecond)
	if got := syncAll(t, carol, storage.C2CConversationID(aliceU.ID, carolU.ID), 0); len(got) != 0 {
		t.Fatalf("carol's conversation holds %v", seqs(got))
	}
	// The real resend is still a duplicate of the first.
	again, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "same-id", "hi bob"))
	if !again.GetDuplicate() || again.GetMsgId() != first.GetMsgId() || again.GetSeq() != first.GetSeq() {
		t.Fatalf("resend answered %v, want a duplicate of %v", again, first)
	}
}

// When who may read a stored message cannot be read, the message is not
// stranded: the group's devices are told to pull.
func testMemberReadFails(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	ownerU, memberU, newU := srv.NewUser(t, "owner"), srv.NewUser(t, "member"), srv.NewUser(t, "new")
	owner, member := connect(t, srv, ownerU, "phone"), connect(t, srv, memberU, "phone")
	g := newGroup(t, srv, owner, memberU)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "1", "one"))
	pushed(t, member, 2) // the creation, "one"
	// A new epoch, as another node makes it (unheard here), so the fan-out
	// must read. (A change made here fans its system message out, which
	// reads the new members into the cache.)
	if _, err := srv.Store().AddMembers(t.Context(), g.GetGroupId(), []string{newU.ID}, 100); err != nil {
		t.Fatal(err)
	}
	f.Set(servertest.Hooks{Members: func() error { return fmt.Errorf("test: %w", storage.ErrUnavailable) }})
	ack, _ := expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "2", "two"))
	var nt *starlingv1.Notify
	for nt == nil {
		nt = member.Next(t).GetNotify()
	}
	if nt.GetLatestSeq() != ack.GetSeq() {
		t.Fatalf("notify %v, want latest %d", nt, ack.GetSeq())
	}
	f.Set(servertest.Hooks{})
	if got := seqs(syncAll(t, member, g.GetConversationId(), 2)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("sync after the notify: %v", got)
	}
}

// One send that cannot be stored fails alone; the others of its batch are
// committed and answered.
func testOneFailingSend(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	h := newHold()
	f.Set(servertest.Hooks{BeforeAppend: func(msgs []storage.NewMessage) error {
		h.wait() // the first batch waits, so the rest queue up behind it
		for _, m := range msgs {
			if m.ClientMsgID == "poison" {
				return errors.New("test: this message cannot be stored")
			}
		}
		return nil
	}})
	var refs []uint64
	for _, id := range []string{"m0", "m1", "m2", "poison", "m3", "m4"} {
		refs = append(refs, alice.Text(t, bobU.ID, "", id, id))
	}
	// The Pong proves every Send before it was handed to the pipeline.
	ping := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := alice.Next(t); f.GetRef() != ping; f = alice.Next(t) {
	}
	h.held(t)
	h.release()
	var acked []int64
	for i, r := range refs {
		if i == 3 {
			if e := expectError(t, alice, r, codes.Internal); e.GetMessage() != apierr.Internal.Message {
				t.Fatalf("poison refused with %q", e.GetMessage())
			}
			continue
		}
		ack, _ := expectAck(t, alice, r)
		acked = append(acked, ack.GetSeq())
	}
	if !slices.Equal(acked, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("acked seqs %v, want 1-5", acked)
	}
	wantSeqs(t, pushed(t, bob, 5), 1, 5)
	if n := f.Calls("AppendMessages"); n < 3 {
		t.Fatalf("%d commits; the failing batch was not retried send by send", n)
	}
}

// A graceful stop commits and answers every send it had taken before it
// says goodbye, and refuses new streams.
func testShutdownAnswers(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	h := newHold()
	f.Set(servertest.Hooks{BeforeAppend: func([]storage.NewMessage) error { h.wait(); return nil }})
	var refs []uint64
	for i := range 5 {
		refs = append(refs, alice.Text(t, bobU.ID, "", fmt.Sprintf("s%d", i), "in flight at shutdown"))
	}
	ping := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	for f := alice.Next(t); f.GetRef() != ping; f = alice.Next(t) {
	}
	h.held(t)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.Stop()
	}()
	// Once the node reports NOT_SERVING it is shutting down; only then does
	// the commit go on.
	cc, err := grpc.NewClient(srv.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	for deadline := time.Now().Add(servertest.Timeout); ; {
		res, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never reported NOT_SERVING")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.release()
	rest, _ := alice.End(t)
	var acks []int64
	for _, f := range rest {
		if a := f.GetSendAck(); a != nil {
			acks = append(acks, a.GetSeq())
		}
	}
	if !slices.Equal(acks, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("SendAcks before the stream ended: %v, want 1-5 (frames %v)", acks, rest)
	}
	if last := rest[len(rest)-1].GetDisconnect(); last.GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN || !last.GetReconnect() {
		t.Fatalf("last frame %v, want Disconnect SHUTDOWN", rest[len(rest)-1])
	}
	<-stopped
	if len(refs) != len(acks) {
		t.Fatalf("%d sends, %d answered", len(refs), len(acks))
	}
}

// The rate limit is checked before anything is read for the send.
func testRateLimitFirst(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	ownerU, memberU := srv.NewUser(t, "owner"), srv.NewUser(t, "member")
	owner := connect(t, srv, ownerU, "phone")
	g := newGroup(t, srv, owner, memberU)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "1", "one"))
	reads := f.Calls("ListMembers") + f.Calls("GetMembership")
	e := expectError(t, owner, owner.Text(t, "", g.GetGroupId(), "2", "too fast"), codes.ResourceExhausted)
	if e.GetMessage() != apierr.RateLimited.Message {
		t.Fatalf("refused with %q", e.GetMessage())
	}
	if now := f.Calls("ListMembers") + f.Calls("GetMembership"); now != reads {
		t.Fatalf("a rate-limited send read membership %d times", now-reads)
	}
}

// A busy group costs no membership read per message: its members are read
// once per membership change, for both the send check and the fan-out.
func testMemberCache(t *testing.T, srv *servertest.Server, f *servertest.Faults) {
	ownerU, aU, bU := srv.NewUser(t, "owner"), srv.NewUser(t, "amy"), srv.NewUser(t, "ben")
	owner, a := connect(t, srv, ownerU, "phone"), connect(t, srv, aU, "phone")
	g := newGroup(t, srv, owner, aU, bU)
	for i := range 20 {
		expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), fmt.Sprint(i), "busy"))
	}
	pushed(t, a, 20)
	if n := f.Calls("ListMembers") + f.Calls("GetMembership") + f.Calls("MembersAt"); n > 2 {
		t.Fatalf("20 group sends made %d membership reads", n)
	}
	// A change is seen at once: the member who left is refused and not pushed.
	leave(t, srv, a, g)
	expectError(t, a, a.Text(t, "", g.GetGroupId(), "x", "still here?"), codes.PermissionDenied)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "after", "after a left"))
	a.Quiet(t, 100*time.Millisecond)
}

// Status messages are the table's fixed texts: nothing of the database's,
// nothing a client sent.
func testFixedErrorTexts(t *testing.T, srv *servertest.Server, _ *servertest.Faults) {
	ownerU, aU, bU := srv.NewUser(t, "owner"), srv.NewUser(t, "amy"), srv.NewUser(t, "ben")
	owner := connect(t, srv, ownerU, "phone")
	g := newGroup(t, srv, owner, aU) // full: 2 members
	_, err := groups(t, srv).AddMembers(servertest.WithToken(t.Context(), owner.token), &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: []string{bU.ID}})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != apierr.GroupFull.Message {
		t.Fatalf("group full: %v %q", st.Code(), st.Message())
	}
	long := "c2c:" + ownerU.ID + ":" + strings.Repeat("z", 200<<10)
	ref := owner.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: long}}})
	if e := expectError(t, owner, ref, codes.InvalidArgument); e.GetMessage() != apierr.BadConversationID.Message {
		t.Fatalf("long id refused with %.100q", e.GetMessage())
	}
	ref = owner.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: storage.C2CConversationID(ownerU.ID, "unobody")}}})
	expectError(t, owner, ref, codes.NotFound)
	_, err = chatClient(t, srv).GetHistory(servertest.WithToken(context.Background(), owner.token), &starlingv1.GetHistoryRequest{ConversationId: "grp:" + g.GetGroupId() + "x"})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != apierr.NotMember.Message {
		t.Fatalf("foreign group: %v %q", st.Code(), st.Message())
	}
}

// A device that stops reading is not waited for: once its stream ends
// (idle here), a writer still blocked on its flow-control window past the
// write timeout has its connection closed, so no goroutine of the stream
// outlives the handler.
func TestBlockedWriterIsCut(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		// Bob's stream is left idle after 3 s. Alice's stream lives under
		// the same rule while she sends, so the interval must outlast her
		// slowest SendAck on a loaded machine (a shorter one cut her).
		c.HeartbeatInterval = time.Second
		c.WriteTimeout = 200 * time.Millisecond
		c.Window = 50
	}))
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	bobToken := srv.Login(t, bobU, "phone")

	// Bob's connection has a fixed 64 KiB window and bob never reads, so
	// the server's writer blocks after the first frames.
	cc, err := grpc.NewClient(srv.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(servertest.WithToken(context.Background(), bobToken))
	defer cancel()
	bob, err := starlingv1.NewChatServiceClient(cc).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Bob is online (his Welcome came) before alice sends, so her messages
	// are pushed to him; from now on he reads nothing.
	if f, err := bob.Recv(); err != nil || f.GetWelcome() == nil {
		t.Fatalf("bob's first frame: %v %v", f, err)
	}
	big := strings.Repeat("x", 60<<10)
	for i := range 20 {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint(i), big))
	}
	waitCtx, stop := context.WithTimeout(t.Context(), servertest.Timeout)
	defer stop()
	// The stream was open (bob got his Welcome), so the connection was
	// READY; on a slow machine it may have been cut already.
	if cc.GetState() == connectivity.Ready && !cc.WaitForStateChange(waitCtx, connectivity.Ready) {
		t.Fatal("connection still READY: the blocked writer was not cut")
	}
}
