package bus

import (
	"context"
	"errors"
	"time"
)

// owedAnnounce is an Announce owed to a node whose delivery failed.
type owedAnnounce struct {
	latest int64
	users  map[string]struct{} // nil: too many to keep; the node announces to who has seen the conversation
	since  time.Time
}

// owedKick is a Kick that could not be published yet.
type owedKick struct {
	node  string
	k     Kick
	since time.Time
}

// retryKicks tries every owed kick once; it keeps what still fails, for
// owedFor.
func (r *Router) retryKicks(ctx context.Context) {
	r.mu.Lock()
	kicks := r.kicks
	r.kicks = nil
	r.mu.Unlock()
	var keep []owedKick
	for _, o := range kicks {
		err := r.publish(ctx, o.node, false, func(ctx context.Context) error { return r.bus.PublishKick(ctx, o.node, o.k) })
		if err != nil && !errors.Is(err, ErrNoSubscriber) && time.Since(o.since) < owedFor {
			keep = append(keep, o)
		}
	}
	if len(keep) > 0 {
		r.mu.Lock()
		r.kicks = append(keep, r.kicks...)
		r.mu.Unlock()
	}
}

// failed records a publish to node that did not go through.
func (r *Router) failed(node, conv string, latest int64, users []string, err error) {
	r.stats.publishFailed.Add(1)
	r.warn.log(r.log, "fan-out: publish failed; announcing later", "node", node, "conversation", conv, "seq", latest, "users", len(users), "err", err)
	if node == r.node {
		return // this node's handler is called directly: it cannot fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	convs := r.owedTo(node)
	o := convs[conv]
	if o == nil {
		if r.owedLocked() >= owedMax {
			r.stats.owedDropped.Add(1)
			return
		}
		o = &owedAnnounce{users: make(map[string]struct{}), since: time.Now()}
		convs[conv] = o
	}
	o.latest = max(o.latest, latest)
	for _, u := range users {
		if o.users == nil {
			break
		}
		if len(o.users) >= owedUsersMax {
			o.users = nil
			break
		}
		o.users[u] = struct{}{}
	}
}

// owedTo returns what is owed to node; r.mu is held.
func (r *Router) owedTo(node string) map[string]*owedAnnounce {
	convs := r.owed[node]
	if convs == nil {
		convs = make(map[string]*owedAnnounce)
		r.owed[node] = convs
	}
	return convs
}

func (r *Router) owedLocked() int {
	n := 0
	for _, convs := range r.owed {
		n += len(convs)
	}
	return n
}

// retryOwed tries every owed announce once; it keeps what still fails,
// for owedFor. Once a publish fails for want of Redis, the rest wait for
// the next round: a round costs at most one failed publish.
func (r *Router) retryOwed(ctx context.Context) {
	r.retryKicks(ctx)
	r.mu.Lock()
	owed := r.owed
	r.owed = make(map[string]map[string]*owedAnnounce)
	r.mu.Unlock()
	down := false
	for node, convs := range owed {
		for conv, o := range convs {
			users := make([]string, 0, len(o.users))
			for u := range o.users {
				users = append(users, u)
			}
			err := errBusDown
			if !down {
				// Tried even while the send path pauses: this is how the
				// pause learns that Redis is back.
				a := Announce{Conv: conv, Latest: o.latest, Users: users}
				err = r.publish(ctx, node, false, func(ctx context.Context) error { return r.bus.PublishAnnounce(ctx, node, a) })
				down = err != nil && !errors.Is(err, ErrNoSubscriber)
			}
			switch {
			case err == nil:
				r.stats.owedSent.Add(1)
			case time.Since(o.since) > owedFor:
				r.stats.owedDropped.Add(1)
				r.log.Warn("fan-out: owed announce dropped; the node resyncs on its own", "node", node, "conversation", conv, "err", err)
			default:
				r.keep(node, conv, o)
			}
		}
	}
}

// keep puts an owed announce back, merging what was owed meanwhile.
func (r *Router) keep(node, conv string, o *owedAnnounce) {
	r.mu.Lock()
	defer r.mu.Unlock()
	convs := r.owedTo(node)
	cur := convs[conv]
	if cur == nil {
		convs[conv] = o
		return
	}
	cur.latest = max(cur.latest, o.latest)
	cur.since = o.since
	if cur.users == nil || o.users == nil {
		cur.users = nil
		return
	}
	for u := range o.users {
		cur.users[u] = struct{}{}
	}
}
