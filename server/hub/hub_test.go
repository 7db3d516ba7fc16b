package hub

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/storage"
)

type memCursors struct {
	mu  sync.Mutex
	got map[string]int64
	err error
}

func (m *memCursors) AdvanceCursors(_ context.Context, cs []storage.DeviceCursor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	for _, c := range cs {
		k := c.UserID + "/" + c.DeviceID + "/" + c.ConversationID
		m.got[k] = max(m.got[k], c.DeliveredSeq)
	}
	return nil
}

func newHub(window int) (*Hub, *memCursors) {
	cur := &memCursors{got: map[string]int64{}}
	return New(Config{Window: window, QueueSize: 64, MaxDevices: 2, CursorFlushInterval: time.Hour}, cur, slog.New(slog.NewTextHandler(io.Discard, nil))), cur
}

func msg(conv string, seq int64) *starlingv1.Message {
	return &starlingv1.Message{ConversationId: conv, Seq: seq}
}

// drain returns what the writer would write now.
func drain(s *Session) []*starlingv1.StreamResponse {
	var out []*starlingv1.StreamResponse
	for {
		o, ok, ready := s.take()
		if !ready || !ok {
			break
		}
		out = append(out, o.Frame)
	}
	return out
}

func describe(fs []*starlingv1.StreamResponse) []string {
	var out []string
	for _, f := range fs {
		switch {
		case f.GetPush() != nil:
			for _, m := range f.GetPush().GetMessages() {
				out = append(out, "push "+m.GetConversationId()+" "+itoa(m.GetSeq()))
			}
		case f.GetNotify() != nil:
			out = append(out, "notify "+f.GetNotify().GetConversationId()+" "+itoa(f.GetNotify().GetLatestSeq()))
		default:
			out = append(out, "frame")
		}
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestOffersDuringStartAreNotLost(t *testing.T) {
	h, _ := newHub(8)
	s, err := h.Register("u", "d")
	if err != nil {
		t.Fatal(err)
	}
	// Committed after registration, before the catch-up read finished.
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("a", 5)}) // a is behind: in the catch-up too
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("b", 1)}) // b was not behind when read
	if got := drain(s); len(got) != 0 {
		t.Fatalf("written before FinishStart: %v", describe(got))
	}
	s.FinishStart(nil, []CatchUp{{ConversationID: "a", LatestSeq: 4, DeliveredSeq: 2}})
	want := []string{"notify a 5", "push b 1"}
	if got := describe(drain(s)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestWindowSwitchesToPullAndBack(t *testing.T) {
	h, cur := newHub(2)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	for seq := int64(1); seq <= 5; seq++ {
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", seq)})
	}
	// Two pushes fill the window; the third becomes one Notify; the rest wait.
	want := []string{"push c 1", "push c 2", "notify c 3"}
	if got := describe(drain(s)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	h.Ack(s, "c", 2)
	// The device syncs to 4 while 5 is committed: it must be told again.
	s.SyncDone("c", 4, false, nil)
	if got := describe(drain(s)); !slices.Equal(got, []string{"notify c 5"}) {
		t.Fatalf("after a short sync got %v", got)
	}
	s.SyncDone("c", 5, false, nil)
	h.Ack(s, "c", 5)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 6)})
	if got := describe(drain(s)); !slices.Equal(got, []string{"push c 6"}) {
		t.Fatalf("after catching up got %v", got)
	}
	// Acks past what the device was given are clamped; cursors are written.
	h.Ack(s, "c", 99)
	if err := h.FlushCursors(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := cur.got["u/d/c"]; got != 6 {
		t.Fatalf("cursor %d, want 6", got)
	}
}

func TestDuplicateOffersAndOwnSends(t *testing.T) {
	h, _ := newHub(8)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 1)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 1)})                  // a late duplicate from the bus
	s.SentOwn("c", 2, nil)                                                           // the device sent seq 2 itself
	h.Deliver(bus.Delivery{Users: []string{"u"}, Except: s.Key(), Msg: msg("c", 2)}) // never pushed to the sender
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 3)})
	want := []string{"push c 1", "push c 3"}
	if got := describe(drain(s)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestPushesArePacked(t *testing.T) {
	h, _ := newHub(64)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	for seq := int64(1); seq <= 3; seq++ {
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", seq)})
	}
	s.Send(&starlingv1.StreamResponse{Ref: 7})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 4)})
	o1, _ := s.Next()
	o2, _ := s.Next()
	o3, _ := s.Next()
	if len(o1.Frame.GetPush().GetMessages()) != 3 || len(o1.Push) != 3 || o2.Frame.GetRef() != 7 || len(o3.Frame.GetPush().GetMessages()) != 1 || len(o3.Push) != 1 {
		t.Fatalf("frames %v / %v / %v: want 3 packed pushes, the answer, then 1 push", o1, o2, o3)
	}
	// What the writer sends is exactly the frame, encoded.
	for _, o := range []Out{o1, o3} {
		b, err := EncodePush(o.Push)
		if err != nil {
			t.Fatal(err)
		}
		got := new(starlingv1.StreamResponse)
		if err := proto.Unmarshal(b, got); err != nil || !proto.Equal(got, o.Frame) {
			t.Fatalf("EncodePush gave %v (%v), want %v", got, err, o.Frame)
		}
	}
}

func TestSlowDeviceIsCutNotWaitedFor(t *testing.T) {
	h, _ := newHub(1000)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	for seq := int64(1); seq <= 100; seq++ { // queue holds 64
		h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", seq)})
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("session with a full queue is still open")
	}
	if r := s.Reason(); r.GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_SLOW || !r.GetReconnect() {
		t.Fatalf("reason %v", r)
	}
}

func TestDeviceLimitAndReplace(t *testing.T) {
	h, _ := newHub(8)
	a, _ := h.Register("u", "phone")
	if _, err := h.Register("u", "laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Register("u", "tablet"); err == nil {
		t.Fatal("third device accepted with MaxDevices 2")
	}
	b, err := h.Register("u", "phone")
	if err != nil {
		t.Fatalf("same device again: %v", err)
	}
	if a.Reason().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED {
		t.Fatalf("old session reason %v", a.Reason())
	}
	h.Unregister(a) // the old stream's handler ends: it must not remove b
	if h.Online("u") != 2 {
		t.Fatalf("online %d, want 2", h.Online("u"))
	}
	h.Unregister(b)
	if h.Online("u") != 1 {
		t.Fatalf("online %d after unregister, want 1", h.Online("u"))
	}
}

func TestFailedCursorFlushIsRetried(t *testing.T) {
	h, cur := newHub(8)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("c", 1)})
	h.Ack(s, "c", 1)
	cur.err = io.ErrUnexpectedEOF
	if err := h.FlushCursors(t.Context()); err == nil {
		t.Fatal("flush error swallowed")
	}
	cur.err = nil
	if err := h.FlushCursors(t.Context()); err != nil || cur.got["u/d/c"] != 1 {
		t.Fatalf("retry: %v, cursor %d", err, cur.got["u/d/c"])
	}
}

// Except names one stream: a newer stream of the same device is not the
// sender of a message sent on the stream it replaced.
func TestExceptIsOneStream(t *testing.T) {
	h, _ := newHub(8)
	old, _ := h.Register("u", "d")
	old.FinishStart(nil, nil)
	cur, _ := h.Register("u", "d") // replaces old
	cur.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Except: old.Key(), Msg: msg("c", 1)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Except: cur.Key(), Msg: msg("c", 2)})
	if got, want := describe(drain(cur)), []string{"push c 1"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Resync and Recheck: a conversation the device was not given up to the
// database's latest seq is announced once; one it was given, or is
// pulling, is left alone; a read that fails is counted, not fatal.
func TestResyncAnnouncesOnlyWhatWasMissed(t *testing.T) {
	h, _ := newHub(8)
	s, _ := h.Register("u", "d")
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("pushed", 1)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("pushed", 2)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("lost", 1)}) // seq 2 of "lost" never arrived
	other, _ := h.Register("v", "d")
	other.FinishStart(nil, nil)
	drain(s)
	read := func(_ context.Context, user, _ string) ([]CatchUp, error) {
		if user == "v" {
			return nil, context.DeadlineExceeded
		}
		return []CatchUp{
			{ConversationID: "pushed", LatestSeq: 2},
			{ConversationID: "lost", LatestSeq: 2},
			{ConversationID: "never-seen", LatestSeq: 7, DeliveredSeq: 5},
		}, nil
	}
	checked, failed := h.Resync(t.Context(), read, 2)
	if checked != 2 || failed != 1 {
		t.Fatalf("checked %d, failed %d; want 2 and 1", checked, failed)
	}
	want := []string{"notify lost 2", "notify never-seen 7"}
	if got := describe(drain(s)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Again: both are pulling now, nothing new to say.
	h.Resync(t.Context(), read, 2)
	if got := drain(s); len(got) != 0 {
		t.Fatalf("second resync wrote %v", describe(got))
	}
}

// A kick naming a session closes only that one: a stream replaced on
// another node must not take down the device's newer stream here.
func TestKickBySession(t *testing.T) {
	h, _ := newHub(8)
	s, _ := h.Register("u", "d")
	h.Kick(bus.Kick{UserID: "u", DeviceID: "d", Session: s.Key().Session + 1, Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED})
	select {
	case <-s.Done():
		t.Fatal("a kick of another session closed this one")
	default:
	}
	h.Kick(bus.Kick{UserID: "u", DeviceID: "d", Session: s.Key().Session, Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED})
	<-s.Done()
	if r := s.Reason(); r.GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED || r.GetReconnect() {
		t.Fatalf("reason %v", r)
	}
	s2, _ := h.Register("u", "d")
	h.Kick(bus.Kick{UserID: "u", DeviceID: "d", Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT})
	<-s2.Done()
	if s2.Reason().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT {
		t.Fatalf("logout reason %v", s2.Reason())
	}
}

// Where offers may be lost (a cluster), a session seeded with where the
// device stood at connect pushes what follows on from it and pulls across
// a gap; a conversation it was not seeded with starts in pull mode unless
// the offer is its first message.
func TestSeededSessionSeesGaps(t *testing.T) {
	cur := &memCursors{got: map[string]int64{}}
	h := New(Config{Window: 8, QueueSize: 64, MaxDevices: 2, CursorFlushInterval: time.Hour, OffersMayBeLost: true}, cur, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, _ := h.Register("u", "d")
	s.Seed([]CatchUp{{ConversationID: "a", LatestSeq: 5, DeliveredSeq: 5}})
	s.FinishStart(nil, nil)
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("a", 6)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("a", 8)}) // 7 lost on the way
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("new", 1)})
	h.Deliver(bus.Delivery{Users: []string{"u"}, Msg: msg("unknown", 4)})
	want := []string{"push a 6", "notify a 8", "push new 1", "notify unknown 4"}
	if got := describe(drain(s)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A Signal reaches every session of its users but the excepted one; one
// that comes while a session starts waits for its Welcome.
func TestSignalHeldUntilWelcome(t *testing.T) {
	h, _ := newHub(8)
	phone, err := h.Register("u", "phone")
	if err != nil {
		t.Fatal(err)
	}
	tablet, err := h.Register("u", "tablet")
	if err != nil {
		t.Fatal(err)
	}
	phone.FinishStart(&starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Welcome{Welcome: &starlingv1.Welcome{}}}, nil)
	drain(phone)
	receipt := &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Receipt{Receipt: &starlingv1.Receipt{ConversationId: "c2c:u:v", ReadSeq: 3}}}
	h.Signal(bus.Signal{Frame: receipt, Users: []string{"u", "nobody"}})
	if got := drain(phone); len(got) != 1 || got[0].GetReceipt() == nil {
		t.Fatalf("phone got %v, want the receipt", got)
	}
	if got := drain(tablet); len(got) != 0 {
		t.Fatalf("the starting tablet got %v before its Welcome", got)
	}
	tablet.FinishStart(&starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Welcome{Welcome: &starlingv1.Welcome{}}}, nil)
	if got := drain(tablet); len(got) != 2 || got[0].GetWelcome() == nil || got[1].GetReceipt() == nil {
		t.Fatalf("tablet got %v, want Welcome then the receipt", got)
	}
	h.Signal(bus.Signal{Frame: receipt, Users: []string{"u"}, Except: phone.Key()})
	if got := drain(phone); len(got) != 0 {
		t.Fatalf("the excepted phone got %v", got)
	}
	if got := drain(tablet); len(got) != 1 {
		t.Fatalf("tablet got %v", got)
	}
}

// Known is the highest seq a stream knows of a conversation.
func TestKnown(t *testing.T) {
	h, _ := newHub(8)
	s, err := h.Register("u", "phone")
	if err != nil {
		t.Fatal(err)
	}
	s.FinishStart(nil, []CatchUp{{ConversationID: "c", LatestSeq: 7, DeliveredSeq: 2}})
	if k := s.Known("c"); k != 7 {
		t.Fatalf("Known after a catch-up to 7 = %d", k)
	}
	if k := s.Known("other"); k != 0 {
		t.Fatalf("Known of an unseen conversation = %d", k)
	}
	h.Deliver(bus.Delivery{Msg: msg("d", 1), Users: []string{"u"}})
	if k := s.Known("d"); k != 1 {
		t.Fatalf("Known after a push = %d", k)
	}
}
