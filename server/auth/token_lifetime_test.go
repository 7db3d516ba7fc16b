package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/starling-im/starling/server/apierr"
)

// A token signed with the real secret is accepted only if this server
// could have issued it: issued now or in the past (a minute of clock skew
// allowed), living no longer than the configured lifetime.
func TestTokenLifetimeIsCapped(t *testing.T) {
	tok, err := NewTokens(secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(iat, exp time.Time, withIat bool) string {
		c := jwt.MapClaims{"sub": "u1", "dev": "d", "sid": "s", "iss": issuer, "exp": exp.Unix()}
		if withIat {
			c["iat"] = iat.Unix()
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tc := range map[string]struct {
		token string
		ok    bool
	}{
		"issued now, full lifetime":       {sign(now, now.Add(time.Hour), true), true},
		"issued 59 min ago":               {sign(now.Add(-59*time.Minute), now.Add(time.Minute), true), true},
		"clock 30 s ahead":                {sign(now.Add(30*time.Second), now.Add(time.Hour+30*time.Second), true), true},
		"expiry 100 years ahead":          {sign(now, now.AddDate(100, 0, 0), true), false},
		"lifetime one minute too long":    {sign(now, now.Add(time.Hour+time.Minute), true), false},
		"long-lived, issued long ago":     {sign(now.AddDate(-1, 0, 0), now.Add(time.Hour), true), false},
		"issued in the future":            {sign(now.Add(2*time.Minute), now.Add(time.Hour), true), false},
		"no issue time":                   {sign(now, now.Add(time.Hour), false), false},
		"no issue time, 100 years expiry": {sign(now, now.AddDate(100, 0, 0), false), false},
	} {
		_, err := tok.Verify(tc.token)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case !tc.ok && err == nil:
			t.Errorf("%s: accepted", name)
		case !tc.ok && !errors.Is(err, apierr.BadToken):
			t.Errorf("%s: %v; want BadToken", name, err)
		}
	}

	// A token issued under a longer lifetime than today's is refused.
	long, _ := NewTokens(secret, 30*24*time.Hour)
	s, _, err := long.Issue(Identity{UserID: "u1", DeviceID: "d", SessionID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Verify(s); err != nil {
		t.Fatalf("its own lifetime: %v", err)
	}
	if _, err := tok.Verify(s); !errors.Is(err, apierr.BadToken) {
		t.Fatalf("30-day token on a 1-hour server: %v", err)
	}
}
