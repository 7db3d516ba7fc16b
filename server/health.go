package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pinger is a store that can say whether its database answers.
type pinger interface {
	Ping(ctx context.Context) error
}

// readiness is whether this node should get traffic: its database answers
// and it is not draining. A prober refreshes it; the gRPC health service
// and /readyz report it.
type readiness struct {
	mu       sync.Mutex
	dbErr    error
	draining bool
}

var errDraining = errors.New("draining: shutting down")

func (r *readiness) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return errDraining
	}
	return r.dbErr
}

// Ready returns nil when the node should get traffic, else why not.
func (s *Server) Ready() error { return s.ready.err() }

// probeInterval is how often the database is pinged for readiness.
const probeInterval = 2 * time.Second

// probe pings the database every probeInterval until ctx ends, and keeps
// readiness and the gRPC health status in step with the answers.
func (s *Server) probe(ctx context.Context, p pinger) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, probeInterval)
		err := p.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.ready.mu.Lock()
		was := s.ready.dbErr
		s.ready.dbErr = err
		draining := s.ready.draining
		s.ready.mu.Unlock()
		switch {
		case err != nil && was == nil:
			s.log.Error("database unreachable: reporting NOT_SERVING", "err", err)
		case err == nil && was != nil:
			s.log.Info("database reachable again: reporting SERVING")
		}
		if !draining {
			s.setServing(err == nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// servingNames are the names the gRPC health service answers for: the
// whole server ("") and each Starling service.
var servingNames = []string{"", "starling.v1.AuthService", "starling.v1.UserService", "starling.v1.GroupService", "starling.v1.ChatService"}

func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, name := range servingNames {
		s.health.SetServingStatus(name, st)
	}
}

// HealthHandler serves /healthz (the process is up: always 200) and
// /readyz (200 when the node should get traffic; 503 with the reason while
// its database is unreachable or it is draining), for load balancers and
// orchestrators. starlingd serves them on --metrics-listen.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + readyReason(err) + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// readyReason says why without the database's own words, which may name
// hosts and users.
func readyReason(err error) string {
	if errors.Is(err, errDraining) {
		return "draining"
	}
	return "database unreachable"
}
