package bus_test

import (
	"errors"
	"sync"
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
)

// node is a second subscriber on the in-process bus: it keeps what it is
// handed, as another node's hub would take it.
type node struct {
	mu        sync.Mutex
	got       []bus.Delivery
	announced []bus.Announce
	kicked    []bus.Kick
	changed   []string
	signals   []bus.Signal
	lost      int
}

func (n *node) Signal(sg bus.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.signals = append(n.signals, sg)
}

func (n *node) Kick(k bus.Kick) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kicked = append(n.kicked, k)
}

func (n *node) GroupChanged(g string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changed = append(n.changed, g)
}

func (n *node) Lost() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lost++
}

func (n *node) Deliver(d bus.Delivery) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, d)
}

func (n *node) Announce(a bus.Announce) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.announced = append(n.announced, a)
}

func TestLocalPublishIsSynchronousAndPerNode(t *testing.T) {
	b := bus.NewLocal()
	var a, c node
	stopA, err := b.Subscribe(t.Context(), "a", &a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(t.Context(), "a", &c); err == nil {
		t.Fatal("second subscriber of node a accepted")
	}
	if _, err := b.Subscribe(t.Context(), "c", &c); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 3; seq++ {
		d := bus.Delivery{Msg: &starlingv1.Message{ConversationId: "x", Seq: seq}, Users: []string{"u"}}
		if err := b.Publish(t.Context(), "a", d); err != nil {
			t.Fatal(err)
		}
		// Taken before Publish returned: no goroutine hop, order kept.
		if len(a.got) != int(seq) || a.got[seq-1].Msg.Seq != seq {
			t.Fatalf("after publishing seq %d node a has %d deliveries", seq, len(a.got))
		}
	}
	if err := b.PublishAnnounce(t.Context(), "c", bus.Announce{Conv: "x", Latest: 9}); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 0 || len(c.announced) != 1 || c.announced[0].Latest != 9 {
		t.Fatalf("node c: %d deliveries, announcements %v", len(c.got), c.announced)
	}

	stopA()
	stopA() // twice is harmless
	if err := b.Publish(t.Context(), "a", bus.Delivery{Msg: &starlingv1.Message{}}); !errors.Is(err, bus.ErrNoSubscriber) {
		t.Fatalf("publish after unsubscribe: %v, want ErrNoSubscriber", err)
	}
	if _, err := b.Subscribe(t.Context(), "a", &a); err != nil {
		t.Fatalf("subscribe again after stop: %v", err)
	}
}

func TestDeviceKeyZero(t *testing.T) {
	if !(bus.DeviceKey{}).IsZero() || (bus.DeviceKey{UserID: "u", DeviceID: "d", Session: 1}).IsZero() {
		t.Fatal("IsZero wrong")
	}
}
