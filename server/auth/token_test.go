package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte(strings.Repeat("k", 32))

func TestTokenRoundTrip(t *testing.T) {
	tok, err := NewTokens(secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{UserID: "u1", DeviceID: "phone", SessionID: "s1"}
	s, exp, err := tok.Issue(want)
	if err != nil || time.Until(exp) < 59*time.Minute {
		t.Fatalf("issue: %v, expires %v", err, exp)
	}
	got, err := tok.Verify(s)
	if err != nil || got != want {
		t.Fatalf("verify: %+v %v", got, err)
	}
}

func TestTokenRejections(t *testing.T) {
	tok, _ := NewTokens(secret, time.Hour)
	good, _, _ := tok.Issue(Identity{UserID: "u1", DeviceID: "phone", SessionID: "s1"})

	other, _ := NewTokens([]byte(strings.Repeat("o", 32)), time.Hour)
	foreign, _, _ := other.Issue(Identity{UserID: "u1", DeviceID: "phone", SessionID: "s1"})

	past, _ := NewTokens(secret, time.Hour)
	past.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _, _ := past.Issue(Identity{UserID: "u1", DeviceID: "phone", SessionID: "s1"})

	// alg "none", and HS256 tokens with missing claims or another issuer.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "dev": "d", "sid": "s", "iss": issuer, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	sign := func(c jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	for name, s := range map[string]string{
		"empty":          "",
		"garbage":        "a.b.c",
		"tampered":       good[:len(good)-3] + "abc",
		"other secret":   foreign,
		"expired":        expired,
		"alg none":       none,
		"no expiry":      sign(jwt.MapClaims{"sub": "u1", "dev": "d", "sid": "s", "iss": issuer}),
		"wrong issuer":   sign(jwt.MapClaims{"sub": "u1", "dev": "d", "sid": "s", "iss": "evil", "exp": exp}),
		"no device":      sign(jwt.MapClaims{"sub": "u1", "sid": "s", "iss": issuer, "exp": exp}),
		"no session":     sign(jwt.MapClaims{"sub": "u1", "dev": "d", "iss": issuer, "exp": exp}),
		"no subject":     sign(jwt.MapClaims{"dev": "d", "sid": "s", "iss": issuer, "exp": exp}),
		"trailing space": good + " ",
	} {
		if _, err := tok.Verify(s); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "expired" && !strings.Contains(err.Error(), "expired") {
			t.Errorf("expired token error %q does not say so", err)
		}
	}
}

func TestNewTokensValidates(t *testing.T) {
	if _, err := NewTokens([]byte("short"), time.Hour); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewTokens(secret, 0); err == nil {
		t.Error("zero lifetime accepted")
	}
}
