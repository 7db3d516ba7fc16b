package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
	"golang.org/x/crypto/bcrypt"
)

func wantMintedHits(t *testing.T, a *Accounts, want int64, what string) {
	t.Helper()
	if n := a.MintedTokenHits(); n != want {
		t.Fatalf("%s: %d checks answered by the minted-token table; want %d", what, n, want)
	}
}

// A device's first check of the token it just got from Login, on the node
// that signed it, parses nothing and reads nothing; later checks keep
// skipping the parse, and read the session once per TTL as before.
func TestMintedTokenFirstCheck(t *testing.T) {
	a, st, clk, tok := newLoggedIn(t, 100)
	id, err := a.Authenticate(t.Context(), tok)
	if err != nil || id.UserID != "u-alice" || id.DeviceID != "phone" || id.SessionID == "" {
		t.Fatalf("first check: %+v, %v", id, err)
	}
	parsed, err := a.tokens.Verify(tok)
	if err != nil || parsed != id {
		t.Fatalf("the table says %+v; the token says %+v (%v)", id, parsed, err)
	}
	wantMintedHits(t, a, 1, "first check")
	wantReads(t, st, 0, "first check after Login")

	clk.advance(testCacheTTL + time.Millisecond)
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	wantMintedHits(t, a, 2, "a check past the session TTL")
	wantReads(t, st, 1, "a check past the session TTL")
}

// A remembered token is refused from its exp on, exactly when the parser
// refuses it, with the same error.
func TestMintedTokenExpiry(t *testing.T) {
	a, _, clk, tok := newLoggedIn(t, 100)
	exp := jwt.NewNumericDate(clk.now().Add(a.tokens.ttl)).Time // the exp claim Login signed
	clk.t = exp.Add(-time.Nanosecond)
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatalf("a nanosecond before exp: %v", err)
	}
	wantMintedHits(t, a, 1, "before exp")
	clk.t = exp
	_, err := a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenExpired, "at exp")
	_, err = a.tokens.Verify(tok)
	wantErr(t, err, apierr.TokenExpired, "the parser at exp")
	wantMintedHits(t, a, 1, "at exp")
}

// Logout refuses a remembered token at once; a revocation elsewhere (in
// the store behind this node's back) within the session TTL, as for a
// parsed token.
func TestMintedTokenRevoked(t *testing.T) {
	a, _, _, tok := newLoggedIn(t, 100)
	id, err := a.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenRevoked, "after logout here")

	a, st, clk, tok := newLoggedIn(t, 100)
	id, err = a.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeSession(t.Context(), id.SessionID); err != nil {
		t.Fatal(err)
	}
	clk.advance(testCacheTTL + time.Millisecond)
	_, err = a.Authenticate(t.Context(), tok)
	wantErr(t, err, apierr.TokenRevoked, "revoked elsewhere, past the session TTL")
	wantMintedHits(t, a, 2, "revoked elsewhere")
}

// Tokens signed by another node (same secret), altered tokens and tokens
// forgotten past the bound are parsed as before.
func TestMintedTokenOthersParsed(t *testing.T) {
	a, st, _, tok := newLoggedIn(t, 2)
	b, err := NewAccounts(st, a.tokens, a.bcryptCost, Limits{SessionCacheTTL: testCacheTTL, MaxTracked: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.now = a.now
	if _, err := b.Authenticate(t.Context(), tok); err != nil {
		t.Fatalf("a token signed by another node: %v", err)
	}
	wantMintedHits(t, b, 0, "a token signed by another node")

	_, err = a.Authenticate(t.Context(), tok[:len(tok)-2]+"AA")
	wantErr(t, err, apierr.BadToken, "a remembered token, altered")
	wantMintedHits(t, a, 0, "an altered token")

	for _, dev := range []string{"tablet", "laptop"} {
		if _, _, _, err := a.Login(t.Context(), "alice", testPassword, dev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatalf("a token forgotten past the bound: %v", err)
	}
	wantMintedHits(t, a, 0, "a token forgotten past the bound")
}

// With MaxTracked 0 (the zero Limits) nothing is remembered.
func TestMintedTokenOff(t *testing.T) {
	a, _, _ := newTestAccounts(t, Limits{}, nil)
	tok, _, _, err := a.Login(t.Context(), "alice", testPassword, "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	wantMintedHits(t, a, 0, "table off")
}

// The token check of a stream's first connect, on the node that signed the
// token (minted) and on another one (parsed); the session is cached in
// both, so this is the CPU and allocation of the check itself.
func BenchmarkAuthenticate(b *testing.B) {
	for _, name := range []string{"minted", "parsed"} {
		b.Run(name, func(b *testing.B) {
			st := newMemStore()
			tok, err := NewTokens(secret, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			l := Limits{SessionCacheTTL: time.Hour, MaxTracked: 100}
			a, _ := NewAccounts(st, tok, 4, l, nil)
			hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), 4)
			st.users["alice"] = storage.User{ID: "u-alice", Username: "alice", PasswordHash: hash}
			token, _, _, err := a.Login(b.Context(), "alice", testPassword, "phone")
			if err != nil {
				b.Fatal(err)
			}
			if name == "parsed" {
				a.minted = newMintedTokens(0)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(b.Context(), token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
