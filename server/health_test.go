package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/starling-im/starling/internal/testproxy"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// /readyz and the gRPC health service follow the database: NOT ready while
// it is unreachable, ready again when it is back; /healthz stays up.
func TestReadinessFollowsTheDatabase(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	proxy, viaProxy := testproxy.NewProxy(t, dbURL)
	srv := servertest.Start(t, servertest.WithStore(func(t testing.TB) storage.Store { return pgtest.Open(t, viaProxy) }))
	web := httptest.NewServer(srv.Node().HealthHandler())
	defer web.Close()
	hc := healthpb.NewHealthClient(srv.Dial(t))

	get := func(path string) (int, string) {
		res, err := http.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	grpcStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		res, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "starling.v1.ChatService"})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetStatus()
	}
	// waitFor polls until the node reports ready (or not): the prober
	// looks every 2 s.
	waitFor := func(ready bool) {
		t.Helper()
		want, wantGRPC := http.StatusOK, healthpb.HealthCheckResponse_SERVING
		if !ready {
			want, wantGRPC = http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING
		}
		for deadline := time.Now().Add(servertest.Timeout); ; time.Sleep(50 * time.Millisecond) {
			code, body := get("/readyz")
			if code == want && grpcStatus() == wantGRPC {
				if !ready && !strings.Contains(body, "database unreachable") {
					t.Fatalf("/readyz says %q", body)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz %d %q, gRPC health %v; want %d, %v", code, body, grpcStatus(), want, wantGRPC)
			}
		}
	}
	waitFor(true)
	proxy.Cut()
	waitFor(false)
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d while the database is down", code)
	}
	proxy.Restore()
	waitFor(true)
}
