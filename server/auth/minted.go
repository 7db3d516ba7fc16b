package auth

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintedTokens remembers the identities of the tokens this node signed, so
// that checking one of them (a phone's first connect after its Login,
// usually on the node it logged in through) costs no JWT parse: parsing
// and verifying the signature was most of a token check's CPU.
//
// An entry is keyed by the SHA-256 of the token, so a hit means the very
// string Issue signed, and the table does not hold bearer tokens. It says
// only what the signature would: who the token names and until when. The
// session's revocation is checked after it exactly as after a parse
// (sessionCache), so a logout refuses a remembered token as it does any
// other. An entry is trusted until the token's exp claim (the same instant
// and comparison the parser uses), never longer; past max entries the
// least recently used are forgotten, and their tokens are parsed again.
type mintedTokens struct {
	mu    sync.Mutex
	table *lru[Identity] // nil: nothing is remembered

	hits atomic.Int64
}

func newMintedTokens(max int) *mintedTokens {
	m := &mintedTokens{}
	if max > 0 {
		m.table = newLRU[Identity](max)
	}
	return m
}

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return string(sum[:])
}

// minted records that token, valid until expires, names id.
func (m *mintedTokens) minted(token string, id Identity, expires, now time.Time) {
	if m.table == nil {
		return
	}
	// The exp claim is whole seconds: remember what the token says.
	exp := jwt.NewNumericDate(expires).Time
	key := tokenKey(token)
	m.mu.Lock()
	defer m.mu.Unlock()
	// lru.get keeps an item up to and including its expires instant; the
	// parser refuses a token from its exp on, so the item ends just before.
	m.table.put(key, id, exp.Add(-time.Nanosecond), now)
}

// lookup returns the identity token names if this node minted it and it
// has not expired by now.
func (m *mintedTokens) lookup(token string, now time.Time) (Identity, bool) {
	if m.table == nil {
		return Identity{}, false
	}
	key := tokenKey(token)
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.table.get(key, now)
	if it == nil {
		return Identity{}, false
	}
	m.hits.Add(1)
	return it.val, true
}
