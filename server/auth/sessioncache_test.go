package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/server/apierr"
)

const testCacheTTL = 5 * time.Second

// newCachedAccounts is newTestAccounts with the session cache on
// (testCacheTTL, max sessions) and alice logged in on a phone longer ago
// than the TTL, so that what Login cached of her session has run out.
func newCachedAccounts(t *testing.T, max int) (*Accounts, *memStore, *clock, string) {
	t.Helper()
	a, st, clk, tok := newLoggedIn(t, max)
	clk.advance(testCacheTTL + time.Millisecond)
	return a, st, clk, tok
}

// newLoggedIn is newCachedAccounts just after the Login.
func newLoggedIn(t *testing.T, max int) (*Accounts, *memStore, *clock, string) {
	t.Helper()
	a, st, clk := newTestAccounts(t, Limits{SessionCacheTTL: testCacheTTL, MaxTracked: max}, nil)
	tok, _, _, err := a.Login(t.Context(), "alice", testPassword, "phone")
	if err != nil {
		t.Fatal(err)
	}
	return a, st, clk, tok
}

// newRevokedElsewhere is newCachedAccounts with alice's token checked (so
// its session is cached), then its session revoked in the store behind the
// Accounts' back, as another node's Logout does.
func newRevokedElsewhere(t *testing.T) (*Accounts, *memStore, *clock, string) {
	t.Helper()
	a, st, clk, tok := newCachedAccounts(t, 100)
	id, err := a.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeSession(t.Context(), id.SessionID); err != nil {
		t.Fatal(err)
	}
	return a, st, clk, tok
}

func wantReads(t *testing.T, st *memStore, want int, what string) {
	t.Helper()
	if n := st.getCount(); n != want {
		t.Fatalf("%s: %d session reads; want %d", what, n, want)
	}
}

// A token checked again within the TTL reads the database once; after the
// TTL it is read again.
func TestSessionCacheHit(t *testing.T) {
	a, st, clk, tok := newCachedAccounts(t, 100)
	for i := range 3 {
		id, err := a.Authenticate(t.Context(), tok)
		if err != nil || id.UserID != "u-alice" || id.DeviceID != "phone" {
			t.Fatalf("check %d: %+v, %v", i+1, id, err)
		}
		clk.advance(time.Second)
	}
	wantReads(t, st, 1, "three checks within the TTL")
	if hits, misses := a.SessionCacheCounts(); hits != 2 || misses != 1 {
		t.Fatalf("%d hits, %d misses; want 2, 1", hits, misses)
	}
	// The entry's age counts from its read, not from its last use.
	clk.advance(testCacheTTL - 3*time.Second + time.Millisecond)
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	wantReads(t, st, 2, "a check past the TTL")
}

// With SessionCacheTTL 0 every check reads the database (as before the
// cache).
func TestSessionCacheOff(t *testing.T) {
	a, st, _ := newTestAccounts(t, Limits{}, nil)
	tok, _, _, err := a.Login(t.Context(), "alice", testPassword, "phone")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Authenticate(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	wantReads(t, st, 3, "cache off")
	if hits, misses := a.SessionCacheCounts(); hits != 0 || misses != 3 {
		t.Fatalf("%d hits, %d misses; want 0, 3", hits, misses)
	}
}

// Logout on this node refuses the token here at once, cached or not, and
// without reading the database again.
func TestSessionCacheLogout(t *testing.T) {
	a, st, _, tok := newCachedAccounts(t, 100)
	id, err := a.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := a.Authenticate(t.Context(), tok)
		wantErr(t, err, apierr.TokenRevoked, "check after logout")
	}
	wantReads(t, st, 1, "checks after logout")
}

// A session revoked in the database by someone else (another node's
// Logout) is accepted here until the entry's TTL runs out, then refused;
// the refusal is cached too (a revoked session stays revoked).
func TestSessionCacheRevokedElsewhere(t *testing.T) {
	a, st, clk, tok := newRevokedElsewhere(t)
	clk.advance(testCacheTTL - time.Millisecond)
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatalf("within the TTL of its read: %v (the bound allows it; the cache should have answered)", err)
	}
	clk.advance(2 * time.Millisecond)
	_, err := a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenRevoked, "check past the TTL")
	_, err = a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenRevoked, "check again")
	wantReads(t, st, 2, "revoked elsewhere")
}

// A session that is not found is not cached: every check reads (and
// refuses).
func TestSessionCacheNotFoundNotCached(t *testing.T) {
	a, st, _, tok := newCachedAccounts(t, 100)
	st.mu.Lock()
	clear(st.sessions)
	st.mu.Unlock()
	for range 2 {
		_, err := a.Authenticate(t.Context(), tok)
		wantErr(t, err, apierr.BadToken, "no session")
	}
	wantReads(t, st, 2, "missing session")
	if n := a.sessions.len(); n != 0 {
		t.Fatalf("%d sessions cached; want none", n)
	}
}

// A check whose read overlapped a Logout on this node does not cache what
// it read: the token is refused after the Logout, even though the read
// (made before the revocation) found the session live.
func TestSessionCacheReadRacingLogout(t *testing.T) {
	a, st, _, tok := newCachedAccounts(t, 100)
	id, err := a.tokens.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	read, release := make(chan struct{}), make(chan struct{})
	st.mu.Lock()
	st.afterGet = func(string) {
		close(read)
		<-release
	}
	st.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(t.Context(), tok)
		done <- err
	}()
	<-read // the read found the session live; its answer is on its way
	st.mu.Lock()
	st.afterGet = nil
	st.mu.Unlock()
	if err := a.Logout(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the check that read before the logout: %v", err)
	}
	_, err = a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenRevoked, "check after the logout")
}

// Session collection forgets the cache: a session revoked elsewhere and
// deleted by this node's collector is refused here at once.
func TestSessionCacheCollection(t *testing.T) {
	a, _, _, tok := newRevokedElsewhere(t)
	if n, err := a.CollectSessions(t.Context(), 10); err != nil || n != 1 {
		t.Fatalf("collected %d, %v; want 1", n, err)
	}
	_, err := a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.BadToken, "check after collection")
}

// The cache holds at most MaxTracked sessions, and sessions dropped from
// it still authenticate (by reading again).
func TestSessionCacheBounded(t *testing.T) {
	const max = 10
	a, st, _, _ := newCachedAccounts(t, max)
	var toks []string
	for i := range 5 * max {
		tok, _, _, err := a.Login(t.Context(), "alice", testPassword, fmt.Sprintf("d%d", i))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		if _, err := a.Authenticate(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		if n := a.sessions.len(); n > max {
			t.Fatalf("%d sessions cached; bound %d", n, max)
		}
	}
	if n := a.sessions.len(); n != max {
		t.Fatalf("%d sessions cached; want the table full (%d)", n, max)
	}
	before := st.getCount()
	for _, tok := range toks {
		if _, err := a.Authenticate(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	// Each pass over 50 sessions in order evicts the next one needed.
	wantReads(t, st, before+len(toks), "checks of evicted sessions")
}

// Concurrent checks, logouts and collections (for the race detector); a
// session logged out is refused by every check that starts afterwards.
func TestSessionCacheConcurrent(t *testing.T) {
	a, _, _, _ := newCachedAccounts(t, 8)
	var toks []string
	for i := range 16 {
		tok, _, _, err := a.Login(t.Context(), "alice", testPassword, fmt.Sprintf("d%d", i))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	var wg sync.WaitGroup
	for i, tok := range toks {
		wg.Go(func() {
			for range 50 {
				if _, err := a.Authenticate(t.Context(), tok); err != nil {
					t.Errorf("live token %d: %v", i, err)
					return
				}
			}
			if i%2 == 1 {
				return
			}
			id, _ := a.tokens.Verify(tok)
			if err := a.Logout(t.Context(), id); err != nil {
				t.Error(err)
				return
			}
			for range 20 {
				if _, err := a.Authenticate(t.Context(), tok); err == nil {
					t.Errorf("token %d accepted after its logout", i)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := a.CollectSessions(t.Context(), 100); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}
