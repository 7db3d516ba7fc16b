package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starling-im/starling/server/apierr"
)

// fuzzTokens signs with a fixed secret on a fixed clock, so the tokens it
// issues, and the committed corpus made from them
// (testdata/fuzz/FuzzTokenVerify: respellings, forgeries, tokens the server
// would never sign), are the same on every run.
func fuzzTokens(tb testing.TB) (*Tokens, map[string]Identity) {
	tb.Helper()
	tok, err := NewTokens([]byte("fuzz-secret-fuzz-secret-fuzz-sec"), time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tok.now = func() time.Time { return now }
	issued := make(map[string]Identity)
	for _, id := range []Identity{
		{UserID: "u1", DeviceID: "phone", SessionID: "s1"},
		{UserID: "uyf4feouzslyu7zo3", DeviceID: "cli-host.send", SessionID: "s7d2kq9x0c4mv1a8b"},
	} {
		s, _, err := tok.Issue(id)
		if err != nil {
			tb.Fatal(err)
		}
		issued[s] = id
	}
	return tok, issued
}

// FuzzTokenVerify: Verify never panics, accepts exactly the strings Issue
// made (no other spelling of them, no forgery) with the identity they were
// issued for, and refuses everything else with BadToken or TokenExpired.
func FuzzTokenVerify(f *testing.F) {
	tok, issued := fuzzTokens(f)
	for s := range issued {
		f.Add(s)
		f.Add(s[:len(s)-1])
		f.Add(strings.ToUpper(s[:1]) + s[1:])
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tok.Verify(s)
		if err != nil {
			if !errors.Is(err, apierr.BadToken) && !errors.Is(err, apierr.TokenExpired) {
				t.Fatalf("Verify(%q): %v, which is neither BadToken nor TokenExpired", s, err)
			}
			return
		}
		want, ok := issued[s]
		if !ok {
			t.Fatalf("Verify accepted %q, which Issue did not make, as %+v", s, id)
		}
		if id != want {
			t.Fatalf("Verify(%q) = %+v; it was issued for %+v", s, id, want)
		}
	})
}

// The tokens of the corpus verify, as what they were issued for.
func TestFuzzTokensAreValid(t *testing.T) {
	tok, issued := fuzzTokens(t)
	for s, want := range issued {
		if got, err := tok.Verify(s); err != nil || got != want {
			t.Fatalf("Verify(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
}

// A token verifies only as Issue spelled it. Base64 leaves some low bits of
// a segment's last character unused; a lenient decoder takes any value
// there, so the same token could be sent in four spellings.
func TestTokenHasOneSpelling(t *testing.T) {
	tok, issued := fuzzTokens(t)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for s := range issued {
		for end := range len(s) + 1 {
			if end < len(s) && s[end] != '.' {
				continue
			}
			// end is where a segment ends: vary its last character.
			for _, c := range alphabet {
				v := s[:end-1] + string(c) + s[end:]
				if v == s {
					continue
				}
				if _, err := tok.Verify(v); err == nil {
					t.Errorf("Verify accepted %q, a respelling of %q", v, s)
				}
			}
		}
		// Base64 decoders skip line breaks; padding is not part of a token.
		for i := range len(s) + 1 {
			for _, extra := range []string{"\n", "\r", "\r\n", "=", " "} {
				if v := s[:i] + extra + s[i:]; verifies(tok, v) {
					t.Errorf("Verify accepted %q, %q inserted at %d of %q", v, extra, i, s)
				}
			}
		}
	}
	if verifies(tok, strings.Repeat("a", maxTokenBytes+1)) {
		t.Error("Verify accepted a long string")
	}
}

func verifies(tok *Tokens, s string) bool {
	_, err := tok.Verify(s)
	return err == nil
}
