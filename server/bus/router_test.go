package bus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/storage"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type noCursors struct{}

func (noCursors) AdvanceCursors(context.Context, []storage.DeviceCursor) error { return nil }

// hubNode subscribes a hub alone, as a node without chat.
type hubNode struct{ *hub.Hub }

func (hubNode) GroupChanged(string) {}
func (hubNode) Lost()               {}

func newHub(t *testing.T) *hub.Hub {
	t.Helper()
	return hub.New(hub.Config{Window: 64, QueueSize: 256, MaxDevices: 4, CursorFlushInterval: time.Hour}, noCursors{}, quiet)
}

// pushed returns the conversations and seqs queued for s, ending it.
func pushed(s *hub.Session) []int64 {
	s.End()
	var seqs []int64
	for {
		o, ok := s.Next()
		if !ok {
			return seqs
		}
		for _, sh := range o.Push {
			seqs = append(seqs, sh.Msg.(*starlingv1.Message).Seq)
		}
	}
}

// Users on two nodes: each node is handed one Delivery per message with
// exactly its users; this node's goes to its hub, which skips the sending
// stream but not the sender's other device.
func TestRouterOneDeliveryPerNode(t *testing.T) {
	ctx := t.Context()
	b := bus.NewLocal()
	h := newHub(t)
	if _, err := b.Subscribe(ctx, "a", hubNode{h}); err != nil {
		t.Fatal(err)
	}
	var remote node
	if _, err := b.Subscribe(ctx, "b", &remote); err != nil {
		t.Fatal(err)
	}
	pres := presence.NewLocal("a")
	open := func(user, device string) *hub.Session {
		s, err := h.Register(user, device)
		if err != nil {
			t.Fatal(err)
		}
		s.FinishStart(nil, nil)
		if err := pres.Register(ctx, "a", s.Key()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sender, other := open("u1", "d1"), open("u1", "d2")
	for i, u := range []string{"u2", "u3"} {
		if err := pres.Register(ctx, "b", bus.DeviceKey{UserID: u, DeviceID: "d", Session: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	r := bus.NewRouter("a", pres, b, quiet)
	users := []string{"u1", "u2", "u3", "u4"} // u4 is offline
	for seq := int64(1); seq <= 2; seq++ {
		r.Deliver(ctx, users, sender.Key(), &starlingv1.Message{ConversationId: "grp:g", Seq: seq})
	}

	if len(remote.got) != 2 {
		t.Fatalf("node b got %d deliveries, want one per message (2)", len(remote.got))
	}
	for i, d := range remote.got {
		got := slices.Sorted(slices.Values(d.Users))
		if !slices.Equal(got, []string{"u2", "u3"}) || d.Msg.Seq != int64(i+1) || !d.Except.IsZero() || d.Shared == nil {
			t.Fatalf("node b delivery %d: users %v seq %d except %+v shared %v", i, got, d.Msg.Seq, d.Except, d.Shared != nil)
		}
	}
	if got := pushed(other); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("sender's other device got %v, want [1 2]", got)
	}
	if got := pushed(sender); len(got) != 0 {
		t.Fatalf("sending stream got %v, want nothing", got)
	}
}

// fixed places users where a test says.
type fixed map[string][]string

func (f fixed) Locate(context.Context, []string) (map[string][]string, error) { return f, nil }

type broken struct{}

func (broken) Locate(context.Context, []string) (map[string][]string, error) {
	return nil, errors.New("presence down")
}

// A message is encoded once for all nodes; when presence cannot be read,
// this node's devices still get it.
func TestRouterSharesEncodingAndFallsBackToThisNode(t *testing.T) {
	ctx := t.Context()
	b := bus.NewLocal()
	var a, c, d node
	for n, h := range map[string]*node{"a": &a, "c": &c, "d": &d} {
		if _, err := b.Subscribe(ctx, n, h); err != nil {
			t.Fatal(err)
		}
	}
	key := bus.DeviceKey{UserID: "x", DeviceID: "1", Session: 7}
	bus.NewRouter("a", fixed{"c": {"y"}, "d": {"z"}}, b, quiet).Deliver(ctx, []string{"y", "z"}, key, &starlingv1.Message{Seq: 1})
	if len(c.got) != 1 || len(d.got) != 1 || c.got[0].Shared != d.got[0].Shared || c.got[0].Shared == nil {
		t.Fatalf("deliveries c %d d %d, or encodings not shared", len(c.got), len(d.got))
	}
	if _, err := c.got[0].Shared.Bytes(); err != nil {
		t.Fatal(err)
	}

	bus.NewRouter("a", broken{}, b, quiet).Deliver(ctx, []string{"y"}, key, &starlingv1.Message{Seq: 2})
	if len(a.got) != 1 || !slices.Equal(a.got[0].Users, []string{"y"}) || a.got[0].Except != key {
		t.Fatalf("fallback: node a got %+v", a.got)
	}

	// Announce reaches the recipients' nodes and always this one (its
	// devices that have seen the conversation).
	bus.NewRouter("a", fixed{"c": {"y"}}, b, quiet).Announce(ctx, []string{"y"}, "grp:g", 5)
	if len(a.announced) != 1 || len(c.announced) != 1 || !slices.Equal(c.announced[0].Users, []string{"y"}) || a.announced[0].Latest != 5 {
		t.Fatalf("announce: a %+v c %+v", a.announced, c.announced)
	}
}

// flaky is a Bus whose publishes to one node fail until healed.
type flaky struct {
	bus.Bus
	mu   sync.Mutex
	down map[string]bool
}

func (f *flaky) isDown(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down[node]
}

func (f *flaky) heal(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.down, node)
}

func (f *flaky) Publish(ctx context.Context, node string, d bus.Delivery) error {
	if f.isDown(node) {
		return errors.New("redis down")
	}
	return f.Bus.Publish(ctx, node, d)
}

func (f *flaky) PublishAnnounce(ctx context.Context, node string, a bus.Announce) error {
	if f.isDown(node) {
		return errors.New("redis down")
	}
	return f.Bus.PublishAnnounce(ctx, node, a)
}

// A delivery that cannot be published is owed: once the node can be
// reached, it is told to announce the conversation's latest seq to the
// same users, so their devices pull what they missed. Counted throughout.
func TestRouterOwesWhatItCouldNotPublish(t *testing.T) {
	ctx := t.Context()
	local := bus.NewLocal()
	var a, c node
	for n, h := range map[string]*node{"a": &a, "c": &c} {
		if _, err := local.Subscribe(ctx, n, h); err != nil {
			t.Fatal(err)
		}
	}
	b := &flaky{Bus: local, down: map[string]bool{"c": true}}
	r := bus.NewRouter("a", fixed{"a": {"x"}, "c": {"y", "z"}}, b, quiet)
	for seq := int64(1); seq <= 3; seq++ {
		r.Deliver(ctx, []string{"x", "y", "z"}, bus.DeviceKey{}, &starlingv1.Message{ConversationId: "grp:g", Seq: seq})
	}
	if len(a.got) != 3 || len(c.got) != 0 {
		t.Fatalf("node a got %d, node c %d deliveries; want 3 and 0", len(a.got), len(c.got))
	}
	st := r.Stats()
	if st.PublishFailed != 3 || st.Owed != 1 {
		t.Fatalf("stats %+v: want 3 failed publishes owed as 1 announce", st)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	defer func() { stop(); <-done }()

	time.Sleep(1500 * time.Millisecond) // at least one retry, still down
	if n := len(c.announced); n != 0 || r.Stats().Owed != 1 {
		t.Fatalf("announced %d times while the node was down; stats %+v", n, r.Stats())
	}
	b.heal("c")
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().OwedSent == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("owed announce never sent: %+v", r.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.announced) != 1 {
		t.Fatalf("node c got %d announces, want 1", len(c.announced))
	}
	got := c.announced[0]
	slices.Sort(got.Users)
	if got.Conv != "grp:g" || got.Latest != 3 || !slices.Equal(got.Users, []string{"y", "z"}) {
		t.Fatalf("announce %+v, want grp:g up to 3 for y and z", got)
	}
	if st := r.Stats(); st.Owed != 0 || st.OwedDropped != 0 {
		t.Fatalf("stats after healing %+v", st)
	}
}

// downBus is a Bus whose publishes fail while down; it counts every try.
type downBus struct {
	mu        sync.Mutex
	down      bool
	tries     int
	announced []bus.Announce
}

func (f *downBus) try() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if f.down {
		return errors.New("redis: connection refused")
	}
	return nil
}

func (f *downBus) Publish(context.Context, string, bus.Delivery) error { return f.try() }

func (f *downBus) PublishAnnounce(_ context.Context, _ string, a bus.Announce) error {
	if err := f.try(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced = append(f.announced, a)
	return nil
}

func (f *downBus) PublishKick(context.Context, string, bus.Kick) error     { return nil }
func (f *downBus) PublishSignal(context.Context, string, bus.Signal) error { return f.try() }
func (f *downBus) PublishGroupChanged(context.Context, string) error       { return nil }
func (f *downBus) Subscribe(context.Context, string, bus.Handler) (func(), error) {
	return func() {}, nil
}

func (f *downBus) set(down bool) (tries int, announced []bus.Announce) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	return f.tries, slices.Clone(f.announced)
}

// While publishing to other nodes fails (Redis down), the send path tries
// once and then owes its deliveries without waiting on Redis for each;
// the retries of the owed announces find Redis back, deliver what is
// owed and end the pause.
func TestRouterPausesAfterAFailedPublish(t *testing.T) {
	f := &downBus{}
	f.set(true)
	r := bus.NewRouter("a", fixed{"b": {"u"}}, f, quiet)
	for seq := int64(1); seq <= 10; seq++ {
		r.Deliver(t.Context(), []string{"u"}, bus.DeviceKey{}, &starlingv1.Message{ConversationId: "c", Seq: seq})
	}
	if tries, _ := f.set(true); tries != 1 {
		t.Fatalf("%d publishes tried while Redis was down, want 1", tries)
	}
	if st := r.Stats(); st.PublishFailed != 10 || st.Owed != 1 {
		t.Fatalf("stats %+v, want 10 failed and 1 owed", st)
	}

	f.set(false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().OwedSent == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the owed announce was not sent once Redis was back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tries, announced := f.set(false)
	if len(announced) != 1 || announced[0].Conv != "c" || announced[0].Latest != 10 || !slices.Equal(announced[0].Users, []string{"u"}) {
		t.Fatalf("announced %+v, want c up to 10 for u", announced)
	}
	r.Deliver(t.Context(), []string{"u"}, bus.DeviceKey{}, &starlingv1.Message{ConversationId: "c", Seq: 11})
	if now, _ := f.set(false); now != tries+1 {
		t.Fatalf("after Redis came back the send path did not publish again (%d tries, then %d)", tries, now)
	}
}
