package hub

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/storage"
)

// A packed Push frame stays under MaxPushBytes however large the messages
// (a client's default receive limit is 4 MiB); a single message larger
// than the bound still goes, alone.
func TestPushesArePackedByBytes(t *testing.T) {
	cur := &memCursors{got: map[string]int64{}}
	h := New(Config{Window: 1000, QueueSize: 1000, MaxDevices: 2, CursorFlushInterval: time.Hour, MaxPushBytes: 200 << 10},
		cur, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	big := strings.Repeat("x", 60<<10)
	for seq := int64(1); seq <= 10; seq++ {
		m := msg("c", seq)
		m.Content = &starlingv1.Content{Text: big}
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: m})
	}
	huge := msg("c", 11)
	huge.Content = &starlingv1.Content{Text: strings.Repeat("y", 300<<10)}
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: huge})

	var seqs []int64
	for len(seqs) < 11 {
		o, ok, ready := s.take()
		if !ready || !ok {
			t.Fatalf("queue ended after seqs %v", seqs)
		}
		b, err := EncodePush(o.Push)
		if err != nil {
			t.Fatal(err)
		}
		n := len(o.Frame.GetPush().GetMessages())
		if len(b) > 200<<10 && n > 1 {
			t.Fatalf("frame of %d messages is %d bytes, over the 200 KiB bound", n, len(b))
		}
		for _, m := range o.Frame.GetPush().GetMessages() {
			seqs = append(seqs, m.GetSeq())
		}
	}
	if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(seqs, want) {
		t.Fatalf("pushed %v, want %v in order", seqs, want)
	}
}

// Offers held while a session starts are bounded: past QueueSize the
// conversation is only remembered by its seqs and starts in pull mode, so
// nothing is lost and memory stays bounded.
func TestHeldOffersAreBounded(t *testing.T) {
	h, _ := newHub(1000) // QueueSize 64
	s, _ := h.Register("u", "d")
	for seq := int64(1); seq <= 500; seq++ {
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("busy", seq)})
	}
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("quiet", 1)}) // after the bound too
	if len(s.held) > 64 {
		t.Fatalf("%d offers held, bound 64", len(s.held))
	}
	s.FinishStart(nil, nil)
	got := describe(drain(s))
	// The conversations that overflowed are announced, once each, with
	// their latest seq; nothing of them is pushed out of order.
	if !slices.Contains(got, "notify busy 500") || !slices.Contains(got, "notify quiet 1") {
		t.Fatalf("got %v, want Notifies for busy (500) and quiet (1)", got)
	}
	for _, g := range got {
		if strings.HasPrefix(g, "push busy") {
			t.Fatalf("pushed %q of a conversation in pull mode", g)
		}
	}
	// The device pulls: pushes resume after its Sync reaches the end.
	s.SyncDone("busy", 500, false, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("busy", 501)})
	if got := describe(drain(s)); !slices.Equal(got, []string{"push busy 501"}) {
		t.Fatalf("after sync: %v", got)
	}
}

// Announce: a stored message whose readers could not be read is announced
// to the named users and to every session that has seen the conversation.
func TestAnnounce(t *testing.T) {
	h, _ := newHub(8)
	a, _ := h.Register("a", "d") // named
	b, _ := h.Register("b", "d") // has seen conv
	c, _ := h.Register("c", "d") // neither
	for _, s := range []*Session{a, b, c} {
		s.FinishStart(nil, nil)
	}
	h.Deliver(bus.Delivery{Users: []string{"b"}, Msg: msg("g", 3)})
	drain(b)
	h.Announce(bus.Announce{Users: []string{"a"}, Conv: "g", Latest: 4})
	if got := describe(drain(a)); !slices.Equal(got, []string{"notify g 4"}) {
		t.Fatalf("named user got %v", got)
	}
	if got := describe(drain(b)); !slices.Equal(got, []string{"notify g 4"}) {
		t.Fatalf("session that saw g got %v", got)
	}
	if got := drain(c); len(got) != 0 {
		t.Fatalf("unrelated session got %v", describe(got))
	}
	// In pull mode now: the next message is folded into the pull, not pushed.
	h.Deliver(bus.Delivery{Users: []string{"b"}, Msg: msg("g", 5)})
	if got := drain(b); len(got) != 0 {
		t.Fatalf("pushed while pulling: %v", describe(got))
	}
}

type countingCursors struct {
	memCursors
	calls []int
}

func (c *countingCursors) AdvanceCursors(ctx context.Context, cs []storage.DeviceCursor) error {
	c.calls = append(c.calls, len(cs))
	return c.memCursors.AdvanceCursors(ctx, cs)
}

// Cursor flushes are written in bounded transactions (a big one would hold
// SQLite's single writer and stall message commits).
func TestCursorFlushIsChunked(t *testing.T) {
	cur := &countingCursors{memCursors: memCursors{got: map[string]int64{}}}
	h := New(Config{Window: 8, QueueSize: 64, MaxDevices: 2, CursorFlushInterval: time.Hour}, cur, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	const n = 3*cursorChunk + 5
	for i := range n {
		conv := "c" + itoa(int64(i))
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg(conv, 1)})
		h.Ack(s, conv, 1)
		drain(s)
	}
	if err := h.FlushCursors(t.Context()); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range cur.calls {
		if c > cursorChunk {
			t.Fatalf("one transaction wrote %d cursors, bound %d", c, cursorChunk)
		}
		total += c
	}
	if total != n || len(cur.got) != n {
		t.Fatalf("wrote %d cursors (%d stored), want %d", total, len(cur.got), n)
	}
}

// After CloseAll no session can start: a device that connects during a
// shutdown is told to go elsewhere.
func TestCloseAllRefusesNewSessions(t *testing.T) {
	h, _ := newHub(8)
	s, _ := h.Register("u", "d")
	h.CloseAll(&starlingv1.Disconnect{Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN})
	select {
	case <-s.Done():
	default:
		t.Fatal("open session not closed")
	}
	if _, err := h.Register("v", "d"); err != apierr.ShuttingDown {
		t.Fatalf("register after CloseAll: %v, want ShuttingDown", err)
	}
}

// A push never jumps a gap: a message that arrives before an earlier one
// of its conversation (deliveries from other nodes can be late, reordered
// or lost) switches the conversation to pull; the earlier one, arriving
// late, is folded into the pull, and pushes resume after the Sync.
func TestGapSwitchesToPull(t *testing.T) {
	h, _ := newHub(64)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 1)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 2)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 4)}) // 3 is late
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 3)})
	if got := describe(drain(s)); !slices.Equal(got, []string{"push c 1", "push c 2", "notify c 4"}) {
		t.Fatalf("got %v", got)
	}
	s.SyncDone("c", 4, false, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 5)})
	if got := describe(drain(s)); !slices.Equal(got, []string{"push c 5"}) {
		t.Fatalf("after the sync: %v", got)
	}
}

// In a cluster an offer can be lost or late (Config.OffersMayBeLost): a
// conversation the session knows nothing about is announced, not pushed —
// the device may lack messages before the one offered — unless the offer
// is the conversation's first message. Once the device has synced,
// pushes resume.
func TestUnknownConversationIsPulledWhenOffersMayBeLost(t *testing.T) {
	h := New(Config{Window: 64, QueueSize: 64, MaxDevices: 2, CursorFlushInterval: time.Hour, OffersMayBeLost: true},
		&memCursors{got: map[string]int64{}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("a", 1)}) // nothing before it: pushed
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("b", 5)}) // 4 may have been lost
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("b", 6)})
	s.SentOwn("c", 3, nil) // the device's own send says nothing of 1 and 2
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 4)})
	if got, want := describe(drain(s)), []string{"push a 1", "notify b 5", "notify c 4"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	s.SyncDone("b", 6, false, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("b", 7)})
	if got := describe(drain(s)); !slices.Equal(got, []string{"push b 7"}) {
		t.Fatalf("after the sync: %v", got)
	}
}
