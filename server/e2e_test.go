package server_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// e2eCase is one end-to-end scenario, run on every backend.
type e2eCase struct {
	name string
	opts []servertest.Option
	run  func(t *testing.T, srv *servertest.Server)
}

// TestEndToEnd runs every scenario against a real server over a real
// connection, once per storage backend.
func TestEndToEnd(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range e2eCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					srv := servertest.Start(t, append([]servertest.Option{servertest.WithStore(b.New(t))}, c.opts...)...)
					c.run(t, srv)
				})
			}
		})
	}
}

var e2eCases = []e2eCase{
	{name: "c2c online", run: testC2COnline},
	{name: "group online fan-out", run: testGroupOnline},
	{name: "offline then reconnect", run: testOfflineReconnect},
	{name: "multi-device fan-out", run: testMultiDevice},
	{name: "dedup by client_msg_id", run: testDedup},
	{name: "concurrent group senders", run: testConcurrentGroupSenders},
	{name: "bad tokens", run: testBadTokens},
	{name: "frames before auth", run: testFramesBeforeAuth},
	{name: "auth frame", run: testAuthFrame},
	{name: "no impersonation", run: testNoImpersonation},
	{name: "non-member refused", run: testNonMember},
	{name: "oversized content", run: testOversizedContent},
	{name: "bad frames", run: testBadFrames},
	{name: "restart keeps acked", run: testRestart},
	{name: "history paging", run: testHistoryPaging},
	{name: "logout frame", run: testLogoutFrame},
	{name: "logout unary", run: testLogoutUnary},
	{name: "window then notify and sync", run: testWindowNotify, opts: []servertest.Option{servertest.WithConfig(func(c *server.Config) { c.Window = 4 })}},
	{name: "leave group", run: testLeaveGroup},
	{name: "notify for what the device has", run: testNotifyAlreadyHeld},
	{name: "device replaced", run: testReplaced},
	{name: "rate limit", run: testRateLimit, opts: []servertest.Option{servertest.WithConfig(func(c *server.Config) { c.SendRate, c.SendBurst = 1, 3 })}},
}

// device is a logged-in user's device with an open stream.
type device struct {
	user  servertest.User
	token string
	*servertest.Stream
}

func connect(t *testing.T, srv *servertest.Server, u servertest.User, dev string) device {
	t.Helper()
	tok := srv.Login(t, u, dev)
	return device{user: u, token: tok, Stream: srv.OpenStream(t, tok)}
}

// expectAck reads frames until the SendAck answering ref and returns it;
// other frames are returned too, in order.
func expectAck(t *testing.T, d device, ref uint64) (*starlingv1.SendAck, []*starlingv1.StreamResponse) {
	t.Helper()
	var others []*starlingv1.StreamResponse
	for {
		f := d.Next(t)
		if f.GetRef() == ref {
			if e := f.GetError(); e != nil {
				t.Fatalf("send %d refused: %v %s", ref, codes.Code(e.GetCode()), e.GetMessage())
			}
			if f.GetSendAck() == nil {
				t.Fatalf("answer to %d is %v, want SendAck", ref, f)
			}
			return f.GetSendAck(), others
		}
		others = append(others, f)
	}
}

// expectError reads frames until the Error answering ref.
func expectError(t *testing.T, d device, ref uint64, code codes.Code) *starlingv1.Error {
	t.Helper()
	for {
		f := d.Next(t)
		if f.GetRef() != ref {
			continue
		}
		e := f.GetError()
		if e == nil {
			t.Fatalf("answer to %d is %v, want Error %v", ref, f, code)
		}
		if codes.Code(e.GetCode()) != code {
			t.Fatalf("error code %v (%s), want %v", codes.Code(e.GetCode()), e.GetMessage(), code)
		}
		if e.GetFatal() {
			t.Fatalf("error %q is fatal; the stream should stay open", e.GetMessage())
		}
		return e
	}
}

// pushed reads frames until n pushed messages arrived and returns them,
// acking each one.
func pushed(t *testing.T, d device, n int) []*starlingv1.Message {
	t.Helper()
	var got []*starlingv1.Message
	for len(got) < n {
		f := d.Next(t)
		if p := f.GetPush(); p != nil {
			for _, m := range p.GetMessages() {
				got = append(got, m)
				d.Ack(t, m.GetConversationId(), m.GetSeq())
			}
		}
	}
	return got
}

// syncAll pulls conv after seq to the end and returns the messages.
func syncAll(t *testing.T, d device, conv string, after int64) []*starlingv1.Message {
	t.Helper()
	var got []*starlingv1.Message
	for {
		ref := d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: conv, AfterSeq: after, Limit: 3}}})
		var b *starlingv1.SyncBatch
		for b == nil {
			f := d.Next(t)
			if f.GetRef() == ref {
				if f.GetError() != nil {
					t.Fatalf("sync refused: %v", f.GetError())
				}
				b = f.GetSyncBatch()
			}
		}
		got = append(got, b.GetMessages()...)
		if n := len(b.GetMessages()); n > 0 {
			after = b.GetMessages()[n-1].GetSeq()
			d.Ack(t, conv, after)
		}
		if !b.GetHasMore() {
			return got
		}
	}
}

func texts(ms []*starlingv1.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.GetContent().GetText()
	}
	return out
}

func seqs(ms []*starlingv1.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.GetSeq()
	}
	return out
}

func wantSeqs(t *testing.T, ms []*starlingv1.Message, from, to int64) {
	t.Helper()
	var want []int64
	for s := from; s <= to; s++ {
		want = append(want, s)
	}
	if got := seqs(ms); !slices.Equal(got, want) {
		t.Fatalf("seqs %v, want %v", got, want)
	}
}

func newGroup(t *testing.T, srv *servertest.Server, owner device, members ...servertest.User) *starlingv1.Group {
	t.Helper()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	res, err := starlingv1.NewGroupServiceClient(srv.Dial(t)).CreateGroup(servertest.WithToken(t.Context(), owner.token), &starlingv1.CreateGroupRequest{Name: "team", MemberIds: ids})
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	return res.GetGroup()
}

// storeGroup makes a group through the store, as groups were made before
// CreateGroup recorded the creation: its conversation starts empty, for
// tests of a group's first message.
func storeGroup(t *testing.T, srv *servertest.Server, owner servertest.User, members ...servertest.User) *starlingv1.Group {
	t.Helper()
	id := idgen.Random("g")
	ids := []string{owner.ID}
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	if err := srv.Store().CreateGroup(t.Context(), storage.Group{ID: id, Name: "team", OwnerID: owner.ID, CreatedAt: time.Now()}, ids, 100); err != nil {
		t.Fatal(err)
	}
	return &starlingv1.Group{GroupId: id, ConversationId: storage.GroupConversationID(id), Name: "team", OwnerId: owner.ID}
}

// readCreation reads, on devices of members that were online when the
// group was created, its creation: the system message at seq 1 and the
// creation event of the user's stream, acking both.
func readCreation(t *testing.T, devs ...device) {
	t.Helper()
	for _, d := range devs {
		var msg, event bool
		for !msg || !event {
			f := d.Next(t)
			for _, m := range f.GetPush().GetMessages() {
				if m.GetSeq() != 1 || m.GetSenderId() != "" {
					t.Fatalf("%s: pushed %v before the creation", d.user.Username, m)
				}
				d.Ack(t, m.GetConversationId(), 1)
				msg = true
			}
			if ev := f.GetEvent(); ev.GetGroupChanged().GetChange().GetKind() == starlingv1.GroupChange_KIND_CREATED {
				d.Ack(t, ev.GetConversationId(), ev.GetSeq())
				event = true
			}
		}
	}
}

func testC2COnline(t *testing.T, srv *servertest.Server) {
	alice, bob := connect(t, srv, srv.NewUser(t, "alice"), "phone"), connect(t, srv, srv.NewUser(t, "bob"), "phone")
	before := time.Now()
	ack, _ := expectAck(t, alice, alice.Text(t, bob.user.ID, "", "m1", "hello bob"))
	conv := storage.C2CConversationID(alice.user.ID, bob.user.ID)
	if ack.GetConversationId() != conv || ack.GetSeq() != 1 || ack.GetMsgId() == 0 || ack.GetDuplicate() {
		t.Fatalf("ack %v", ack)
	}
	if st := ack.GetServerTime().AsTime(); st.Before(before.Add(-time.Second)) || st.After(time.Now().Add(time.Second)) {
		t.Fatalf("server time %v is not now", st)
	}
	got := pushed(t, bob, 1)[0]
	if got.GetContent().GetText() != "hello bob" || got.GetSenderId() != alice.user.ID || got.GetSenderDeviceId() != "phone" ||
		got.GetSeq() != 1 || got.GetMsgId() != ack.GetMsgId() || got.GetConversationId() != conv || got.GetClientMsgId() != "m1" {
		t.Fatalf("pushed %v", got)
	}
	// And back.
	ack2, _ := expectAck(t, bob, bob.Text(t, alice.user.ID, "", "r1", "hi alice"))
	if ack2.GetSeq() != 2 || ack2.GetConversationId() != conv {
		t.Fatalf("reply ack %v", ack2)
	}
	if m := pushed(t, alice, 1)[0]; m.GetSeq() != 2 || m.GetContent().GetText() != "hi alice" {
		t.Fatalf("alice got %v", m)
	}
	// Ping/Pong with ref echo.
	ref := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	if f := alice.Next(t); f.GetRef() != ref || f.GetPong() == nil {
		t.Fatalf("ping answered with %v", f)
	}
}

func testGroupOnline(t *testing.T, srv *servertest.Server) {
	const n = 12
	owner := connect(t, srv, srv.NewUser(t, "owner"), "phone")
	var members []device
	var users []servertest.User
	for i := range n {
		u := srv.NewUser(t, fmt.Sprintf("member%02d", i))
		users = append(users, u)
		members = append(members, connect(t, srv, u, "phone"))
	}
	g := newGroup(t, srv, owner, users...)
	if g.GetMemberCount() != n+1 || g.GetConversationId() != "grp:"+g.GetGroupId() {
		t.Fatalf("group %v", g)
	}
	readCreation(t, append(members, owner)...)
	for i := range 3 {
		ack, _ := expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), fmt.Sprintf("g%d", i), fmt.Sprintf("hello %d", i)))
		if ack.GetSeq() != int64(i+2) || ack.GetConversationId() != g.GetConversationId() {
			t.Fatalf("ack %v", ack)
		}
	}
	for _, m := range members {
		got := pushed(t, m, 3)
		wantSeqs(t, got, 2, 4)
		if !slices.Equal(texts(got), []string{"hello 0", "hello 1", "hello 2"}) || got[0].GetSenderId() != owner.user.ID {
			t.Fatalf("member got %v", got)
		}
	}
	// A member answers; the owner is pushed it.
	expectAck(t, members[0], members[0].Text(t, "", g.GetGroupId(), "x", "reply"))
	if m := pushed(t, owner, 1)[0]; m.GetSeq() != 5 || m.GetSenderId() != members[0].user.ID {
		t.Fatalf("owner got %v", m)
	}
}

func testOfflineReconnect(t *testing.T, srv *servertest.Server) {
	aliceU, bobU, carolU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	alice := connect(t, srv, aliceU, "phone")
	bob := connect(t, srv, bobU, "phone")
	g := newGroup(t, srv, alice, bobU, carolU)
	readCreation(t, alice, bob)
	c2c := storage.C2CConversationID(aliceU.ID, bobU.ID)

	// Bob is online for the first message of each conversation and acks it.
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "c0", "c2c 0"))
	expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), "g0", "grp 0"))
	pushed(t, bob, 2)
	time.Sleep(150 * time.Millisecond) // let the acked cursors be written
	bob.Close()

	for i := 1; i <= 7; i++ {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("c%d", i), fmt.Sprintf("c2c %d", i)))
		expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), fmt.Sprintf("g%d", i), fmt.Sprintf("grp %d", i)))
	}

	bob = device{user: bobU, token: bob.token, Stream: srv.OpenStream(t, bob.token)}
	notified := map[string]*starlingv1.Notify{}
	for len(notified) < 2 {
		f := bob.Next(t)
		if nt := f.GetNotify(); nt != nil {
			notified[nt.GetConversationId()] = nt
		} else {
			t.Fatalf("before the catch-up Notifies got %v", f)
		}
	}
	for conv, nt := range notified {
		// The group's seq 1 is its creation.
		if conv == c2c && (nt.GetLatestSeq() != 8 || nt.GetDeliveredSeq() != 1) ||
			conv != c2c && (nt.GetLatestSeq() != 9 || nt.GetDeliveredSeq() != 2) {
			t.Fatalf("notify for %s: %v, want latest 8 delivered 1 (group: 9 and 2)", conv, nt)
		}
	}
	for _, conv := range []string{c2c, g.GetConversationId()} {
		got := syncAll(t, bob, conv, notified[conv].GetDeliveredSeq())
		wantSeqs(t, got, notified[conv].GetDeliveredSeq()+1, notified[conv].GetLatestSeq())
	}
	// Caught up: new messages are pushed again, and nothing is repeated.
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "c8", "c2c 8"))
	if m := pushed(t, bob, 1)[0]; m.GetSeq() != 9 || m.GetConversationId() != c2c {
		t.Fatalf("after catch-up got %v", m)
	}
	bob.Quiet(t, 100*time.Millisecond)

	// Reconnecting again after acking everything: nothing to catch up.
	time.Sleep(150 * time.Millisecond)
	bob.Close()
	bob2 := srv.OpenStream(t, bob.token)
	bob2.Quiet(t, 200*time.Millisecond)
}

func testMultiDevice(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	phone, laptop := connect(t, srv, aliceU, "phone"), connect(t, srv, aliceU, "laptop")
	bobPhone, bobTablet := connect(t, srv, bobU, "phone"), connect(t, srv, bobU, "tablet")

	ack, _ := expectAck(t, phone, phone.Text(t, bobU.ID, "", "m1", "to bob"))
	for _, d := range []device{laptop, bobPhone, bobTablet} {
		m := pushed(t, d, 1)[0]
		if m.GetMsgId() != ack.GetMsgId() || m.GetSenderDeviceId() != "phone" {
			t.Fatalf("%s/%s got %v", d.user.Username, d.Welcome.GetDeviceId(), m)
		}
	}
	// The sending device is not pushed its own message: its SendAck is enough.
	// (Bob's acks may come back to it as a delivered Receipt.)
	phone.QuietBut(t, 100*time.Millisecond, func(f *starlingv1.StreamResponse) bool { return f.GetReceipt() != nil })
	// Its next push follows on without a gap.
	expectAck(t, bobTablet, bobTablet.Text(t, aliceU.ID, "", "r1", "to alice"))
	if m := pushed(t, phone, 1)[0]; m.GetSeq() != 2 {
		t.Fatalf("phone got %v", m)
	}
}

func testDedup(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	first, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "same-id", "once"))
	again, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "same-id", "once"))
	if !again.GetDuplicate() || again.GetMsgId() != first.GetMsgId() || again.GetSeq() != first.GetSeq() {
		t.Fatalf("resend ack %v, first %v", again, first)
	}
	pushed(t, bob, 1)
	bob.Quiet(t, 100*time.Millisecond) // the resend is not pushed again

	// Concurrently, from two devices of the same user and many goroutines.
	laptop := connect(t, srv, aliceU, "laptop")
	const n = 20
	var wg sync.WaitGroup
	acks := make(chan *starlingv1.SendAck, 2*n)
	for _, d := range []device{alice, laptop} {
		refs := make([]uint64, n)
		for i := range n {
			refs[i] = d.Text(t, bobU.ID, "", "concurrent-id", "racing")
		}
		wg.Go(func() {
			for range n {
				for {
					f := d.Next(t)
					if a := f.GetSendAck(); a != nil {
						acks <- a
						break
					}
				}
			}
		})
	}
	wg.Wait()
	close(acks)
	var ids []int64
	fresh := 0
	for a := range acks {
		ids = append(ids, a.GetMsgId())
		if !a.GetDuplicate() {
			fresh++
		}
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != 1 || fresh != 1 {
		t.Fatalf("concurrent resends gave msg ids %v with %d fresh, want one id, one fresh", slices.Compact(ids), fresh)
	}
	latest, err := srv.Store().LatestSeq(t.Context(), storage.C2CConversationID(aliceU.ID, bobU.ID))
	if err != nil || latest != 2 {
		t.Fatalf("latest seq %d (%v), want 2: one message per client_msg_id", latest, err)
	}
}

func testConcurrentGroupSenders(t *testing.T, srv *servertest.Server) {
	const senders, each = 6, 15
	var devs []device
	var users []servertest.User
	for i := range senders {
		u := srv.NewUser(t, fmt.Sprintf("sender%d", i))
		users = append(users, u)
		devs = append(devs, connect(t, srv, u, "phone"))
	}
	g := newGroup(t, srv, devs[0], users[1:]...)
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	for i, d := range devs {
		refs := make([]uint64, each)
		for j := range each {
			refs[j] = d.Text(t, "", g.GetGroupId(), fmt.Sprintf("s%d-%d", i, j), "x")
		}
		wg.Go(func() {
			for _, ref := range refs {
				for {
					f := d.Next(t)
					if f.GetRef() == ref {
						if f.GetSendAck() == nil {
							t.Errorf("send refused: %v", f)
							return
						}
						mu.Lock()
						got = append(got, f.GetSendAck().GetSeq())
						mu.Unlock()
						break
					}
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, s := range got {
		if s != int64(i+2) { // seq 1 is the creation
			t.Fatalf("seqs %v are not 2..%d without gaps or repeats", got, senders*each+1)
		}
	}
	if len(got) != senders*each {
		t.Fatalf("%d acks, want %d", len(got), senders*each)
	}
}

func testBadTokens(t *testing.T, srv *servertest.Server) {
	u := srv.NewUser(t, "alice")
	good := srv.Login(t, u, "phone")
	groups := starlingv1.NewGroupServiceClient(srv.Dial(t))
	expired := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.TokenTTL = time.Millisecond }))
	expiredTok := expired.Login(t, expired.NewUser(t, "alice"), "phone")
	time.Sleep(1100 * time.Millisecond) // JWT expiry has one-second resolution
	// A token of another server (other secret) is garbled here as well.
	for name, tok := range map[string]string{
		"none":         "",
		"garbled":      "not-a-jwt",
		"tampered":     good[:len(good)-2] + "xx",
		"other secret": expiredTok,
	} {
		ctx := t.Context()
		if tok != "" {
			ctx = servertest.WithToken(ctx, tok)
		}
		_, err := groups.CreateGroup(ctx, &starlingv1.CreateGroupRequest{Name: "x"})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s token on unary: %v, want Unauthenticated", name, err)
		}
		if tok == "" {
			continue
		}
		st := srv.OpenRawStream(t, servertest.WithToken(t.Context(), tok))
		if _, err := st.End(t); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s token on stream: %v, want Unauthenticated", name, err)
		}
	}
	// Expired, on the server that issued it.
	_, err := starlingv1.NewGroupServiceClient(expired.Dial(t)).CreateGroup(servertest.WithToken(t.Context(), expiredTok), &starlingv1.CreateGroupRequest{Name: "x"})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "expired") {
		t.Errorf("expired token: %v, want Unauthenticated mentioning expiry", err)
	}
	// Wrong password.
	_, err = starlingv1.NewAuthServiceClient(srv.Dial(t)).Login(t.Context(), &starlingv1.LoginRequest{Username: "alice", Password: "wrong password", DeviceId: "phone"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong password: %v", err)
	}
	// The good token still works.
	if _, err := groups.CreateGroup(servertest.WithToken(t.Context(), good), &starlingv1.CreateGroupRequest{Name: "x"}); err != nil {
		t.Errorf("good token: %v", err)
	}
}

func testFramesBeforeAuth(t *testing.T, srv *servertest.Server) {
	bob := srv.NewUser(t, "bob")
	st := srv.OpenRawStream(t, t.Context())
	ref := st.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{
		To: &starlingv1.Send_UserId{UserId: bob.ID}, ClientMsgId: "x", Content: &starlingv1.Content{Text: "sneaky"},
	}}})
	rest, err := st.End(t)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Send before Auth ended the stream with %v, want Unauthenticated", err)
	}
	if len(rest) != 1 || rest[0].GetError() == nil || !rest[0].GetError().GetFatal() || rest[0].GetRef() != ref {
		t.Fatalf("frames before the end: %v, want one fatal Error answering ref %d", rest, ref)
	}
	if n, _ := srv.Store().ListConversations(t.Context(), bob.ID, "phone", false); len(n) != 0 {
		t.Fatalf("something was stored: %v", n)
	}
}

func testAuthFrame(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	bob := connect(t, srv, bobU, "phone")
	tok := srv.Login(t, aliceU, "web")

	st := srv.OpenRawStream(t, t.Context())
	ref := st.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Auth{Auth: &starlingv1.Auth{Token: tok, DeviceId: "web", ClientVersion: "test/1"}}})
	f := st.Next(t)
	w := f.GetWelcome()
	if w == nil || f.GetRef() != ref || w.GetUserId() != aliceU.ID || w.GetDeviceId() != "web" || w.GetHeartbeatInterval().AsDuration() <= 0 {
		t.Fatalf("answer to Auth: %v", f)
	}
	alice := device{user: aliceU, token: tok, Stream: st}
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "m", "via auth frame"))
	pushed(t, bob, 1)
	// A second Auth is refused without closing the stream.
	expectError(t, alice, alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Auth{Auth: &starlingv1.Auth{Token: tok}}}), codes.InvalidArgument)

	// An Auth frame naming another device than the token is refused.
	st2 := srv.OpenRawStream(t, t.Context())
	st2.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Auth{Auth: &starlingv1.Auth{Token: tok, DeviceId: "other"}}})
	if _, err := st2.End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("mismatched device: %v", err)
	}
	// A garbled token in the Auth frame.
	st3 := srv.OpenRawStream(t, t.Context())
	st3.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Auth{Auth: &starlingv1.Auth{Token: "garbage"}}})
	if _, err := st3.End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("garbled token in Auth frame: %v", err)
	}
}

func testNoImpersonation(t *testing.T, srv *servertest.Server) {
	aliceU, bobU, malloryU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "mallory")
	bob := connect(t, srv, bobU, "phone")
	mallory := connect(t, srv, malloryU, "phone")
	_ = aliceU
	// The Send frame has no sender field. Mallory appends one anyway, as
	// unknown fields of every number a "from" could plausibly have.
	send := &starlingv1.Send{To: &starlingv1.Send_UserId{UserId: bobU.ID}, ClientMsgId: "spoof", Content: &starlingv1.Content{Text: "I am alice"}}
	raw, err := proto.Marshal(send)
	if err != nil {
		t.Fatal(err)
	}
	for num := protowire.Number(5); num <= 20; num++ {
		raw = protowire.AppendTag(raw, num, protowire.BytesType)
		raw = protowire.AppendString(raw, aliceU.ID)
	}
	forged := new(starlingv1.Send)
	if err := proto.Unmarshal(raw, forged); err != nil {
		t.Fatal(err)
	}
	expectAck(t, mallory, mallory.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: forged}}))
	m := pushed(t, bob, 1)[0]
	if m.GetSenderId() != malloryU.ID || m.GetConversationId() != storage.C2CConversationID(malloryU.ID, bobU.ID) {
		t.Fatalf("message claims sender %s in %s; want mallory's own", m.GetSenderId(), m.GetConversationId())
	}
}

func testNonMember(t *testing.T, srv *servertest.Server) {
	ownerU, outsiderU := srv.NewUser(t, "owner"), srv.NewUser(t, "outsider")
	owner, outsider := connect(t, srv, ownerU, "phone"), connect(t, srv, outsiderU, "phone")
	g := newGroup(t, srv, owner)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "a", "secret"))

	expectError(t, outsider, outsider.Text(t, "", g.GetGroupId(), "b", "let me in"), codes.PermissionDenied)
	expectError(t, outsider, outsider.Text(t, "", "gdoesnotexist", "c", "hello?"), codes.NotFound)
	expectError(t, outsider, outsider.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: g.GetConversationId()}}}), codes.PermissionDenied)
	// Someone else's one-to-one conversation.
	other := storage.C2CConversationID(ownerU.ID, "uzzzzzzzzzzzzzzzz")
	expectError(t, outsider, outsider.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: other}}}), codes.PermissionDenied)

	ctx := servertest.WithToken(t.Context(), outsider.token)
	chat := starlingv1.NewChatServiceClient(srv.Dial(t))
	if _, err := chat.GetHistory(ctx, &starlingv1.GetHistoryRequest{ConversationId: g.GetConversationId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("history of a group by a non-member: %v", err)
	}
	if _, err := chat.GetHistory(ctx, &starlingv1.GetHistoryRequest{ConversationId: other}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("history of another c2c conversation: %v", err)
	}
	groups := starlingv1.NewGroupServiceClient(srv.Dial(t))
	if _, err := groups.GetGroup(ctx, &starlingv1.GetGroupRequest{GroupId: g.GetGroupId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("member list by a non-member: %v", err)
	}
	if _, err := groups.AddMembers(ctx, &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: []string{outsiderU.ID}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-member adding itself: %v", err)
	}
	for name, call := range map[string]func() error{
		"get": func() error {
			_, err := groups.GetGroup(ctx, &starlingv1.GetGroupRequest{GroupId: "gmissing"})
			return err
		},
		"add": func() error {
			_, err := groups.AddMembers(ctx, &starlingv1.AddMembersRequest{GroupId: "gmissing", UserIds: []string{ownerU.ID}})
			return err
		},
		"leave": func() error {
			_, err := groups.LeaveGroup(ctx, &starlingv1.LeaveGroupRequest{GroupId: "gmissing"})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.NotFound {
			t.Errorf("%s on a group that does not exist: %v, want NotFound", name, err)
		}
	}
	// Nothing the outsider tried was stored.
	if latest, _ := srv.Store().LatestSeq(t.Context(), g.GetConversationId()); latest != 2 {
		t.Fatalf("group latest seq %d, want 2 (the creation, the owner's message)", latest)
	}
}

func testOversizedContent(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	big := make([]byte, 65<<10)
	ref := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{
		To: &starlingv1.Send_UserId{UserId: bobU.ID}, ClientMsgId: "big", Content: &starlingv1.Content{Type: "file", Data: big},
	}}})
	e := expectError(t, alice, ref, codes.InvalidArgument)
	if !strings.Contains(e.GetMessage(), "limit") {
		t.Fatalf("error %q does not say what the limit is", e.GetMessage())
	}
	// The stream is still usable, and only the good message is stored.
	ack, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "small", "fits"))
	if ack.GetSeq() != 1 {
		t.Fatalf("ack %v, want seq 1", ack)
	}
	if m := pushed(t, bob, 1)[0]; m.GetContent().GetText() != "fits" {
		t.Fatalf("bob got %v", m)
	}
	// A frame past the gRPC message limit ends the stream with
	// ResourceExhausted rather than being half-read.
	huge := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{
		To: &starlingv1.Send_UserId{UserId: bobU.ID}, ClientMsgId: "huge", Content: &starlingv1.Content{Data: make([]byte, 300<<10)},
	}}})
	_ = huge
	if _, err := alice.End(t); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized frame: %v, want ResourceExhausted", err)
	}
	if latest, _ := srv.Store().LatestSeq(t.Context(), ack.GetConversationId()); latest != 1 {
		t.Fatalf("latest seq %d after refused sends, want 1", latest)
	}
}

func testBadFrames(t *testing.T, srv *servertest.Server) {
	aliceU := srv.NewUser(t, "alice")
	alice := connect(t, srv, aliceU, "phone")
	cases := map[string]*starlingv1.StreamRequest{
		"empty frame":        {},
		"send no recipient":  {Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{ClientMsgId: "x", Content: &starlingv1.Content{Text: "x"}}}},
		"send no msg id":     {Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{To: &starlingv1.Send_UserId{UserId: aliceU.ID}, Content: &starlingv1.Content{Text: "x"}}}},
		"send no content":    {Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{To: &starlingv1.Send_UserId{UserId: aliceU.ID}, ClientMsgId: "x"}}},
		"send long msg id":   {Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{To: &starlingv1.Send_UserId{UserId: aliceU.ID}, ClientMsgId: string(make([]byte, 65)), Content: &starlingv1.Content{Text: "x"}}}},
		"sync bad conv id":   {Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: "nonsense"}}},
		"sync negative":      {Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: storage.C2CConversationID(aliceU.ID, aliceU.ID), AfterSeq: -1}}},
		"sync limit too big": {Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: storage.C2CConversationID(aliceU.ID, aliceU.ID), Limit: 100000}}},
		"ack no conv":        {Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{Seq: 3}}},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			expectError(t, alice, alice.Send(t, f), codes.InvalidArgument)
		})
	}
	for name, c := range map[string]struct {
		to   string
		code codes.Code
	}{
		"unknown user":      {"unobody", codes.NotFound},
		"malformed user id": {"c2c:x", codes.InvalidArgument},
		"huge user id":      {strings.Repeat("u", 100<<10), codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			expectError(t, alice, alice.Text(t, c.to, "", "x-"+name[:4], "hello?"), c.code)
		})
	}
	// The stream survived all of them.
	ref := alice.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	if f := alice.Next(t); f.GetRef() != ref || f.GetPong() == nil {
		t.Fatalf("after bad frames, Ping answered with %v", f)
	}
}

func testRestart(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	bobTok := srv.Login(t, bobU, "phone")
	var acked []int64
	for i := range 10 {
		ack, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), fmt.Sprintf("before restart %d", i)))
		acked = append(acked, ack.GetMsgId())
	}
	srv.Restart(t)
	// Tokens survive (the secret is the same); every acked message is there.
	bob := device{user: bobU, token: bobTok, Stream: srv.OpenStream(t, bobTok)}
	nt := bob.Next(t).GetNotify()
	if nt == nil || nt.GetLatestSeq() != 10 {
		t.Fatalf("after restart bob was told %v, want Notify latest 10", nt)
	}
	got := syncAll(t, bob, nt.GetConversationId(), 0)
	wantSeqs(t, got, 1, 10)
	for i, m := range got {
		if m.GetMsgId() != acked[i] {
			t.Fatalf("message %d has id %d, acked %d", i, m.GetMsgId(), acked[i])
		}
	}
	// Seqs and dedup continue across the restart.
	alice2 := connect(t, srv, aliceU, "phone")
	if dup, _ := expectAck(t, alice2, alice2.Text(t, bobU.ID, "", "m3", "before restart 3")); !dup.GetDuplicate() || dup.GetSeq() != 4 {
		t.Fatalf("resend after restart: %v", dup)
	}
	if ack, _ := expectAck(t, alice2, alice2.Text(t, bobU.ID, "", "new", "after")); ack.GetSeq() != 11 {
		t.Fatalf("first send after restart: %v", ack)
	}
}

func testHistoryPaging(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	for i := 1; i <= 25; i++ {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), fmt.Sprintf("%d", i)))
	}
	chat := starlingv1.NewChatServiceClient(srv.Dial(t))
	ctx := servertest.WithToken(t.Context(), srv.Login(t, bobU, "web"))
	conv := storage.C2CConversationID(aliceU.ID, bobU.ID)
	var pages [][]int64
	before := int64(0)
	for {
		res, err := chat.GetHistory(ctx, &starlingv1.GetHistoryRequest{ConversationId: conv, BeforeSeq: before, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, seqs(res.GetMessages()))
		if !res.GetHasMore() {
			break
		}
		before = res.GetMessages()[0].GetSeq()
	}
	want := fmt.Sprint([][]int64{{16, 17, 18, 19, 20, 21, 22, 23, 24, 25}, {6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {1, 2, 3, 4, 5}})
	if fmt.Sprint(pages) != want {
		t.Fatalf("pages %v, want %s", pages, want)
	}
	for name, req := range map[string]*starlingv1.GetHistoryRequest{
		"bad conversation": {ConversationId: "c2c:onlyone"},
		"negative before":  {ConversationId: conv, BeforeSeq: -5},
		"limit too large":  {ConversationId: conv, Limit: 501},
	} {
		if _, err := chat.GetHistory(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// ListConversations shows it with its latest seq.
	res, err := chat.ListConversations(ctx, &starlingv1.ListConversationsRequest{})
	if err != nil || len(res.GetConversations()) != 1 || res.GetConversations()[0].GetLatestSeq() != 25 {
		t.Fatalf("conversations %v (%v)", res, err)
	}
}

func testLogoutFrame(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	phone, laptop := connect(t, srv, aliceU, "phone"), connect(t, srv, aliceU, "laptop")
	bob := connect(t, srv, bobU, "phone")
	phone.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Logout{Logout: &starlingv1.Logout{}}})
	assertLoggedOut(t, srv, phone, laptop, bob)
}

func testLogoutUnary(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	phone, laptop := connect(t, srv, aliceU, "phone"), connect(t, srv, aliceU, "laptop")
	bob := connect(t, srv, bobU, "phone")
	if _, err := starlingv1.NewAuthServiceClient(srv.Dial(t)).Logout(servertest.WithToken(t.Context(), phone.token), &starlingv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	assertLoggedOut(t, srv, phone, laptop, bob)
}

func assertLoggedOut(t *testing.T, srv *servertest.Server, gone, other, peer device) {
	t.Helper()
	rest, err := gone.End(t)
	if err != nil {
		t.Fatalf("logged-out stream ended with %v, want a clean end", err)
	}
	if len(rest) == 0 || rest[len(rest)-1].GetDisconnect().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT || rest[len(rest)-1].GetDisconnect().GetReconnect() {
		t.Fatalf("last frames %v, want Disconnect LOGGED_OUT without reconnect", rest)
	}
	// The token no longer works, on the stream or unary.
	if _, err := srv.OpenRawStream(t, servertest.WithToken(t.Context(), gone.token)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reconnect with the revoked token: %v", err)
	}
	if _, err := starlingv1.NewChatServiceClient(srv.Dial(t)).ListConversations(servertest.WithToken(t.Context(), gone.token), &starlingv1.ListConversationsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unary with the revoked token: %v", err)
	}
	// The user's other device is untouched: it still sends and receives.
	expectAck(t, other, other.Text(t, peer.user.ID, "", "after-logout", "still here"))
	pushed(t, peer, 1)
	expectAck(t, peer, peer.Text(t, other.user.ID, "", "reply", "hi"))
	if m := pushed(t, other, 1)[0]; m.GetContent().GetText() != "hi" {
		t.Fatalf("other device got %v", m)
	}
}

func testWindowNotify(t *testing.T, srv *servertest.Server) {
	// Window is 4: bob does not ack, so after 4 pushes he gets one Notify.
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	for i := 1; i <= 10; i++ {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), fmt.Sprintf("%d", i)))
	}
	var push []*starlingv1.Message
	var notify *starlingv1.Notify
	for notify == nil {
		f := bob.Next(t)
		if p := f.GetPush(); p != nil {
			push = append(push, p.GetMessages()...)
		}
		notify = f.GetNotify()
	}
	wantSeqs(t, push, 1, 4)
	if notify.GetLatestSeq() != 5 {
		t.Fatalf("notify %v, want latest 5 (the first message past the window)", notify)
	}
	bob.Quiet(t, 100*time.Millisecond) // one Notify, no more pushes
	// Bob pulls from where he is; pushing resumes once he caught up.
	got := syncAll(t, bob, notify.GetConversationId(), 4)
	wantSeqs(t, got, 5, 10)
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "m11", "11"))
	if m := pushed(t, bob, 1)[0]; m.GetSeq() != 11 {
		t.Fatalf("after sync got %v", m)
	}
}

func testLeaveGroup(t *testing.T, srv *servertest.Server) {
	ownerU, leaverU, laterU := srv.NewUser(t, "owner"), srv.NewUser(t, "leaver"), srv.NewUser(t, "later")
	owner, leaver := connect(t, srv, ownerU, "phone"), connect(t, srv, leaverU, "phone")
	g := newGroup(t, srv, owner, leaverU)
	readCreation(t, owner, leaver)
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "1", "one"))
	pushed(t, leaver, 1)
	groups := starlingv1.NewGroupServiceClient(srv.Dial(t))
	res0, err := groups.LeaveGroup(servertest.WithToken(t.Context(), leaver.token), &starlingv1.LeaveGroupRequest{GroupId: g.GetGroupId()})
	if err != nil || res0.GetChangeSeq() != 3 {
		t.Fatalf("leave: %v (%v), want the change at seq 3", res0, err)
	}
	// The leaver reads the system message of their leaving, and nothing
	// after; their stream has the leave as an event.
	if m := pushed(t, leaver, 1)[0]; m.GetSeq() != 3 || m.GetSenderId() != "" {
		t.Fatalf("leaver was pushed %v, want the leave at seq 3", m)
	}
	if l, _ := srv.Store().LatestSeq(t.Context(), storage.EventsConversationID(leaverU.ID)); l != 2 {
		t.Fatalf("leaver's stream ends at %d, want 2 (created, left)", l)
	}
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "2", "two"))
	leaver.Quiet(t, 150*time.Millisecond)
	expectError(t, leaver, leaver.Text(t, "", g.GetGroupId(), "3", "can I?"), codes.PermissionDenied)
	// Leaving twice is refused; history stops at the leave.
	if _, err := groups.LeaveGroup(servertest.WithToken(t.Context(), leaver.token), &starlingv1.LeaveGroupRequest{GroupId: g.GetGroupId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second leave: %v", err)
	}
	h, err := starlingv1.NewChatServiceClient(srv.Dial(t)).GetHistory(servertest.WithToken(t.Context(), leaver.token), &starlingv1.GetHistoryRequest{ConversationId: g.GetConversationId()})
	if err != nil || !slices.Equal(seqs(h.GetMessages()), []int64{1, 2, 3}) {
		t.Fatalf("history after leaving: %v (%v), want seqs 1 to 3", h, err)
	}
	// A member added later sees from its join on: the add first.
	later := connect(t, srv, laterU, "phone")
	res, err := groups.AddMembers(servertest.WithToken(t.Context(), owner.token), &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: []string{laterU.ID, leaverU.ID}})
	if err != nil || len(res.GetAddedUserIds()) != 2 || res.GetChangeSeq() != 5 {
		t.Fatalf("add members: %v (%v)", res, err)
	}
	expectAck(t, owner, owner.Text(t, "", g.GetGroupId(), "4", "three"))
	if got := seqs(pushed(t, later, 2)); !slices.Equal(got, []int64{5, 6}) {
		t.Fatalf("late joiner was pushed %v, want 5 and 6", got)
	}
	h, err = starlingv1.NewChatServiceClient(srv.Dial(t)).GetHistory(servertest.WithToken(t.Context(), later.token), &starlingv1.GetHistoryRequest{ConversationId: g.GetConversationId()})
	if err != nil || !slices.Equal(seqs(h.GetMessages()), []int64{5, 6}) {
		t.Fatalf("late joiner's history: %v (%v), want seqs 5 and 6", h, err)
	}
	// Unknown users cannot be added.
	if _, err := groups.AddMembers(servertest.WithToken(t.Context(), owner.token), &starlingv1.AddMembersRequest{GroupId: g.GetGroupId(), UserIds: []string{"unobody"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("adding an unknown user: %v", err)
	}
}

func testReplaced(t *testing.T, srv *servertest.Server) {
	u := srv.NewUser(t, "alice")
	tok := srv.Login(t, u, "phone")
	first := srv.OpenStream(t, tok)
	second := srv.OpenStream(t, tok)
	rest, err := first.End(t)
	if err != nil || len(rest) == 0 || rest[len(rest)-1].GetDisconnect().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED {
		t.Fatalf("replaced stream: %v, %v", rest, err)
	}
	ref := second.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	if f := second.Next(t); f.GetRef() != ref || f.GetPong() == nil {
		t.Fatalf("replacing stream answered %v", f)
	}
}

func testRateLimit(t *testing.T, srv *servertest.Server) {
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	var refs []uint64
	for i := range 6 {
		refs = append(refs, alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), "spam"))
	}
	acked, limited := 0, 0
	for range refs {
		f := alice.Next(t)
		switch {
		case f.GetSendAck() != nil:
			acked++
		case codes.Code(f.GetError().GetCode()) == codes.ResourceExhausted:
			limited++
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	if acked != 3 || limited != 3 {
		t.Fatalf("%d acked, %d limited; want 3 and 3 (burst 3)", acked, limited)
	}
}

func testNotifyAlreadyHeld(t *testing.T, srv *servertest.Server) {
	// Bob shows three messages but his acks die with his stream.
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	bob := connect(t, srv, bobU, "phone")
	for i := 1; i <= 3; i++ {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprintf("m%d", i), "x"))
	}
	for got := 0; got < 3; {
		if p := bob.Next(t).GetPush(); p != nil {
			got += len(p.GetMessages())
		}
	}
	bob.Close()
	bob = device{user: bobU, token: bob.token, Stream: srv.OpenStream(t, bob.token)}
	nt := bob.Next(t).GetNotify()
	if nt.GetLatestSeq() != 3 || nt.GetDeliveredSeq() != 0 {
		t.Fatalf("catch-up %v, want latest 3 delivered 0", nt)
	}
	// He has all three: one Sync after his last comes back empty and
	// resumes pushes.
	if got := syncAll(t, bob, nt.GetConversationId(), 3); len(got) != 0 {
		t.Fatalf("sync after 3 returned %v", seqs(got))
	}
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "m4", "pushed again"))
	if m := pushed(t, bob, 1)[0]; m.GetSeq() != 4 {
		t.Fatalf("got %v, want seq 4 pushed", m)
	}
}
