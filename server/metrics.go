package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-im/starling/server/hub"
)

// registerHubMetrics exposes the hub's state. The values are read at scrape
// time, so the hot path pays nothing for them.
func registerHubMetrics(r prometheus.Registerer, h *hub.Hub) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "starling_sessions", Help: "Device streams open on this node.",
		}, func() float64 { return float64(h.Stats().Sessions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "starling_sessions_opened_total", Help: "Device streams authenticated and registered since start.",
		}, func() float64 { return float64(h.Stats().Opened) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "starling_slow_disconnects_total", Help: "Streams cut because their outbound queue was full.",
		}, func() float64 { return float64(h.Stats().SlowDisconnects) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "starling_notifies_total", Help: "Conversations switched to pull mode because a device's push window was full.",
		}, func() float64 { return float64(h.Stats().Notifies) }),
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("server: register hub metrics: %w", err)
		}
	}
	return nil
}
