package bus

import (
	"context"
	"log/slog"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/wire"
)

// Locator says on which nodes users have devices online (presence).
type Locator interface {
	// Locate groups users by the node holding their devices: node →
	// users. A user with devices on several nodes is under each of them;
	// a user with none may be left out, or placed anywhere.
	Locate(ctx context.Context, users []string) (map[string][]string, error)
}

// Router is chat's way out: it fans a committed message out to the nodes
// holding its recipients' devices, one Delivery per node.
type Router struct {
	node string // this node
	loc  Locator
	bus  Bus
	log  *slog.Logger
}

// NewRouter returns the Router of node.
func NewRouter(node string, loc Locator, b Bus, log *slog.Logger) *Router {
	return &Router{node: node, loc: loc, bus: b, log: log}
}

// Deliver offers m to every online device of users, except the sending
// stream (which is on this node). Publishes happen in the caller's order,
// so calls for one conversation made in seq order reach each node in seq
// order. When presence cannot be read, the users' devices on this node
// still get m; the others find the gap and sync.
func (r *Router) Deliver(ctx context.Context, users []string, except DeviceKey, m *starlingv1.Message) {
	where, err := r.loc.Locate(ctx, users)
	if err != nil {
		r.log.Warn("fan-out: presence unreadable; delivering on this node only", "conversation", m.ConversationId, "seq", m.Seq, "err", err)
		where = map[string][]string{r.node: users}
	}
	sh := &wire.Shared{Msg: m} // encoded once, for every node and device
	for node, us := range where {
		d := Delivery{Msg: m, Shared: sh, Users: us}
		if node == r.node {
			d.Except = except
		}
		if err := r.bus.Publish(ctx, node, d); err != nil {
			r.log.Warn("fan-out: publish failed", "node", node, "conversation", m.ConversationId, "seq", m.Seq, "users", len(us), "err", err)
		}
	}
}

// Announce tells the devices of users, and those on this node that have
// seen conv, that conv has messages up to latest (see bus.Announce).
func (r *Router) Announce(ctx context.Context, users []string, conv string, latest int64) {
	where, err := r.loc.Locate(ctx, users)
	if err != nil {
		r.log.Warn("announce: presence unreadable; announcing on this node only", "conversation", conv, "err", err)
		where = nil
	}
	if _, ok := where[r.node]; !ok {
		// This node always hears it: its devices that have seen conv.
		if where == nil {
			where = make(map[string][]string, 1)
		}
		where[r.node] = nil
	}
	for node, us := range where {
		if err := r.bus.PublishAnnounce(ctx, node, Announce{Conv: conv, Latest: latest, Users: us}); err != nil {
			r.log.Warn("announce: publish failed", "node", node, "conversation", conv, "err", err)
		}
	}
}
