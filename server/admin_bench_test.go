package server_test

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// BenchmarkAdminIssueToken measures AdminService.IssueToken over a real
// gRPC connection on one node (the issue asks for ≥ 5,000 tokens/s):
// each token is a signature and a session row.
func BenchmarkAdminIssueToken(b *testing.B) {
	for _, be := range servertest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			e := startAdminB(b, be)
			u, err := e.api.UpsertUser(e.ctx, &starlingv1.UpsertUserRequest{ExternalId: "bench", Username: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(32) // a backend calls from many goroutines
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					dev := "d" + strconv.FormatInt(n.Add(1), 10)
					if _, err := e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: u.GetUser().GetUserId(), DeviceId: dev}); err != nil {
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
