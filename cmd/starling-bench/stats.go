package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to a minute, with 3
// significant digits: p99.9 of a few milliseconds keeps its precision.
const (
	histMin    = 1
	histMax    = int64(time.Minute / time.Microsecond)
	histDigits = 3
)

// latencyShards spreads recording over several locks: a group run records
// every delivery from a thousand reader goroutines.
const latencyShards = 8

// latency is a concurrent HDR histogram. It keeps the whole run and the
// current live-line window apart, so the live line shows the last second
// and the report the whole run.
type latency struct {
	shards [latencyShards]latencyShard
}

type latencyShard struct {
	mu     sync.Mutex
	total  *hdrhistogram.Histogram
	window *hdrhistogram.Histogram
	_      [40]byte // keep shards on separate cache lines
}

func newLatency() *latency {
	l := &latency{}
	for i := range l.shards {
		l.shards[i].total = hdrhistogram.New(histMin, histMax, histDigits)
		l.shards[i].window = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return l
}

// record adds one sample; shard is any small number that differs between
// goroutines that record often (a device index).
func (l *latency) record(shard int, d time.Duration) {
	us := min(max(d.Microseconds(), histMin), histMax)
	s := &l.shards[shard%latencyShards]
	s.mu.Lock()
	s.total.RecordValue(us)  //nolint:errcheck // clamped into range above
	s.window.RecordValue(us) //nolint:errcheck
	s.mu.Unlock()
}

// takeWindow returns the samples since the previous call and starts a new
// window.
func (l *latency) takeWindow() *hdrhistogram.Histogram {
	out := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		out.Merge(s.window)
		s.window.Reset()
		s.mu.Unlock()
	}
	return out
}

// merged returns every sample of the run.
func (l *latency) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		out.Merge(s.total)
		s.mu.Unlock()
	}
	return out
}

// Percentiles summarizes a latency histogram, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// counters are the run's event counts; every field is updated atomically
// from many goroutines.
type counters struct {
	sent          atomic.Int64 // Send frames written (first attempts)
	resent        atomic.Int64 // sends written again after a reconnect
	acked         atomic.Int64 // SendAcks received
	dupAcks       atomic.Int64 // SendAcks saying the message had been stored before (resends)
	sendErrors    atomic.Int64 // sends refused with an Error frame
	expected      atomic.Int64 // deliveries the SendAcks promise
	delivered     atomic.Int64 // messages of others accepted in order, by push or sync
	viaPush       atomic.Int64
	viaSync       atomic.Int64
	pushFrames    atomic.Int64
	notifies      atomic.Int64
	staleNotifies atomic.Int64 // Notify for what the device already had
	syncs         atomic.Int64 // Sync frames written
	frameErrors   atomic.Int64 // Error frames not answering a send
	pongs         atomic.Int64
	welcomes      atomic.Int64
	disconnects   atomic.Int64 // Disconnect frames
	reconnects    atomic.Int64 // streams reopened after an unplanned end
	markReads     atomic.Int64 // MarkRead frames written (--read)
	receipts      atomic.Int64 // Receipt frames received
}

// rateMeter turns a counter into a per-second rate between calls.
type rateMeter struct {
	last  int64
	lastT time.Time
}

func (m *rateMeter) rate(now time.Time, v int64) float64 {
	var r float64
	if !m.lastT.IsZero() {
		if dt := now.Sub(m.lastT).Seconds(); dt > 0 {
			r = float64(v-m.last) / dt
		}
	}
	m.last, m.lastT = v, now
	return r
}
