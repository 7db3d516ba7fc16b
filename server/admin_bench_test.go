package server_test

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// BenchmarkAdminIssueToken measures AdminService.IssueToken through the Go
// admin client (client.NewAdmin, its default pool of connections) on one
// node (the issue asks for ≥ 5,000 tokens/s): each token is a read (the
// user is enabled), a signature and a session row, the rows of concurrent
// calls written in one transaction (auth.sessionBatcher). What bounds it
// is calls in flight, not CPU: a node lets one connection hold 16 calls
// (MaxConcurrentStreams), so over one connection a batch held at most 16
// rows and the rate was 16 per durable commit's round trip; the client's
// connections multiply that.
func BenchmarkAdminIssueToken(b *testing.B) {
	for _, be := range servertest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e := startAdminB(b, be)
			u, err := e.api.UpsertUser(e.ctx, &starlingv1.UpsertUserRequest{ExternalId: "bench", Username: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			ad, err := client.NewAdmin(e.srv.Target(), fullKey)
			if err != nil {
				b.Fatal(err)
			}
			defer ad.Close()
			api := ad.Service()
			var n atomic.Int64
			b.SetParallelism(32) // a backend calls from many goroutines
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					dev := "d" + strconv.FormatInt(n.Add(1), 10)
					if _, err := api.IssueToken(b.Context(), &starlingv1.IssueTokenRequest{UserId: u.GetUser().GetUserId(), DeviceId: dev}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
			// The machine is shared: CPU per token (server and client in
			// this process) says what a dedicated core would do.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/token")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
