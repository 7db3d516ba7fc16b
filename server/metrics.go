package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/gateway"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/storage"
)

// nodeMetrics are the node's own Prometheus metrics (the gRPC ones come
// from go-grpc-middleware). docs/operations.md lists them all. Counters
// that live in the hub, the gateway or the store are read at scrape time,
// so the hot path pays an atomic add at most.
type nodeMetrics struct {
	committed     prometheus.Counter
	commitSeconds prometheus.Histogram
	batchSize     prometheus.Histogram
	dbErrors      *prometheus.CounterVec
	sendSeconds   *prometheus.HistogramVec
	synced        prometheus.Counter
	refusals      *prometheus.CounterVec
}

var _ chat.Observer = (*nodeMetrics)(nil)

func newNodeMetrics(r prometheus.Registerer) (*nodeMetrics, error) {
	m := &nodeMetrics{
		committed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_messages_committed_total", Help: "Sends committed to the database (new messages and duplicates alike).",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starling_commit_seconds", Help: "Time to commit one batch of sends (one transaction).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starling_commit_batch_size", Help: "Sends per commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starling_db_errors_total", Help: "Failed database operations of the send path, by operation and kind (unavailable: unreachable or timed out; ambiguous: commit outcome unknown; other).",
		}, []string{"op", "kind"}),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "starling_send_seconds", Help: "From a Send frame's arrival to its answer (SendAck or Error after queueing), by result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"result"}),
		synced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "starling_messages_synced_total", Help: "Messages delivered in SyncBatch answers (pulled).",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starling_stream_refusals_total", Help: "Stream frames refused with an Error frame, by gRPC code and reason (the fixed message).",
		}, []string{"code", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.committed, m.commitSeconds, m.batchSize, m.dbErrors, m.sendSeconds, m.synced, m.refusals} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *nodeMetrics) Committed(n int, d time.Duration, err error) {
	m.commitSeconds.Observe(d.Seconds())
	m.batchSize.Observe(float64(n))
	if err != nil {
		m.dbErrors.WithLabelValues("append", dbErrorKind(err)).Inc()
		return
	}
	m.committed.Add(float64(n))
}

func (m *nodeMetrics) Answered(d time.Duration, err error) {
	result := "ok"
	var ae *apierr.Error
	switch {
	case err == nil:
	case errors.As(err, &ae):
		result = ae.Code.String()
	default:
		result = "Internal"
	}
	m.sendSeconds.WithLabelValues(result).Observe(d.Seconds())
}

func (m *nodeMetrics) Synced(n int) { m.synced.Add(float64(n)) }

func (m *nodeMetrics) refused(st *status.Status) {
	m.refusals.WithLabelValues(st.Code().String(), st.Message()).Inc()
}

func dbErrorKind(err error) string {
	switch {
	case errors.Is(err, storage.ErrAmbiguousCommit):
		return "ambiguous"
	case errors.Is(err, storage.ErrUnavailable):
		return "unavailable"
	}
	return "other"
}

// authCollector exposes Accounts' outcome counts as starling_auth_total,
// and its session cache's as starling_auth_session_cache_total.
type authCollector struct {
	accounts *auth.Accounts
	desc     *prometheus.Desc
	cache    *prometheus.Desc
}

func newAuthCollector(a *auth.Accounts) authCollector {
	return authCollector{accounts: a,
		desc: prometheus.NewDesc("starling_auth_total",
			"Logins, registrations and token checks since start, by operation and result (ok, or why they failed).", []string{"op", "result"}, nil),
		cache: prometheus.NewDesc("starling_auth_session_cache_total",
			"Token checks since start that found their login session in the node's cache (hit) or read it from the database (miss).", []string{"result"}, nil),
	}
}

func (c authCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.cache
}

func (c authCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.accounts.AuthCounts() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), k.Op, k.Result)
	}
	hits, misses := c.accounts.SessionCacheCounts()
	ch <- prometheus.MustNewConstMetric(c.cache, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.cache, prometheus.CounterValue, float64(misses), "miss")
}

// registerStateMetrics exposes what the hub, the gateway, the accounts and
// the store count themselves, read at scrape time.
func registerStateMetrics(r prometheus.Registerer, h *hub.Hub, g *gateway.ChatServer, a *auth.Accounts, store storage.Store, router *bus.Router, pres presence.Presence) error {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("starling_sessions", "Device streams open (authenticated) on this node.", func() float64 { return float64(h.Stats().Sessions) }),
		gauge("starling_streams_waiting_auth", "Streams waiting for their Auth frame.", func() float64 { return float64(g.WaitingAuth()) }),
		gauge("starling_queued_bytes", "Encoded bytes waiting in the devices' outbound queues.", func() float64 { return float64(h.Stats().QueuedBytes) }),
		counter("starling_sessions_opened_total", "Device streams authenticated and registered since start.", func() float64 { return float64(h.Stats().Opened) }),
		counter("starling_slow_disconnects_total", "Streams cut because their outbound queue passed its bound (frames or bytes).", func() float64 { return float64(h.Stats().SlowDisconnects) }),
		counter("starling_notifies_total", "Conversations switched to pull mode (Notify) on a device.", func() float64 { return float64(h.Stats().Notifies) }),
		counter("starling_messages_pushed_total", "Messages pushed to devices (deliveries by push).", func() float64 { return float64(h.Stats().Pushed) }),
		counter("starling_push_frames_total", "Push frames written (a frame carries one or more messages).", func() float64 { return float64(h.Stats().PushFrames) }),
	}
	cs = append(cs,
		counter("starling_bus_publish_failed_total", "Deliveries to another node that could not be published (Redis down, the node gone); each is owed as an announce.", func() float64 { return float64(router.Stats().PublishFailed) }),
		counter("starling_bus_owed_sent_total", "Owed announces delivered after their publish had failed.", func() float64 { return float64(router.Stats().OwedSent) }),
		counter("starling_bus_owed_dropped_total", "Owed announces given up (too old or too many); the node's resync covers them.", func() float64 { return float64(router.Stats().OwedDropped) }),
		gauge("starling_bus_owed", "Owed announces waiting to be delivered.", func() float64 { return float64(router.Stats().Owed) }),
	)
	if rp, ok := pres.(*presence.Redis); ok {
		cs = append(cs,
			gauge("starling_presence_devices", "Devices online in the cluster, as this node's replica of presence knows them.", func() float64 { return float64(rp.Stats().Devices) }),
			gauge("starling_presence_live_nodes", "Nodes taken for live, this one included.", func() float64 { return float64(rp.Stats().LiveNodes) }),
			counter("starling_presence_redis_errors_total", "Presence calls to Redis that failed.", func() float64 { return float64(rp.Stats().Errors) }),
			counter("starling_presence_rebuilds_total", "Rebuilds of the presence replica from Redis.", func() float64 { return float64(rp.Stats().Rebuilds) }),
			counter("starling_presence_replaced_total", "Streams here replaced by a newer stream of their device on another node.", func() float64 { return float64(rp.Stats().Replaced) }),
			counter("starling_presence_lost_total", "Times Redis had forgotten this node (restart, flush, missed heartbeats).", func() float64 { return float64(rp.Stats().Lost) }),
		)
	}
	cs = append(cs, newAuthCollector(a))
	if ts, ok := store.(interface{ TxStats() storage.TxStats }); ok {
		cs = append(cs,
			counter("starling_db_transactions_total", "Write transactions run on the database.", func() float64 { return float64(ts.TxStats().Transactions) }),
			counter("starling_db_retries_total", "Write transaction attempts beyond the first (serialization failures, 40001, retried).", func() float64 {
				st := ts.TxStats()
				return float64(st.Attempts - st.Transactions)
			}),
			counter("starling_db_commit_conflicts_total", "COMMITs refused with 40001 and retried.", func() float64 { return float64(ts.TxStats().CommitConflicts) }),
		)
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return nil
}
