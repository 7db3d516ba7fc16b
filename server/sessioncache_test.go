package server_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// sessionCacheCounts reads starling_auth_session_cache_total from reg.
func sessionCacheCounts(t *testing.T, reg *prometheus.Registry) (hits, misses float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "starling_auth_session_cache_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() != "result":
				case l.GetValue() == "hit":
					hits = value(m)
				case l.GetValue() == "miss":
					misses = value(m)
				}
			}
		}
	}
	return hits, misses
}

// awaitRefused calls ListConversations with token on srv until it is
// refused Unauthenticated, and returns how long that took; it fails the
// test after 20 s.
func awaitRefused(t *testing.T, srv *servertest.Server, token string) time.Duration {
	t.Helper()
	chatc := chatClient(t, srv)
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		_, err := chatc.ListConversations(servertest.WithToken(t.Context(), token), &starlingv1.ListConversationsRequest{})
		switch code := status.Code(err); {
		case code == codes.Unauthenticated:
			return time.Since(start)
		case err != nil:
			t.Fatalf("token check: %v; want OK (cached) or Unauthenticated", err)
		case time.Now().After(deadline):
			t.Fatalf("a revoked token still accepted %v after its revocation", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Token checks reuse the node's read of their session, and a Login counts
// as one: the calls of a token just issued read nothing (the metric
// counts hits and misses). A
// session revoked in the database behind the node's back, as another
// node's logout does, is refused once the cached read is older than
// SessionCacheTTL.
func TestSessionCacheOverGRPC(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			const ttl = 300 * time.Millisecond
			reg := prometheus.NewRegistry()
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.Registerer = reg
				c.AuthLimits.SessionCacheTTL = ttl
			}))
			alice := srv.NewUser(t, "alice")
			chatc := chatClient(t, srv)
			// The Login caches the session it creates: calls within the
			// TTL of the Login read nothing (the calls are quick, but
			// never assume so: a slow machine may see a miss).
			start := time.Now()
			tok := srv.Login(t, alice, "phone")
			for range 3 {
				if _, err := chatc.ListConversations(servertest.WithToken(t.Context(), tok), &starlingv1.ListConversationsRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			hits, misses := sessionCacheCounts(t, reg)
			if time.Since(start) < ttl && (hits != 3 || misses != 0) {
				t.Fatalf("3 calls within the TTL of the Login: %v hits, %v misses; want 3, 0", hits, misses)
			}
			if hits+misses != 3 {
				t.Fatalf("3 calls: %v hits, %v misses", hits, misses)
			}

			if err := srv.Store().RevokeSession(t.Context(), sessionID(t, tok)); err != nil {
				t.Fatal(err)
			}
			took := awaitRefused(t, srv, tok)
			t.Logf("revoked in the database: refused after %v (TTL %v)", took.Round(time.Millisecond), ttl)
			// A new stream with the token is refused too.
			if _, err := srv.OpenRawStream(t, servertest.WithToken(t.Context(), tok)).End(t); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("stream with the revoked token: %v, want Unauthenticated", err)
			}
		})
	}
}

// A logout through one node of a cluster is refused at once there, and
// on another node that had the session cached within its SessionCacheTTL.
func TestClusterLogoutSeenWithinSessionCacheTTL(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	c, _, _, phone := startAliceBob(t, func(cfg *server.Config) {
		noRecheck(cfg)
		cfg.AuthLimits.SessionCacheTTL = ttl
	})
	n0, n2 := c.Nodes[0], c.Nodes[2]
	// node-2 reads (and caches) the session.
	if _, err := chatClient(t, n2.Server).ListConversations(servertest.WithToken(t.Context(), phone.token), &starlingv1.ListConversationsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := starlingv1.NewAuthServiceClient(n0.Dial(t)).Logout(servertest.WithToken(t.Context(), phone.token), &starlingv1.LogoutRequest{}); err != nil {
		t.Fatalf("logout through node-0: %v", err)
	}
	if _, err := chatClient(t, n0.Server).ListConversations(servertest.WithToken(t.Context(), phone.token), &starlingv1.ListConversationsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the logged-out token on node-0, right after the logout: %v, want Unauthenticated", err)
	}
	took := awaitRefused(t, n2.Server, phone.token)
	t.Logf("node-2 refused the logged-out token %v after the logout (TTL %v)", took.Round(time.Millisecond), ttl)
}
