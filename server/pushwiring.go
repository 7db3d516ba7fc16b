package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/storage"
)

// newBackend puts the offline check behind the router (server/push) and
// builds its notifier (the push webhook when configured, else the log)
// and the event webhook.
// backend is what a node tells a backend: offline notifications and events.
type backend struct {
	offline  *push.Offline
	webhooks []*push.Webhook // the push webhook and the event webhook, when set
	events   *push.Events    // nil: no event webhook
}

func newBackend(cfg Config, router *bus.Router, pres presence.Presence, h *hub.Hub, store storage.Store, log *slog.Logger) (backend, error) {
	var (
		b        backend
		notifier push.Notifier = push.LogNotifier{Log: log}
		metrics  []prometheus.Collector
	)
	if cfg.PushWebhook != nil {
		w, err := push.NewWebhook(*cfg.PushWebhook, log)
		if err != nil {
			return b, err
		}
		notifier = push.WebhookNotifier{Webhook: w}
		b.webhooks = append(b.webhooks, w)
		metrics = append(metrics, webhookMetrics("starling_push_webhook", w)...)
	}
	if cfg.EventWebhook != nil {
		w, err := push.NewWebhook(*cfg.EventWebhook, log)
		if err != nil {
			return b, err
		}
		b.events = push.NewEvents(w, cfg.NodeID, cfg.EventTypes)
		b.webhooks = append(b.webhooks, w)
		metrics = append(metrics, webhookMetrics("starling_event_webhook", w)...)
	}
	b.offline = push.NewOffline(router, push.OfflineConfig{
		Node: cfg.NodeID, Notifier: notifier, Locator: pres, Local: h, Tokens: store, Muter: muterOf(cfg, store), Badges: storeBadges{store},
		Window: cfg.PushWindow, Preview: cfg.PushPreview, Events: b.events,
	}, log)
	metrics = append(metrics, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "starling_push_offline_dropped_total", Help: "Messages whose offline check (and message.stored event) was dropped: queue full."},
		func() float64 { return float64(b.offline.Dropped.Load()) }))
	if cfg.Registerer != nil {
		if err := registerAll(cfg.Registerer, metrics); err != nil {
			return b, err
		}
	}
	return b, nil
}

// presence is the gateway's presence: with user.online/offline events
// when they are enabled.
func (b backend) presence(p push.StreamPresence) push.StreamPresence {
	if b.events.Enabled(push.EventUserOnline) || b.events.Enabled(push.EventUserOffline) {
		return push.PresenceEvents{Presence: p, Events: b.events}
	}
	return p
}

func webhookMetrics(prefix string, w *push.Webhook) []prometheus.Collector {
	st := w.Stats()
	var cs []prometheus.Collector
	for _, c := range []struct {
		name, help string
		v          func() int64
	}{
		{"_sent_total", "Webhook calls the receiver accepted.", st.Sent.Load},
		{"_failed_total", "Webhook calls given up after their attempts (or refused with a 4xx).", st.Failed.Load},
		{"_dropped_total", "Webhook calls dropped because the queue was full.", st.Dropped.Load},
		{"_retries_total", "Webhook attempts after the first.", st.Retried.Load},
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: prefix + c.name, Help: c.help}, func() float64 { return float64(c.v()) }))
	}
	return cs
}

func registerAll(reg prometheus.Registerer, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// runPush runs the offline check and the webhooks until the returned stop
// is called.
func (s *Server) runPush(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.backend.offline.Run(ctx)
	}()
	for _, w := range s.backend.webhooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Run(ctx)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// muterOf is what keeps muted conversations from pushing: cfg.PushMuter
// when set, else the users' own mutes (ChatService.SetMute), read from the
// store for each offline recipient (off the send path: the offline check
// runs on its own goroutine).
func muterOf(cfg Config, store storage.Store) push.Muter {
	if cfg.PushMuter != nil {
		return cfg.PushMuter
	}
	return storeMuter{store}
}

type storeMuter struct{ store storage.ReadState }

func (m storeMuter) Muted(ctx context.Context, userID, conversationID string) (bool, error) {
	until, err := m.store.MutedUntil(ctx, userID, conversationID)
	if err != nil {
		return false, err
	}
	return time.Now().Before(until), nil
}

// storeBadges counts a user's unread messages: one read per notification
// (the sum of the inbox's per-conversation counts, which leave out the
// user's own messages, without the rest of the inbox), nothing written
// per message.
type storeBadges struct{ store storage.ReadState }

func (b storeBadges) Badge(ctx context.Context, userID string) (int64, error) {
	return b.store.UnreadTotal(ctx, userID)
}
