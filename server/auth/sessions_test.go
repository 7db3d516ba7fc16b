package auth

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/starling-im/starling/server/apierr"
)

// Collection deletes expired and revoked sessions in bounded batches and
// keeps live ones; a revoked token whose session is gone stays refused.
func TestCollectSessions(t *testing.T) {
	a, st, clk := newTestAccounts(t, Limits{}, nil)
	ctx := t.Context()
	login := func(dev string) string {
		t.Helper()
		tok, _, _, err := a.Login(ctx, "alice", testPassword, dev)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old := []string{login("old1"), login("old2"), login("old3")} // will expire
	clk.advance(30 * time.Minute)
	live := login("live")
	revoked := login("revoked")
	id, err := a.Authenticate(ctx, revoked)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(ctx, id); err != nil {
		t.Fatal(err)
	}
	clk.advance(30*time.Minute + sessionGCMargin + time.Second) // the old ones are past expiry and the margin

	n, err := a.CollectSessions(ctx, 2)
	if err != nil || n != 4 {
		t.Fatalf("collected %d, %v; want 4 (3 expired, 1 revoked)", n, err)
	}
	if !slices.Equal(st.deletes, []int{2, 2, 2}) {
		t.Fatalf("DeleteSessions calls with limits %v; want batches of 2 until one came back short", st.deletes)
	}
	if len(st.sessions) != 1 {
		t.Fatalf("%d sessions left; want the live one", len(st.sessions))
	}
	if _, err := a.Authenticate(ctx, live); err != nil {
		t.Fatalf("live token after collection: %v", err)
	}
	// The revoked token is still within its lifetime: with its session
	// gone it is refused, as invalid.
	if _, err := a.Authenticate(ctx, revoked); !errors.Is(err, apierr.BadToken) {
		t.Fatalf("revoked token after its session was collected: %v", err)
	}
	for _, tok := range old {
		if _, err := a.Authenticate(ctx, tok); !errors.Is(err, apierr.TokenExpired) {
			t.Fatalf("expired token: %v", err)
		}
	}
}

// A session that expired less than the margin ago is kept (a node with a
// slower clock may still accept its token).
func TestCollectSessionsMargin(t *testing.T) {
	a, st, clk := newTestAccounts(t, Limits{}, nil)
	if _, _, _, err := a.Login(t.Context(), "alice", testPassword, "d"); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Hour + sessionGCMargin/2)
	if n, err := a.CollectSessions(t.Context(), 10); err != nil || n != 0 || len(st.sessions) != 1 {
		t.Fatalf("collected %d, %v, %d left; want the just-expired session kept", n, err, len(st.sessions))
	}
	clk.advance(sessionGCMargin)
	if n, err := a.CollectSessions(t.Context(), 10); err != nil || n != 1 {
		t.Fatalf("collected %d, %v; want 1", n, err)
	}
}

// The collector runs every interval and stops with its context.
func TestRunSessionCollector(t *testing.T) {
	a, st, _ := newTestAccounts(t, Limits{}, nil)
	tok, _, _, err := a.Login(t.Context(), "alice", testPassword, "d")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := a.Authenticate(t.Context(), tok)
	if err := a.Logout(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.RunSessionCollector(ctx, 5*time.Millisecond, 10)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.mu.Lock()
		n := len(st.sessions)
		st.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked session was not collected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	// Off: returns at once.
	a.RunSessionCollector(t.Context(), 0, 10)
	a.RunSessionCollector(t.Context(), time.Second, 0)
}
