package auth

import (
	"sync"
	"sync/atomic"
	"time"
)

// sessionCache remembers, for a short TTL, what the database said about
// the login sessions of recently checked tokens, so that checking a token
// again (the next unary call, a stream reopened after a network blip)
// costs no database round trip.
//
// What it holds is what the database said, not a verdict: the session's
// user, device and whether it was revoked. Authenticate applies the same
// checks to a cached session as to one just read. A session that was not
// found is not cached (a missing session is refused, and the next check
// reads again); a revoked one is, since it never becomes valid again.
//
// An entry is trusted for ttl from the moment its read began, never
// longer: using it does not extend it. Revocations made by this node
// (Logout) replace the entry at once, and session collection empties the
// cache, so neither waits for the TTL here. A revocation made by another
// node is seen here once the entry expires: within ttl.
//
// Concurrent checks of the same uncached session each read the database;
// the first to finish fills the entry. A read that overlapped a
// revocation or collection by this node is not cached (gen), so a stale
// "not revoked" read cannot outlive the Logout that raced it.
type sessionCache struct {
	ttl time.Duration // 0: nothing is cached
	max int

	mu    sync.Mutex
	table *lru[sessionFacts] // nil when ttl is 0
	gen   uint64             // bumped by every revocation or collection on this node

	hits, misses atomic.Int64
}

// sessionFacts is what a token check needs of its session.
type sessionFacts struct {
	userID, deviceID string
	revoked          bool
}

func newSessionCache(ttl time.Duration, max int) *sessionCache {
	c := &sessionCache{ttl: ttl, max: max}
	if ttl > 0 {
		c.table = newLRU[sessionFacts](max)
	}
	return c
}

// lookup returns the cached facts of session id. On a miss it returns the
// generation to hand to fill once the database has answered.
func (c *sessionCache) lookup(id string, now time.Time) (s sessionFacts, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.table != nil {
		if it := c.table.get(id, now); it != nil {
			c.hits.Add(1)
			return it.val, 0, true
		}
	}
	c.misses.Add(1)
	return sessionFacts{}, c.gen, false
}

// fill caches what the database said about session id, read since read
// (the time lookup missed at) under generation gen; nothing if this node
// revoked or collected sessions meanwhile.
func (c *sessionCache) fill(id string, s sessionFacts, gen uint64, read time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.table == nil || gen != c.gen {
		return
	}
	c.table.put(id, s, read.Add(c.ttl), read)
}

// created records the facts of a session this node has just created
// (Login), as if read now: nobody holds its token yet, so no revocation
// can have raced it.
func (c *sessionCache) created(id string, s sessionFacts, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.table == nil {
		return
	}
	c.table.put(id, s, now.Add(c.ttl), now)
}

// revoked records that this node revoked session id: later checks here
// refuse it without reading. ok false: the revocation's outcome is
// unknown (the database failed), so the entry is only dropped.
func (c *sessionCache) revoked(id string, ok bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.table == nil {
		return
	}
	if !ok {
		c.table.remove(id)
		return
	}
	c.table.put(id, sessionFacts{revoked: true}, now.Add(c.ttl), now)
}

// collected forgets everything: sessions were deleted, and the database
// does not say which.
func (c *sessionCache) collected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.table != nil {
		c.table = newLRU[sessionFacts](c.max)
	}
}

func (c *sessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.table == nil {
		return 0
	}
	return c.table.len()
}
