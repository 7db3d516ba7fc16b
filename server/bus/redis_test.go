package bus_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/redistest"
)

// recorder is a node's handler that hands what it gets to the test.
type recorder struct {
	deliveries chan bus.Delivery
	announces  chan bus.Announce
}

func newRecorder() *recorder {
	return &recorder{deliveries: make(chan bus.Delivery, 100), announces: make(chan bus.Announce, 10)}
}

func (r *recorder) Deliver(d bus.Delivery)  { r.deliveries <- d }
func (r *recorder) Announce(a bus.Announce) { r.announces <- a }

func newRedisBus(t *testing.T) *bus.Redis {
	c, prefix := redistest.Client(t)
	return bus.NewRedis(c, prefix, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// What one node publishes reaches the subscribed node whole and in order:
// the message (encoded once), its users, the sending stream.
func TestRedisBusDeliversInOrder(t *testing.T) {
	b := newRedisBus(t)
	rec := newRecorder()
	stop, err := b.Subscribe(t.Context(), "node-b", rec)
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
	b := newRedisBus(t)
	msg := bus.Delivery{Msg: &starlingv1.Message{Seq: 1}}
	if err := b.Publish(t.Context(), "nobody", msg); !errors.Is(err, bus.ErrNoSubscriber) {
		t.Fatalf("publish to a node without subscriber: %v", err)
	}
	stop, err := b.Subscribe(t.Context(), "node-c", newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), "node-c", msg); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // twice is harmless
	if err := b.Publish(t.Context(), "node-c", msg); !errors.Is(err, bus.ErrNoSubscriber) {
		t.Fatalf("publish after stop: %v", err)
	}
}
