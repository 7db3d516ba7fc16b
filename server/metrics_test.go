package server_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// A scrape shows the node's metrics moving under traffic.
func TestMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.Registerer = reg }))
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice, bob := connect(t, srv, aliceU, "phone"), connect(t, srv, bobU, "phone")
	for i := range 5 {
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint(i), "hi"))
	}
	ms := pushed(t, bob, 5)
	syncAll(t, bob, ms[0].GetConversationId(), 0)
	expectError(t, alice, alice.Send(t, &starlingv1.StreamRequest{}), codes.InvalidArgument)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()] += value(m)
		}
	}
	for name, atLeast := range map[string]float64{
		"starling_messages_committed_total": 5,
		"starling_commit_seconds":           1, // sample counts
		"starling_commit_batch_size":        1,
		"starling_send_seconds":             5,
		"starling_messages_pushed_total":    5,
		"starling_push_frames_total":        1,
		"starling_messages_synced_total":    5,
		"starling_stream_refusals_total":    1,
		"starling_sessions":                 2,
		"starling_sessions_opened_total":    2,
		"grpc_server_handled_total":         1, // the unary calls of the setup
		"starling_auth_total":               6, // 2 registrations, 2 logins, 2 stream tokens
		"starling_auth_session_cache_total": 2, // the 2 stream tokens, hits and misses
	} {
		if got[name] < atLeast {
			t.Errorf("%s = %v, want at least %v", name, got[name], atLeast)
		}
	}
	for _, name := range []string{"starling_queued_bytes", "starling_streams_waiting_auth", "starling_slow_disconnects_total", "starling_notifies_total"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s is not exported", name)
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}
