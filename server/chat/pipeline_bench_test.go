package chat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/sqlite"
)

// countingRouter counts deliveries; it stands for the hub, whose cost
// server/hub's benchmarks measure.
type countingRouter struct{ delivered atomic.Int64 }

func (r *countingRouter) Deliver(context.Context, []string, bus.DeviceKey, *starlingv1.Message) {
	r.delivered.Add(1)
}
func (r *countingRouter) Announce(context.Context, []string, string, int64) {}
func (r *countingRouter) GroupChanged(context.Context, string)              {}

// BenchmarkPipelineC2C measures a c2c send through the pipeline (commit on
// a real SQLite file with synchronous=FULL, then fan-out and answer) with
// inflight sends outstanding at once, each of another pair: inflight=1 is
// ordinary load, where every commit holds one message; 64 is a loaded
// server. cpu-ns/msg is the process's CPU time per message, the figure to
// compare on a shared machine (wall time is mostly fsync).
//
//	go test -run '^$' -bench PipelineC2C ./server/chat/
func BenchmarkPipelineC2C(b *testing.B) {
	for _, inflight := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			benchPipeline(b, inflight)
		})
	}
}

func benchPipeline(b *testing.B, inflight int) {
	ctx := b.Context()
	store, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	users := make([]string, 2*inflight)
	for i := range users {
		users[i] = fmt.Sprintf("u%03d", i)
		if err := store.CreateUser(ctx, storage.User{ID: users[i], Username: users[i], CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	ids, err := idgen.NewSnowflake(1)
	if err != nil {
		b.Fatal(err)
	}
	router := &countingRouter{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := newPipeline(store, router, newMemberCache(store), ids, log, noObserver{}, nil, 1, 256, 1024, time.Millisecond)
	runCtx, stop := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Go(func() { p.run(runCtx) })
	defer func() { stop(); running.Wait() }()

	content := &starlingv1.Content{Type: "text", Data: []byte("a typical short chat message, about this long")}
	encoded := []byte("a typical short chat message, about this long")
	var next atomic.Int64
	send := func(sender, recipient string) {
		n := next.Add(1)
		done := make(chan SendResult, 1)
		s := &pending{
			msg: storage.NewMessage{
				ConversationID: storage.C2CConversationID(sender, recipient),
				SenderID:       sender,
				SenderDeviceID: "bench",
				ClientMsgID:    fmt.Sprintf("bench-%d", n),
				Content:        encoded,
				Members:        []string{sender, recipient},
			},
			content: content,
			users:   []string{sender, recipient},
			arrived: time.Now(),
			span:    noSpan,
			done:    func(r SendResult) { done <- r },
		}
		if err := p.submit(ctx, s); err != nil {
			b.Error(err)
			return
		}
		if r := <-done; r.Err != nil {
			b.Error(r.Err)
		}
	}

	b.ReportAllocs()
	cpu := processCPU(b)
	b.ResetTimer()
	var work sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(b.N))
	for w := range inflight {
		work.Go(func() {
			for left.Add(-1) >= 0 {
				send(users[2*w], users[2*w+1])
			}
		})
	}
	work.Wait()
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/msg")
	if got := router.delivered.Load(); got != int64(b.N) {
		b.Fatalf("delivered %d, want %d", got, b.N)
	}
}

// processCPU is the process's CPU time (user + system) so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
