package bus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/internal/testproxy"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/redistest"
)

// recorder is a node's handler that hands what it gets to the test.
type recorder struct {
	deliveries chan bus.Delivery
	announces  chan bus.Announce
	kicks      chan bus.Kick
	changed    chan string
	signals    chan bus.Signal
	lost       chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		deliveries: make(chan bus.Delivery, 100), announces: make(chan bus.Announce, 10),
		kicks: make(chan bus.Kick, 10), changed: make(chan string, 10), lost: make(chan struct{}, 10),
		signals: make(chan bus.Signal, 10),
	}
}

func (r *recorder) Deliver(d bus.Delivery)  { r.deliveries <- d }
func (r *recorder) Announce(a bus.Announce) { r.announces <- a }
func (r *recorder) Kick(k bus.Kick)         { r.kicks <- k }
func (r *recorder) GroupChanged(g string)   { r.changed <- g }
func (r *recorder) Lost()                   { r.lost <- struct{}{} }
func (r *recorder) Signal(s bus.Signal)     { r.signals <- s }

// newRedisBus returns two buses on one Redis prefix, as two processes
// (two nodes) have: what one publishes to a node subscribed on the other
// crosses Redis.
func newRedisBus(t *testing.T) (pub, sub *bus.Redis) {
	c, prefix := redistest.Client(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return bus.NewRedis(c, prefix, log), bus.NewRedis(c, prefix, log)
}

func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not arrive", what)
		panic("unreachable")
	}
}

// What one node publishes reaches the subscribed node whole and in order:
// the message (encoded once), its users, the sending stream.
func TestRedisBusDeliversInOrder(t *testing.T) {
	b, sub := newRedisBus(t)
	rec := newRecorder()
	stop, err := sub.Subscribe(t.Context(), "node-b", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const n = 50
	for i := 1; i <= n; i++ {
		d := bus.Delivery{
			Msg:    &starlingv1.Message{ConversationId: "grp:g", Seq: int64(i), MsgId: int64(1000 + i), Content: &starlingv1.Content{Text: fmt.Sprint("m", i)}},
			Users:  []string{"u1", "u2"},
			Except: bus.DeviceKey{UserID: "u1", DeviceID: "phone", Session: 7},
		}
		if err := b.Publish(t.Context(), "node-b", d); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		select {
		case d := <-rec.deliveries:
			want := &starlingv1.Message{ConversationId: "grp:g", Seq: int64(i), MsgId: int64(1000 + i), Content: &starlingv1.Content{Text: fmt.Sprint("m", i)}}
			if !proto.Equal(d.Msg, want) || !slices.Equal(d.Users, []string{"u1", "u2"}) ||
				d.Except != (bus.DeviceKey{UserID: "u1", DeviceID: "phone", Session: 7}) || d.Shared == nil {
				t.Fatalf("delivery %d: %v users %v except %v", i, d.Msg, d.Users, d.Except)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d did not arrive", i)
		}
	}
	if err := b.PublishAnnounce(t.Context(), "node-b", bus.Announce{Conv: "grp:g", Latest: 51, Users: []string{"u3"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-rec.announces:
		if a.Conv != "grp:g" || a.Latest != 51 || !slices.Equal(a.Users, []string{"u3"}) {
			t.Fatalf("announce %v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("announce did not arrive")
	}
}

// Publishing to a node nobody listens for (gone, or not yet subscribed)
// says so; after stop the node no longer receives.
func TestRedisBusNoSubscriber(t *testing.T) {
	b, sub := newRedisBus(t)
	msg := bus.Delivery{Msg: &starlingv1.Message{Seq: 1}}
	if err := b.Publish(t.Context(), "nobody", msg); !errors.Is(err, bus.ErrNoSubscriber) {
		t.Fatalf("publish to a node without subscriber: %v", err)
	}
	stop, err := sub.Subscribe(t.Context(), "node-c", newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), "node-c", msg); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // twice is harmless
	// Redis drops the subscription when it reads the closed connection,
	// which may come after a publish made at once from another connection:
	// wait for it, with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.Publish(t.Context(), "node-c", msg)
		if errors.Is(err, bus.ErrNoSubscriber) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after stop: %v, want ErrNoSubscriber", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kicks go to one node; a group change to every node, the publisher's
// too.
func TestRedisBusKicksAndGroupChanges(t *testing.T) {
	pub, sub := newRedisBus(t)
	far, near := newRecorder(), newRecorder()
	stopFar, err := sub.Subscribe(t.Context(), "far", far)
	if err != nil {
		t.Fatal(err)
	}
	defer stopFar()
	stopNear, err := pub.Subscribe(t.Context(), "near", near)
	if err != nil {
		t.Fatal(err)
	}
	defer stopNear()
	want := bus.Kick{UserID: "u", DeviceID: "d", Session: 42, Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED}
	if err := pub.PublishKick(t.Context(), "far", want); err != nil {
		t.Fatal(err)
	}
	if got := within(t, far.kicks, "kick"); got != want {
		t.Fatalf("kick %+v, want %+v", got, want)
	}
	if err := pub.PublishGroupChanged(t.Context(), "g1"); err != nil {
		t.Fatal(err)
	}
	if g := within(t, far.changed, "group change on the far node"); g != "g1" {
		t.Fatalf("far node heard %q", g)
	}
	if g := within(t, near.changed, "group change on the publishing node"); g != "g1" {
		t.Fatalf("near node heard %q", g)
	}
}

// A node's own deliveries never touch Redis: with Redis unreachable they
// still arrive, synchronously, while publishing to another node fails.
func TestRedisBusOwnNodeWithoutRedis(t *testing.T) {
	_, prefix := redistest.Client(t)
	proxy, via := testproxy.NewProxy(t, redistest.URL(t))
	b := bus.NewRedis(redistest.Dial(t, via), prefix, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := newRecorder()
	stop, err := b.Subscribe(t.Context(), "self", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	proxy.Cut()
	if err := b.Publish(t.Context(), "self", bus.Delivery{Msg: &starlingv1.Message{Seq: 9}}); err != nil {
		t.Fatal(err)
	}
	if len(rec.deliveries) != 1 {
		t.Fatal("own delivery not handed over synchronously")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := b.Publish(ctx, "other", bus.Delivery{Msg: &starlingv1.Message{Seq: 9}}); err == nil || errors.Is(err, bus.ErrNoSubscriber) {
		t.Fatalf("publish to another node with Redis cut: %v, want a Redis error", err)
	}
}

// When the subscription's connection breaks and comes back, the node is
// told that deliveries may have been lost, and receives again.
func TestRedisBusReportsLostAfterBreak(t *testing.T) {
	c, prefix := redistest.Client(t)
	proxy, via := testproxy.NewProxy(t, redistest.URL(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sub := bus.NewRedis(redistest.Dial(t, via), prefix, log)
	pub := bus.NewRedis(c, prefix, log)
	rec := newRecorder()
	stop, err := sub.Subscribe(t.Context(), "n", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	proxy.Cut()
	time.Sleep(100 * time.Millisecond)
	proxy.Restore()
	within(t, rec.lost, "Lost after the break")
	// Subscribed again: a publish reaches it (retry while the
	// resubscription settles on the server side).
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := pub.Publish(t.Context(), "n", bus.Delivery{Msg: &starlingv1.Message{Seq: 1}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the break: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	within(t, rec.deliveries, "delivery after the break")
}

// With Run running, a Router publishes to other nodes from an outbox per
// node, in batches: everything arrives, in order.
func TestRouterOutboxOverRedis(t *testing.T) {
	pub, sub := newRedisBus(t)
	far := newRecorder()
	far.deliveries = make(chan bus.Delivery, 2000)
	stop, err := sub.Subscribe(t.Context(), "far", far)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	r := bus.NewRouter("near", fixedPlaces{"far": {"u"}}, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	// Deliveries made before Run has started are published synchronously,
	// the rest through the outbox: the order holds across the switch.
	const n = 1500
	for i := 1; i <= n; i++ {
		r.Deliver(t.Context(), []string{"u"}, bus.DeviceKey{}, &starlingv1.Message{ConversationId: "c", Seq: int64(i)})
	}
	for i := 1; i <= n; i++ {
		d := within(t, far.deliveries, fmt.Sprint("delivery ", i))
		if d.Msg.Seq != int64(i) || !slices.Equal(d.Users, []string{"u"}) {
			t.Fatalf("delivery %d: seq %d users %v", i, d.Msg.Seq, d.Users)
		}
	}
	cancel()
	<-done
	if st := r.Stats(); st.PublishFailed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A batch is one Redis message; a malformed one delivers nothing.
func TestRedisBatchIsAllOrNothing(t *testing.T) {
	pub, sub := newRedisBus(t)
	rec := newRecorder()
	stop, err := sub.Subscribe(t.Context(), "n", rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var ds []bus.Delivery
	for i := 1; i <= 3; i++ {
		ds = append(ds, bus.Delivery{Msg: &starlingv1.Message{ConversationId: "c", Seq: int64(i)}, Users: []string{"u"}})
	}
	if err := pub.PublishBatch(t.Context(), "n", ds); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if d := within(t, rec.deliveries, "batched delivery"); d.Msg.Seq != int64(i) {
			t.Fatalf("got seq %d, want %d", d.Msg.Seq, i)
		}
	}
}

// fixedPlaces places users where a test says.
type fixedPlaces map[string][]string

func (f fixedPlaces) Locate(context.Context, []string) (map[string][]string, error) { return f, nil }

// A Signal crosses Redis whole: its frame, users and excepted stream.
func TestRedisBusSignals(t *testing.T) {
	pub, sub := newRedisBus(t)
	far := newRecorder()
	stop, err := sub.Subscribe(t.Context(), "far", far)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	frame := &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Receipt{Receipt: &starlingv1.Receipt{
		ConversationId: "c2c:a:b", UserId: "b", DeliveredSeq: 7, ReadSeq: 5,
	}}}
	want := bus.Signal{Frame: frame, Users: []string{"a", "b"}, Except: bus.DeviceKey{UserID: "b", DeviceID: "phone", Session: 9}}
	if err := pub.PublishSignal(t.Context(), "far", want); err != nil {
		t.Fatal(err)
	}
	got := within(t, far.signals, "signal")
	if !proto.Equal(got.Frame, frame) || fmt.Sprint(got.Users) != "[a b]" || got.Except != want.Except {
		t.Fatalf("signal %+v, want %+v", got, want)
	}
}
