package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// A device that does not read for a while fills the server's window: the
// server switches to Notify, the session pulls with Sync, and the app still
// gets everything once, in order.
func TestSlowReaderPullsAfterNotify(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.Window = 2 }))
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	tp := &tap{}
	bob := open(t, login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption())))

	const n = 30
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint("m", i))
		send(t, alice, client.ToUser(bobID), want[i])
	}
	wantTexts(t, receive(t, bob, n), want...)
	quiet(t, bob)
	if len(tp.sentFrames(isSync)) == 0 {
		t.Fatal("the window never filled: no Sync was sent")
	}
	// Pushing resumes once the device has caught up.
	send(t, alice, client.ToUser(bobID), "live")
	wantTexts(t, receive(t, bob, 1), "live")
}

// Many goroutines send through one session at once: distinct seqs, and the
// receiver sees them all in seq order.
func TestConcurrentSends(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	bob := open(t, login(t, srv, "bob", "phone"))

	const n = 20
	seqs := make(chan int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { seqs <- send(t, alice, client.ToUser(bobID), fmt.Sprint(i)).GetSeq() })
	}
	wg.Wait()
	close(seqs)
	seen := make(map[int64]bool)
	for s := range seqs {
		if seen[s] || s < 1 || s > n {
			t.Fatalf("seq %d repeated or out of range", s)
		}
		seen[s] = true
	}
	got := receive(t, bob, n)
	for i, m := range got {
		if m.GetSeq() != int64(i+1) {
			t.Fatalf("bob got seqs out of order: %v", texts(got))
		}
	}
	receive(t, alice, n) // its own, also in order (checked by seq below)
	quiet(t, bob)
}

// With heartbeats every 200 ms the server would close a silent stream in
// 600 ms; the session pings and keeps its one stream.
func TestHeartbeatKeepsStreamOpen(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.HeartbeatInterval = 200 * time.Millisecond }))
	register(t, srv, "alice")
	tp := &tap{}
	var welcomes counter
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		if f.GetWelcome() != nil {
			welcomes.inc()
		}
		return 1, nil
	})
	s := open(t, login(t, srv, "alice", "phone", client.WithDialOptions(tp.dialOption())))
	if got := s.Welcome().GetHeartbeatInterval().AsDuration(); got != 200*time.Millisecond {
		t.Fatalf("heartbeat interval %v", got)
	}
	// Twelve Pings span four of the server's idle timeouts (600 ms).
	waitFor(t, "12 Pings", func() bool { return len(tp.sentFrames(isPing)) >= 12 })
	if n := welcomes.n.Load(); n != 1 {
		t.Fatalf("%d streams opened, want 1 (the server dropped a silent one)", n)
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
}

// A stream on which nothing arrives for three heartbeat intervals is left
// and another opened, without waiting for TCP to notice: here the Pongs
// are lost on the way back, so the server, which hears the Pings, keeps
// the stream open and only the client can tell it is dead.
func TestSilentStreamIsLeft(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.HeartbeatInterval = 100 * time.Millisecond }))
	register(t, srv, "alice")
	tp := &tap{}
	var welcomes counter
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		if f.GetWelcome() != nil {
			welcomes.inc()
		}
		if f.GetPong() != nil {
			return 0, nil
		}
		return 1, nil
	})
	// The reason the client gives for leaving is in its log. (Under a heavy
	// load the server may also close a stream IDLE now and then; only the
	// client's own reason shows the rule.)
	logs := &syncBuffer{}
	s := open(t, login(t, srv, "alice", "phone", client.WithDialOptions(tp.dialOption()),
		client.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))))
	waitFor(t, "the client to leave a silent stream", func() bool {
		return strings.Contains(logs.String(), "no frame from server for 3 heartbeat intervals")
	})
	waitFor(t, "another stream", func() bool { return welcomes.n.Load() >= 2 })
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The app got messages but their PushAcks never reached the server (the
// stream died first). The next session, with the same state, shows nothing
// twice, and live pushes still flow even though the server's cursor for
// the device was behind.
func TestAcksLostAcrossSessions(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	tp := &tap{}
	tp.setDropSent(func(f *starlingv1.StreamRequest) bool { return f.GetPushAck() != nil })
	bobC := login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption()))
	store := client.NewMemoryStore()

	bob := open(t, bobC, client.WithStateStore(store), client.WithResyncInterval(0))
	send(t, alice, client.ToUser(bobID), "one")
	send(t, alice, client.ToUser(bobID), "two")
	wantTexts(t, receive(t, bob, 2), "one", "two")
	bob.Close()

	tp.setDropSent(nil)
	bob = open(t, bobC, client.WithStateStore(store), client.WithResyncInterval(0))
	quiet(t, bob)
	send(t, alice, client.ToUser(bobID), "three")
	wantTexts(t, receive(t, bob, 1), "three")
}

// A Notify that arrives while a Sync of its conversation is in flight
// needs another Sync once that Sync's answer is in, even an empty answer:
// the answer may have been read before the message the Notify announces,
// and the server, which sent the Notify, sends no other for it. Staged on
// a real server with a window of 1: bob holds everything of alice's
// conversation but his acks were lost, so his new stream gets a Notify he
// answers with an "I have everything" Sync; its empty answer is held back
// (the tap) until the Notify of alice's next message, which the full
// window (carol's push, unacknowledged) turns into a Notify, has reached
// him. Without the second Sync that message is stranded.
func TestNotifyDuringSyncSyncsAgain(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.Window = 1 }))
	register(t, srv, "alice")
	register(t, srv, "carol")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	carol := open(t, login(t, srv, "carol", "phone"))
	tp := &tap{}
	tp.setDropSent(func(f *starlingv1.StreamRequest) bool { return f.GetPushAck() != nil })
	bobC := login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption()))
	store := client.NewMemoryStore()

	bob := open(t, bobC, client.WithStateStore(store), client.WithResyncInterval(0))
	conv := send(t, alice, client.ToUser(bobID), "one").GetConversationId()
	send(t, alice, client.ToUser(bobID), "two")
	wantTexts(t, receive(t, bob, 2), "one", "two")
	bob.Close()

	tp.setHold(func(f *starlingv1.StreamResponse) bool {
		b := f.GetSyncBatch()
		return b.GetConversationId() == conv && len(b.GetMessages()) == 0
	}, func(f *starlingv1.StreamResponse) bool {
		return f.GetNotify().GetConversationId() == conv && f.GetNotify().GetLatestSeq() == 3
	})
	bob = open(t, bobC, client.WithStateStore(store), client.WithResyncInterval(0))
	waitFor(t, "bob's empty SyncBatch, held back", func() bool { return tp.heldFrames() == 1 })
	send(t, carol, client.ToUser(bobID), "fills the window")
	wantTexts(t, receive(t, bob, 1), "fills the window")
	send(t, alice, client.ToUser(bobID), "three")
	wantTexts(t, receive(t, bob, 1), "three")
	if n := tp.heldFrames(); n != 0 {
		t.Fatalf("%d frames still held: the Notify never came", n)
	}
	syncs := tp.sentFrames(func(f *starlingv1.StreamRequest) bool { return f.GetSync().GetConversationId() == conv })
	if len(syncs) < 3 {
		t.Fatalf("%d Syncs of the conversation, want 3 (two sessions' first, then the one the Notify called for)", len(syncs))
	}
	// Nothing is stranded after it either.
	send(t, alice, client.ToUser(bobID), "four")
	wantTexts(t, receive(t, bob, 1), "four")
	quiet(t, bob)
}

// A member added to a group later sees it from where they joined.
func TestJoinedGroupStartsAtJoin(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	carolID := register(t, srv, "carol")
	aliceC := login(t, srv, "alice", "phone")
	g, err := aliceC.CreateGroup(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	alice := open(t, aliceC)
	for _, text := range []string{"old1", "old2"} {
		send(t, alice, client.ToGroup(g.GetGroupId()), text)
	}
	if _, err := aliceC.AddMembers(t.Context(), g.GetGroupId(), carolID); err != nil {
		t.Fatal(err)
	}
	send(t, alice, client.ToGroup(g.GetGroupId()), "new1")
	carol := open(t, login(t, srv, "carol", "phone"))
	got := receive(t, carol, 2) // the system message of her adding, then new1
	if _, ok := client.GroupChangeOf(got[0]); !ok || got[0].GetSeq() != 4 {
		t.Fatalf("carol's first message %v, want the add's system message at seq 4", got[0])
	}
	wantTexts(t, got[1:], "new1")
	send(t, alice, client.ToGroup(g.GetGroupId()), "new2")
	wantTexts(t, receive(t, carol, 1), "new2")
	quiet(t, carol)
}

// A session whose server goes away for good keeps trying until its
// context ends, and then reports the context's error.
func TestContextEndsSession(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	c := login(t, srv, "alice", "phone")
	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Open(ctx, client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	time.Sleep(200 * time.Millisecond)
	if s.Err() != nil {
		t.Fatalf("session ended while reconnecting: %v", s.Err())
	}
	cancel()
	if err := sessionEnd(t, s); err != context.Canceled {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}
