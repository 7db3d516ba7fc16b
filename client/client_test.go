package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

func TestDirectMessage(t *testing.T) {
	srv := servertest.Start(t)
	aliceID, bobID := register(t, srv, "alice"), register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	bob := open(t, login(t, srv, "bob", "phone"))

	ack := send(t, alice, client.ToUser(bobID), "hi bob")
	if ack.GetSeq() != 1 || ack.GetMsgId() == 0 || ack.GetServerTime() == nil || ack.GetDuplicate() {
		t.Fatalf("ack = %v", ack)
	}
	if want := client.DirectConversationID(aliceID, bobID); ack.GetConversationId() != want {
		t.Fatalf("conversation %q, want %q", ack.GetConversationId(), want)
	}

	got := receive(t, bob, 1)[0]
	if got.GetSenderId() != aliceID || got.GetMsgId() != ack.GetMsgId() || got.GetSeq() != 1 || got.GetContent().GetText() != "hi bob" {
		t.Fatalf("bob got %v", got)
	}
	// The sender's own list has its message too, built from the ack.
	own := receive(t, alice, 1)[0]
	if own.GetMsgId() != ack.GetMsgId() || own.GetSenderId() != aliceID || own.GetSenderDeviceId() != "phone" || own.GetContent().GetText() != "hi bob" {
		t.Fatalf("alice's echo %v", own)
	}

	send(t, bob, client.ToUser(aliceID), "hi alice")
	wantTexts(t, receive(t, alice, 1), "hi alice")
	wantTexts(t, receive(t, bob, 1), "hi alice")
	quiet(t, alice)
	quiet(t, bob)
}

func TestOwnMessagesReachOtherDevices(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	phone := open(t, login(t, srv, "alice", "phone"))
	laptop := open(t, login(t, srv, "alice", "laptop"))
	bob := open(t, login(t, srv, "bob", "phone"))

	for _, text := range []string{"one", "two", "three"} {
		send(t, phone, client.ToUser(bobID), text)
	}
	wantTexts(t, receive(t, phone, 3), "one", "two", "three")
	wantTexts(t, receive(t, laptop, 3), "one", "two", "three")
	wantTexts(t, receive(t, bob, 3), "one", "two", "three")
	quiet(t, phone)
}

func TestGroup(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID, carolID := register(t, srv, "bob"), register(t, srv, "carol")
	aliceC := login(t, srv, "alice", "phone")
	g, err := aliceC.CreateGroup(t.Context(), "friends", bobID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aliceC.AddMembers(t.Context(), g.GetGroupId(), carolID); err != nil {
		t.Fatal(err)
	}
	_, members, err := aliceC.GetGroup(t.Context(), g.GetGroupId())
	if err != nil || len(members) != 3 {
		t.Fatalf("members %v, %v", members, err)
	}
	alice := open(t, aliceC)
	bob := open(t, login(t, srv, "bob", "phone"))
	carol := open(t, login(t, srv, "carol", "phone"))

	send(t, alice, client.ToGroup(g.GetGroupId()), "hello all")
	send(t, bob, client.ToGroup(g.GetGroupId()), "hi alice")
	for _, s := range []*client.Session{alice, bob, carol} {
		n := 4
		if s == carol {
			n = 3
		}
		got := receive(t, s, n)
		// Seq 1 records the creation, seq 2 carol's adding; carol reads the
		// adding as her first.
		if s != carol {
			if ch, ok := client.GroupChangeOf(got[0]); !ok || ch.GetKind() != starlingv1.GroupChange_KIND_CREATED || got[0].GetSeq() != 1 {
				t.Fatalf("first message %v, want the creation", got[0])
			}
			got = got[1:]
		}
		if ch, ok := client.GroupChangeOf(got[0]); !ok || ch.GetKind() != starlingv1.GroupChange_KIND_MEMBERS_ADDED ||
			ch.GetActorId() != g.GetOwnerId() || !slices.Equal(ch.GetTargetIds(), []string{carolID}) {
			t.Fatalf("first message %v, want the system message of carol's adding", got[0])
		}
		wantTexts(t, got[1:], "hello all", "hi alice")
		if got[0].GetConversationId() != client.GroupConversationID(g.GetGroupId()) {
			t.Fatalf("conversation %q", got[0].GetConversationId())
		}
	}

	hist, err := aliceC.GetHistory(t.Context(), client.GroupConversationID(g.GetGroupId()), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantTexts(t, hist.GetMessages()[2:], "hello all", "hi alice")
}

// A device that was offline gets every message it missed, c2c and group,
// in order, once; then a later run with the same state store gets nothing
// twice.
func TestOfflineCatchUp(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	aliceC := login(t, srv, "alice", "phone")
	g, err := aliceC.CreateGroup(t.Context(), "g", bobID)
	if err != nil {
		t.Fatal(err)
	}
	alice := open(t, aliceC)
	bobC := login(t, srv, "bob", "phone")
	store := client.NewMemoryStore()

	bob := open(t, bobC, client.WithStateStore(store))
	if got := receive(t, bob, 1); got[0].GetSeq() != 1 || got[0].GetSenderId() != "" {
		t.Fatalf("bob got %v, want the group's creation", got)
	}
	send(t, alice, client.ToUser(bobID), "before")
	wantTexts(t, receive(t, bob, 1), "before")
	bob.Close()

	for _, text := range []string{"c1", "c2", "c3"} {
		send(t, alice, client.ToUser(bobID), text)
	}
	for _, text := range []string{"g1", "g2"} {
		send(t, alice, client.ToGroup(g.GetGroupId()), text)
	}

	bob = open(t, bobC, client.WithStateStore(store))
	got := receive(t, bob, 5)
	var direct, group []*starlingv1.Message
	for _, m := range got {
		if m.GetConversationId() == client.GroupConversationID(g.GetGroupId()) {
			group = append(group, m)
		} else {
			direct = append(direct, m)
		}
	}
	wantTexts(t, direct, "c1", "c2", "c3")
	wantTexts(t, group, "g1", "g2")
	quiet(t, bob)

	// Live delivery resumes after the catch-up.
	send(t, alice, client.ToUser(bobID), "live")
	wantTexts(t, receive(t, bob, 1), "live")
	bob.Close()

	// Same device, same store, nothing new: nothing shown again.
	bob = open(t, bobC, client.WithStateStore(store))
	quiet(t, bob)
	if last := store.Snapshot()[client.DirectConversationID(bobID, direct[0].GetSenderId())]; last != 5 {
		t.Fatalf("stored last = %d, want 5", last)
	}
}

// A new device with no local state starts from the server's cursor for it:
// never used before, so it gets the whole conversation.
func TestNewDeviceGetsEverything(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	for _, text := range []string{"a", "b", "c"} {
		send(t, alice, client.ToUser(bobID), text)
	}
	bob := open(t, login(t, srv, "bob", "tablet"))
	wantTexts(t, receive(t, bob, 3), "a", "b", "c")
	quiet(t, bob)
}

// A push lost on the way (dropped here by the tap) leaves a gap that the
// next push reveals; the session fills it with Sync.
func TestGapFilledBySync(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	tp := &tap{}
	bob := open(t, login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption())),
		client.WithResyncInterval(0))

	var dropped counter
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		for _, m := range f.GetPush().GetMessages() {
			if m.GetSeq() == 2 && dropped.inc() == 1 {
				return 0, nil
			}
		}
		return 1, nil
	})
	send(t, alice, client.ToUser(bobID), "one")
	wantTexts(t, receive(t, bob, 1), "one")
	send(t, alice, client.ToUser(bobID), "two") // lost
	send(t, alice, client.ToUser(bobID), "three")
	wantTexts(t, receive(t, bob, 2), "two", "three")
	quiet(t, bob)
	if dropped.n.Load() == 0 {
		t.Fatal("the tap dropped nothing")
	}
	// The gap's Sync starts after seq 1. (An earlier Sync after 0 is no
	// error: the list made at connect can see seq 1 before its push
	// arrives.)
	syncs := tp.sentFrames(isSync)
	if !slices.ContainsFunc(syncs, func(f *starlingv1.StreamRequest) bool { return f.GetSync().GetAfterSeq() == 1 }) {
		t.Fatalf("no Sync after seq 1 among %d: %v", len(syncs), syncs)
	}
}

// Every frame the server sends arrives twice: the app still sees each
// message once.
func TestDuplicatePushDropped(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	tp := &tap{}
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		if f.GetPush() != nil {
			return 2, nil
		}
		return 1, nil
	})
	bob := open(t, login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption())))
	for _, text := range []string{"x", "y", "z"} {
		send(t, alice, client.ToUser(bobID), text)
	}
	wantTexts(t, receive(t, bob, 3), "x", "y", "z")
	quiet(t, bob)
}

// The SendAck is lost and the server restarts: the session reconnects and
// resends the same client_msg_id, and the message is stored once.
func TestSendResendsAcrossRestart(t *testing.T) {
	srv := servertest.Start(t)
	aliceID := register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	tp := &tap{}
	var swallowed counter
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		if f.GetSendAck() != nil && swallowed.inc() == 1 {
			return 0, nil
		}
		return 1, nil
	})
	alice := open(t, login(t, srv, "alice", "phone", client.WithDialOptions(tp.dialOption())))

	type result struct {
		ack *starlingv1.SendAck
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		ack, err := alice.SendText(ctx, client.ToUser(bobID), "once")
		done <- result{ack, err}
	}()
	waitFor(t, "the first SendAck to be swallowed", func() bool { return swallowed.n.Load() >= 1 })
	srv.Restart(t)

	r := <-done
	if r.err != nil {
		t.Fatalf("send: %v", r.err)
	}
	if !r.ack.GetDuplicate() || r.ack.GetSeq() != 1 {
		t.Fatalf("ack after resend = %v, want the first send's (duplicate)", r.ack)
	}
	sends := tp.sentFrames(func(f *starlingv1.StreamRequest) bool { return f.GetSend() != nil })
	if len(sends) != 2 || sends[0].GetSend().GetClientMsgId() != sends[1].GetSend().GetClientMsgId() {
		t.Fatalf("sent %d Send frames: %v", len(sends), sends)
	}
	hist, err := login(t, srv, "bob", "phone").GetHistory(t.Context(), client.DirectConversationID(aliceID, bobID), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantTexts(t, hist.GetMessages(), "once")
	// The sender's own list has it exactly once too.
	wantTexts(t, receive(t, alice, 1), "once")
	quiet(t, alice)
}

// A Send made while the server is down completes once it is back.
func TestSendWhileServerDown(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	bob := open(t, login(t, srv, "bob", "phone"))
	srv.Stop()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := alice.SendText(ctx, client.ToUser(bobID), "later")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	srv.Restart(t)
	if err := <-done; err != nil {
		t.Fatalf("send: %v", err)
	}
	wantTexts(t, receive(t, bob, 1), "later")
	wantTexts(t, receive(t, alice, 1), "later")
}

func TestSendRefused(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))

	_, err := alice.SendText(t.Context(), client.ToUser("no-such-user"), "hello?")
	if c := status.Code(err); c != codes.NotFound && c != codes.InvalidArgument {
		t.Fatalf("send to unknown user: %v", err)
	}
	_, err = alice.SendText(t.Context(), client.ToGroup("no-such-group"), "hello?")
	if c := status.Code(err); c != codes.NotFound && c != codes.PermissionDenied {
		t.Fatalf("send to unknown group: %v", err)
	}
	// The session is still usable.
	send(t, alice, client.ToUser(bobID), "still here")
}

func TestLogoutEndsSession(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")

	t.Run("frame", func(t *testing.T) {
		c := login(t, srv, "alice", "phone")
		other := open(t, login(t, srv, "alice", "laptop"))
		s := open(t, c)
		if err := s.Logout(t.Context()); err != nil {
			t.Fatalf("logout: %v", err)
		}
		if err := s.Err(); !errors.Is(err, client.ErrLoggedOut) || !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("session error %v, want ErrLoggedOut", err)
		}
		if _, ok := <-s.Messages(); ok {
			t.Fatal("messages not closed")
		}
		// The token is revoked; the other device is untouched.
		if _, err := c.Open(t.Context()); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("open after logout: %v", err)
		}
		if other.Err() != nil {
			t.Fatalf("other device's session ended: %v", other.Err())
		}
	})
	t.Run("unary", func(t *testing.T) {
		c := login(t, srv, "alice", "phone")
		s := open(t, c)
		if err := c.Logout(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := sessionEnd(t, s); !errors.Is(err, client.ErrLoggedOut) {
			t.Fatalf("session error %v, want ErrLoggedOut", err)
		}
	})
}

func TestReplacedByNewerStream(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	c := login(t, srv, "alice", "phone")
	first := open(t, c)
	open(t, c)
	if err := sessionEnd(t, first); !errors.Is(err, client.ErrReplaced) {
		t.Fatalf("session error %v, want ErrReplaced", err)
	}
}

func TestBadToken(t *testing.T) {
	srv := servertest.Start(t)
	c, err := client.Dial(srv.Target(), client.WithToken("not-a-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Open(t.Context())
	if !errors.Is(err, client.ErrUnauthenticated) || status.Code(err) != codes.Unauthenticated {
		t.Fatalf("open with a bad token: %v", err)
	}
	_, err = c.GetUser(t.Context(), "whoever")
	wantCode(t, err, codes.Unauthenticated)

	c.SetToken("")
	_, err = c.Open(t.Context())
	if !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("open without a token: %v", err)
	}
}

func TestUnaryErrors(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	c, err := client.Dial(srv.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Register(t.Context(), "alice", password, "")
	wantCode(t, err, codes.AlreadyExists)
	_, err = c.Login(t.Context(), "alice", "wrong password", "phone")
	wantCode(t, err, codes.Unauthenticated)
	if _, err := c.Login(t.Context(), "alice", password, "phone"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetUserByName(t.Context(), "nobody")
	wantCode(t, err, codes.NotFound)
	_, _, err = c.GetGroup(t.Context(), "nope")
	if code := status.Code(err); code != codes.NotFound && code != codes.PermissionDenied {
		t.Fatalf("get unknown group: %v", err)
	}
}

// Close is idempotent, ends the session with ErrClosed, and Client.Close
// ends sessions still open.
func TestClose(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	c := login(t, srv, "alice", "phone")
	s := open(t, c)
	s.Close()
	s.Close()
	if !errors.Is(s.Err(), client.ErrClosed) {
		t.Fatalf("err %v", s.Err())
	}
	if _, err := s.SendText(t.Context(), client.ToUser("x"), "x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("send on closed session: %v", err)
	}
	s2 := open(t, c)
	c.Close()
	c.Close()
	if !errors.Is(s2.Err(), client.ErrClosed) {
		t.Fatalf("err %v", s2.Err())
	}
	if _, err := c.Open(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("open on closed client: %v", err)
	}
}

// WithConnected tells the app of the first stream and of every reconnect.
func TestWithConnectedReportsReconnects(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	type connect struct {
		device    string
		reconnect bool
	}
	connects := make(chan connect, 8)
	open(t, login(t, srv, "alice", "phone"), client.WithConnected(func(w *starlingv1.Welcome, reconnect bool) {
		connects <- connect{w.GetDeviceId(), reconnect}
	}))
	next := func() connect {
		t.Helper()
		select {
		case c := <-connects:
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("no connect reported")
			return connect{}
		}
	}
	if c := next(); c != (connect{"phone", false}) {
		t.Fatalf("first connect reported as %+v", c)
	}
	srv.Restart(t)
	if c := next(); c != (connect{"phone", true}) {
		t.Fatalf("reconnect reported as %+v", c)
	}
}
