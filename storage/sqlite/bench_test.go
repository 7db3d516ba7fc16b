package sqlite

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/storagetest"
)

// BenchmarkAppendMessages measures durable appends (WAL, synchronous=FULL)
// for batch sizes 1, 10 and 100, from one goroutine and from
// GOMAXPROCS goroutines at once. Each batch goes to one conversation, as
// the server's send pipeline mostly produces; msgs/s is the figure to
// compare with docs/design.md.
func BenchmarkAppendMessages(b *testing.B) {
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("sequential/batch=%d", batch), func(b *testing.B) {
			s, users := benchStore(b)
			var next atomic.Int64
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				appendBatch(b, s, users, batch, &next)
			}
			reportRate(b, batch, cpu)
		})
	}
	// What the server's pipeline commits under c2c load from many pairs:
	// every message of the batch in a conversation of its own.
	b.Run("spread/batch=100", func(b *testing.B) {
		s, users := benchStore(b)
		var next atomic.Int64
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			appendSpread(b, s, users, 100, &next)
		}
		reportRate(b, 100, cpu)
	})
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("parallel/batch=%d", batch), func(b *testing.B) {
			s, users := benchStore(b)
			var next atomic.Int64
			b.ReportAllocs()
			cpu := startCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					appendBatch(b, s, users, batch, &next)
				}
			})
			reportRate(b, batch, cpu)
		})
	}
}

const benchUsers = 16

func benchStore(b *testing.B) (*Store, []string) {
	s := openTest(b, filepath.Join(b.TempDir(), "bench.db"))
	users := make([]string, benchUsers)
	for i := range users {
		users[i] = fmt.Sprintf("u%02d", i)
		if err := s.CreateUser(b.Context(), storage.User{ID: users[i], Username: users[i], CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	return s, users
}

// appendBatch stores n new messages in a c2c conversation picked from a
// counter, so concurrent batches spread over several conversations.
func appendBatch(b *testing.B, s *Store, users []string, n int, next *atomic.Int64) {
	first := next.Add(int64(n)) - int64(n)
	x, y := users[first%benchUsers], users[(first+1+first/benchUsers)%benchUsers]
	if x == y {
		y = users[(first+1)%benchUsers]
	}
	conv := storage.C2CConversationID(x, y)
	content := []byte("a typical short chat message, about this long")
	msgs := make([]storage.NewMessage, n)
	for i := range msgs {
		id := first + int64(i)
		msgs[i] = storage.NewMessage{
			ConversationID: conv,
			MsgID:          id,
			SenderID:       x,
			SenderDeviceID: "bench",
			ClientMsgID:    fmt.Sprintf("bench-%d", id),
			Content:        content,
			CreatedAt:      time.Now(),
			Members:        []string{x, y},
		}
	}
	if _, err := s.AppendMessages(b.Context(), msgs); err != nil {
		b.Error(err)
	}
}

// appendSpread stores n new messages, each in another c2c conversation of
// the users' 120 pairs.
func appendSpread(b *testing.B, s *Store, users []string, n int, next *atomic.Int64) {
	first := next.Add(int64(n)) - int64(n)
	content := []byte("a typical short chat message, about this long")
	msgs := make([]storage.NewMessage, n)
	for i := range msgs {
		id := first + int64(i)
		p := id % (benchUsers * (benchUsers - 1) / 2)
		x, y := pair(p)
		msgs[i] = storage.NewMessage{
			ConversationID: storage.C2CConversationID(users[x], users[y]),
			MsgID:          id,
			SenderID:       users[x],
			SenderDeviceID: "bench",
			ClientMsgID:    uuid.NewString(), // random, as clients make them
			Content:        content,
			CreatedAt:      time.Now(),
			Members:        []string{users[x], users[y]},
		}
	}
	if _, err := s.AppendMessages(b.Context(), msgs); err != nil {
		b.Error(err)
	}
}

// pair returns the p-th pair (x < y) of benchUsers users.
func pair(p int64) (x, y int) {
	for x = 0; ; x++ {
		n := int64(benchUsers - 1 - x)
		if p < n {
			return x, x + 1 + int(p)
		}
		p -= n
	}
}

// reportRate reports msgs/s, wall time per message and the process's CPU
// time (user + system) per message since cpu was taken: on a shared
// machine wall time mostly measures the other tenants and the disk's
// fsync, CPU time what a commit costs the server.
func reportRate(b *testing.B, batch int, cpu time.Duration) {
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	b.ReportMetric(float64((processCPU(b)-cpu).Nanoseconds())/float64(b.N*batch), "cpu-ns/msg")
}

// startCPU returns the process's CPU time so far, for reportRate.
func startCPU(b *testing.B) time.Duration { return processCPU(b) }

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInbox lists an inbox of 1,000 conversations (storagetest.BenchInbox).
func BenchmarkInbox(b *testing.B) {
	storagetest.BenchInbox(b, openTest(b, filepath.Join(b.TempDir(), "inbox.db")), nil)
}
