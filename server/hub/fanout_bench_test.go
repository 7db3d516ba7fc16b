package hub

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
)

// BenchmarkDeliver measures the hub's fan-out of one group message to
// 1,000 online sessions: Deliver offers it to each, each session's writer
// takes it (Next) and the device acknowledges it (Ack), which keeps every
// session pushing rather than falling back to Notify. Encoding the frames
// is included as the writer does it: each message once, shared by every
// session (wire.Shared), and a copy per session (EncodePush).
//
//	go test -run '^$' -bench Deliver ./server/hub/
func BenchmarkDeliver(b *testing.B) {
	const members = 1000
	h := New(Config{Window: 64, QueueSize: 1024, MaxDevices: 1, CursorFlushInterval: time.Hour},
		&memCursors{got: map[string]int64{}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	users := make([]string, members)
	sessions := make([]*Session, members)
	for i := range users {
		users[i] = fmt.Sprintf("u%04d", i)
		s, err := h.Register(users[i], "phone")
		if err != nil {
			b.Fatal(err)
		}
		s.FinishStart(nil, nil)
		sessions[i] = s
	}
	const conv = "grp:bench"
	content := &starlingv1.Content{Text: "a typical short chat message, about this long"}
	b.ReportAllocs()
	seq := int64(0)
	for b.Loop() {
		seq++
		m := &starlingv1.Message{MsgId: seq, ConversationId: conv, Seq: seq, SenderId: "sender", Content: content}
		h.Deliver(bus.Delivery{Users: users, Msg: m})
		for _, s := range sessions {
			o, ok := s.Next()
			if !ok || len(o.Frame.GetPush().GetMessages()) != 1 {
				b.Fatalf("session %s: frame %v, want a Push of one message", s.UserID, o.Frame)
			}
			if _, err := EncodePush(o.Push); err != nil { // what the writer sends: each message encoded once for all
				b.Fatal(err)
			}
			h.Ack(s, conv, seq)
		}
	}
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
}
