package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

// BenchmarkListMessages measures the sync query: 100 messages after a
// seq, in one conversation of 10,000 messages, from one goroutine and from
// GOMAXPROCS at once (reads run on the pool of readers beside the one
// writer). Seq assignment, the write side, is BenchmarkAppendMessages.
//
//	go test -run '^$' -bench ListMessages ./storage/sqlite/
func BenchmarkListMessages(b *testing.B) {
	const (
		total = 10_000
		page  = 100
	)
	s := openTest(b, filepath.Join(b.TempDir(), "sync.db"))
	ctx := b.Context()
	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	conv := storage.C2CConversationID("alice", "bob")
	content := []byte("a typical short chat message, about this long")
	for first := 0; first < total; first += 500 {
		msgs := make([]storage.NewMessage, 500)
		for i := range msgs {
			id := int64(first + i + 1)
			msgs[i] = storage.NewMessage{
				ConversationID: conv, MsgID: id, SenderID: "alice", SenderDeviceID: "bench",
				ClientMsgID: fmt.Sprintf("sync-%d", id), Content: content, CreatedAt: time.Now(),
				Members: []string{"alice", "bob"},
			}
		}
		if _, err := s.AppendMessages(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	// after walks the conversation so pages come from all over it, not
	// from one cached spot.
	after := func(i int) int64 { return int64(i*7919) % (total - page) }
	check := func(b *testing.B, ms []storage.Message, err error, from int64) {
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) != page || ms[0].Seq != from+1 {
			b.Fatalf("got %d messages from seq %d, want %d from %d", len(ms), ms[0].Seq, page, from+1)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			from := after(i)
			ms, err := s.ListMessages(ctx, conv, from, storage.OpenSeq, page)
			check(b, ms, err, from)
			i++
		}
		b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				from := after(i)
				ms, err := s.ListMessages(ctx, conv, from, storage.OpenSeq, page)
				check(b, ms, err, from)
				i++
			}
		})
		b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "msgs/s")
	})
}
