package chat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// memberCache keeps each busy group's active members, keyed by the
// membership epoch they belong to (see storage.MemberSet). The fan-out of
// a message stored under epoch E uses the cached set only if its epoch is
// E, so a stale entry can never send a message to the wrong people; a group
// send's authorization uses it while it holds the sender, so a busy group
// costs no membership read per message.
//
// Staleness: a membership change made on this node forgets the entry at
// once; one made on another node is heard over the bus (GroupChanged), or
// noticed when the next message of the group reports the new epoch. If
// both are missed (the bus lost the news, the group is quiet), a send
// check trusts a cached set for at most authMaxAge: a member removed
// elsewhere can pass it no longer than that. The fan-out stays exact.
type memberCache struct {
	store storage.Groups

	mu     sync.Mutex
	groups map[string]*memberSet
}

// memberSetCap bounds the cache; it is cleared when it grows past it (the
// busy groups come back at their next message).
const memberSetCap = 4096

// authMaxAge bounds how long a cached set authorizes sends (see above).
const authMaxAge = 10 * time.Second

type memberSet struct {
	loaded  time.Time
	epoch   int64
	members []string
	index   map[string]struct{}
}

func (m *memberSet) has(user string) bool {
	_, ok := m.index[user]
	return ok
}

func newMemberCache(store storage.Groups) *memberCache {
	return &memberCache{store: store, groups: make(map[string]*memberSet)}
}

func (c *memberCache) get(group string) *memberSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[group]
}

// put caches ms unless a newer epoch is cached already, and returns what
// is cached now.
func (c *memberCache) put(group string, ms storage.MemberSet) *memberSet {
	set := &memberSet{loaded: time.Now(), epoch: ms.Epoch, members: ms.Members, index: make(map[string]struct{}, len(ms.Members))}
	for _, u := range ms.Members {
		set.index[u] = struct{}{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.groups[group]; old != nil && old.epoch > set.epoch {
		return old
	}
	if len(c.groups) >= memberSetCap {
		clear(c.groups)
	}
	c.groups[group] = set
	return set
}

// forget drops a group after a membership change made here.
func (c *memberCache) forget(group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.groups, group)
}

// load reads a group's members and caches them. Errors: GroupNotFound,
// Unavailable.
func (c *memberCache) load(ctx context.Context, group string) (*memberSet, error) {
	ms, err := c.store.ListMembers(ctx, group)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", apierr.GroupNotFound, group)
	}
	if err != nil {
		return nil, apierr.FromStorage("chat: list members", err)
	}
	return c.put(group, ms), nil
}

// requireActive checks that user is a member of group now: from the cache
// when it holds the user, else from the database (a cached set may predate
// the user's joining). Errors: BadUserID (malformed group id),
// GroupNotFound, NotMember, Unavailable.
func (c *memberCache) requireActive(ctx context.Context, group, user string) error {
	if !validID(group) {
		return fmt.Errorf("%w: group id of %d bytes", apierr.BadConversationID, len(group))
	}
	set := c.get(group)
	if set != nil && time.Since(set.loaded) > authMaxAge {
		set = nil // re-read: a removal elsewhere may have gone unheard
	}
	if set != nil && set.has(user) {
		return nil
	}
	if set == nil {
		set, err := c.load(ctx, group)
		switch {
		case err == nil && set.has(user):
			return nil
		case errors.Is(err, apierr.GroupNotFound):
			return err
		}
		// Not in the set read, or the set (all members: a bigger read)
		// failed: ask for this one membership.
	}
	m, err := c.store.GetMembership(ctx, storage.GroupConversationID(group), user)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return c.notMember(ctx, group)
	case err != nil:
		return apierr.FromStorage("chat: look up membership", err)
	case !m.Active():
		return c.notMember(ctx, group)
	}
	return nil
}

// notMember is the refusal of a user who is not a member of group:
// GroupDisbanded when nobody is, because the owner ended it (an extra read,
// on refusals only), else NotMember.
func (c *memberCache) notMember(ctx context.Context, group string) error {
	if g, err := c.store.GetGroup(ctx, group); err == nil && g.Disbanded {
		return fmt.Errorf("%w: %s", apierr.GroupDisbanded, group)
	}
	return apierr.NotMember
}
