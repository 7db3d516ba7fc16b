package chat

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// DMPolicy says who may send a one-to-one message to whom.
type DMPolicy int

const (
	// DMAnyone: any user may message any other, unless a block stands
	// between them (the default; Starling's behaviour before friends).
	DMAnyone DMPolicy = iota
	// DMFriends: only friends may message each other (and no block).
	DMFriends
)

// relationCache keeps, per pair of users, what the send path needs to
// authorize a one-to-one message: whether they are friends and whether
// either blocks the other. A busy pair costs no database read per message.
//
// Staleness: a change made on this node (block, unblock, a friendship
// made or ended) forgets the pair at once, after its commit; a read that
// started before the change cannot store what it read (gen). A change
// made on another node is heard over the bus (GroupChanged with the
// pair's key, relationKey) within milliseconds; if that news is lost, an
// entry is trusted for at most relationMaxAge. So a block takes effect at
// once on the node where it is made, and within relationMaxAge (5 s) on
// every other node in the worst case.
type relationCache struct {
	store interface {
		GetRelation(ctx context.Context, a, b string) (storage.Relation, error)
	}

	mu    sync.RWMutex // read-locked on the send path's hit
	gen   uint64       // incremented by every forget
	pairs map[[2]string]relationEntry
}

type relationEntry struct {
	loaded  time.Time
	friends bool
	blocked bool
}

// relationMaxAge bounds how long a cached pair is trusted (see above).
const relationMaxAge = 5 * time.Second

// relationCap bounds the cache; it is cleared when it grows past it.
const relationCap = 1 << 17

// relationPrefix marks a pair's key on the bus (see relationKey).
const relationPrefix = "rel:"

func pairOf(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// relationKey names a pair of users in a bus GroupChanged: group ids never
// contain ':', so no group is mistaken for it.
func relationKey(a, b string) string {
	p := pairOf(a, b)
	return relationPrefix + p[0] + ":" + p[1]
}

// parseRelationKey is relationKey's inverse.
func parseRelationKey(key string) ([2]string, bool) {
	rest, ok := strings.CutPrefix(key, relationPrefix)
	if !ok {
		return [2]string{}, false
	}
	a, b, ok := strings.Cut(rest, ":")
	return [2]string{a, b}, ok
}

func newRelationCache(store storage.Friends) *relationCache {
	return &relationCache{store: store, pairs: make(map[[2]string]relationEntry)}
}

// get returns the pair's relation, from the cache when it is fresh.
func (c *relationCache) get(ctx context.Context, a, b string) (relationEntry, error) {
	p := pairOf(a, b)
	c.mu.RLock()
	e, ok := c.pairs[p]
	gen := c.gen
	c.mu.RUnlock()
	if ok && time.Since(e.loaded) <= relationMaxAge {
		return e, nil
	}
	loaded := time.Now()
	r, err := c.store.GetRelation(ctx, p[0], p[1])
	if err != nil {
		return relationEntry{}, apierr.FromStorage("chat: read relation", err)
	}
	e = relationEntry{loaded: loaded, friends: r.Friends, blocked: r.Blocked()}
	c.mu.Lock()
	if c.gen == gen { // no change was made meanwhile
		if len(c.pairs) >= relationCap {
			clear(c.pairs)
		}
		c.pairs[p] = e
	}
	c.mu.Unlock()
	return e, nil
}

// forget drops a pair after a change to it.
func (c *relationCache) forget(a, b string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.pairs, pairOf(a, b))
}

// Blocked tells whether a block stands between a and b (either way), from
// the relation cache: what receipts consult (server/readstate).
func (s *Service) Blocked(ctx context.Context, a, b string) (bool, error) {
	e, err := s.social.relations.get(ctx, a, b)
	return e.blocked, err
}

// checkDM authorizes a one-to-one message from → to under policy. Errors:
// Blocked, NotFriends, Unavailable.
func (c *relationCache) checkDM(ctx context.Context, policy DMPolicy, from, to string) error {
	if from == to {
		return nil
	}
	e, err := c.get(ctx, from, to)
	switch {
	case err != nil:
		return err
	case e.blocked:
		return apierr.Blocked
	case policy == DMFriends && !e.friends:
		return apierr.NotFriends
	}
	return nil
}
