package server

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/storage"
)

// newOffline puts the offline check behind the router (server/push) and
// builds its notifier: the webhook when configured, else the log.
func newOffline(cfg Config, router *bus.Router, pres presence.Presence, h *hub.Hub, store storage.Store, log *slog.Logger) (*push.Offline, *push.Webhook, error) {
	var (
		notifier push.Notifier = push.LogNotifier{Log: log}
		webhook  *push.Webhook
		err      error
	)
	if cfg.PushWebhook != nil {
		if webhook, err = push.NewWebhook(*cfg.PushWebhook, log); err != nil {
			return nil, nil, err
		}
		notifier = push.WebhookNotifier{Webhook: webhook}
	}
	offline := push.NewOffline(router, push.OfflineConfig{
		Node: cfg.NodeID, Notifier: notifier, Locator: pres, Local: h, Tokens: store, Muter: cfg.PushMuter,
		Window: cfg.PushWindow, Preview: cfg.PushPreview,
	}, log)
	if cfg.Registerer != nil {
		if err := registerPushMetrics(cfg.Registerer, offline, webhook); err != nil {
			return nil, nil, err
		}
	}
	return offline, webhook, nil
}

func registerPushMetrics(reg prometheus.Registerer, o *push.Offline, w *push.Webhook) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "starling_push_offline_dropped_total", Help: "Messages whose offline check was dropped (queue full)."},
			func() float64 { return float64(o.Dropped.Load()) }),
	}
	if w != nil {
		st := w.Stats()
		for _, c := range []struct {
			name, help string
			v          func() int64
		}{
			{"starling_push_webhook_sent_total", "Webhook calls the receiver accepted.", st.Sent.Load},
			{"starling_push_webhook_failed_total", "Webhook calls given up after their attempts (or refused with a 4xx).", st.Failed.Load},
			{"starling_push_webhook_dropped_total", "Webhook calls dropped because the queue was full.", st.Dropped.Load},
			{"starling_push_webhook_retries_total", "Webhook attempts after the first.", st.Retried.Load},
		} {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return float64(c.v()) }))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// runPush runs the offline check and the webhook until the returned stop
// is called.
func (s *Server) runPush(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.offline.Run(ctx)
	}()
	if s.webhook != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.webhook.Run(ctx)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
