package postgres_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres"
	"github.com/starling-im/starling/storage/postgres/pgtest"
	"github.com/starling-im/starling/storage/storagetest"
)

// BenchmarkAppendMessages measures the send hot path (dedup lookup, seq
// bump, insert, one-to-one memberships, durable commit) in batches of 1, 10
// and 100 messages, from one goroutine and from 8 at once over 8
// connections. Each goroutine sends as its own user to 16 peers, so
// goroutines do not fight over conversation rows: the figure is the commit
// throughput, not the retry rate of a hot conversation.
//
//	go test -run '^$' -bench AppendMessages -benchtime 2s ./storage/postgres/
func BenchmarkAppendMessages(b *testing.B) {
	const (
		senders = 8
		peers   = 16
		conns   = 8
	)
	s := pgtest.Open(b, pgtest.NewDatabase(b)+"&pool_max_conns="+fmt.Sprint(conns))
	ctx := b.Context()
	for i := range senders {
		for _, id := range []string{fmt.Sprintf("s%d", i), fmt.Sprintf("p%d", i), fmt.Sprintf("p%d", i+senders)} {
			if err := s.CreateUser(ctx, storage.User{ID: id, Username: id, CreatedAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	content := []byte(strings.Repeat("x", 100))
	var nextSender, nextID atomic.Int64
	// batchOf makes a batch from sender to its peers in turn.
	batchOf := func(sender string, n int) []storage.NewMessage {
		msgs := make([]storage.NewMessage, n)
		for i := range msgs {
			id := nextID.Add(1)
			peer := fmt.Sprintf("p%d", id%peers)
			msgs[i] = storage.NewMessage{
				ConversationID: storage.C2CConversationID(sender, peer),
				MsgID:          id,
				SenderID:       sender,
				SenderDeviceID: "bench",
				ClientMsgID:    fmt.Sprintf("bench-%d", id),
				Content:        content,
				CreatedAt:      time.Now(),
				Members:        []string{sender, peer},
			}
		}
		return msgs
	}
	// cpu-ns/msg is this process's CPU time (user + system) per message:
	// the client side of the commit, what the server pays, which on a
	// shared machine says more than msgs/s (PostgreSQL's own CPU is not in it).
	report := func(b *testing.B, batches int64, batch int, attempts0 int64, cpu0 time.Duration) {
		b.ReportMetric(float64(batches)*float64(batch)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(postgres.Attempts(s)-attempts0)/float64(batches), "attempts/batch")
		b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(batches)/float64(batch), "cpu-ns/msg")
	}

	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d/sequential", batch), func(b *testing.B) {
			var n int64
			attempts0, cpu0 := postgres.Attempts(s), processCPU(b)
			for b.Loop() {
				if _, err := s.AppendMessages(ctx, batchOf("s0", batch)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			report(b, n, batch, attempts0, cpu0)
		})
		b.Run(fmt.Sprintf("batch=%d/parallel", batch), func(b *testing.B) {
			b.SetParallelism(max(1, senders/runtime.GOMAXPROCS(0))) // 8 goroutines
			var n atomic.Int64
			attempts0, cpu0 := postgres.Attempts(s), processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				sender := fmt.Sprintf("s%d", nextSender.Add(1)%senders)
				for pb.Next() {
					if _, err := s.AppendMessages(ctx, batchOf(sender, batch)); err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			})
			report(b, n.Load(), batch, attempts0, cpu0)
		})
	}
}

// BenchmarkInbox lists an inbox of 1,000 conversations (storagetest.BenchInbox).
func BenchmarkInbox(b *testing.B) {
	s := pgtest.Open(b, pgtest.NewDatabase(b))
	storagetest.BenchInbox(b, s, func() {
		if _, err := postgres.Pool(s).Exec(b.Context(), "ANALYZE"); err != nil {
			b.Fatal(err)
		}
	})
}

// processCPU is the process's CPU time (user + system) so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
