package bus

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// Batcher is a Bus that publishes several deliveries to a node as one
// message (bus.Redis).
type Batcher interface {
	PublishBatch(ctx context.Context, node string, ds []Delivery) error
}

// Router is chat's way out: it fans a committed message out to the nodes
// holding its recipients' devices, one Delivery per node.
//
// This node's Delivery is handed over at once, on the caller's goroutine.
// When the Bus is a Batcher and Run is running, deliveries to other nodes
// go through an outbox per node instead: the send pipeline does not wait
// for Redis, and what queues while one publish is on the wire leaves as
// the next one, so a busy node makes fewer, larger publishes (Redis work
// per message falls under one command). An outbox keeps its order, so a
// conversation's messages still leave in seq order. An outbox that fills
// (outboxMax: Redis too slow or down) drops what does not fit; that is
// owed like any failed publish.
//
// A Delivery that cannot be published to another node (Redis down, the
// node resubscribing) is owed: Run tells that node later, as an Announce of
// the conversation's latest seq to the same users, so their devices pull
// what they missed. Owed announces are kept for owedFor and bounded in
// number; what is dropped past either is left to the node's own resync.
//
// A publish to another node waits at most publishTimeout. After one fails
// (Redis unreachable: each try costs the client's retries, about half a
// second, and the send path waits for it), the Router stops trying for a
// while: deliveries to other nodes are owed at once, and Run's retries of
// the owed announces find out when Redis answers again. So a Redis outage
// costs the send path one failed publish, not one per message and node.
type Router struct {
	node string // this node
	loc  Locator
	bus  Bus
	log  *slog.Logger

	// downUntil (unix ns, 0: never) is when publishing to other nodes is
	// tried again in the send path, after a failure.
	downUntil atomic.Int64

	mu    sync.Mutex
	owed  map[string]map[string]*owedAnnounce // node → conversation → what to announce
	kicks []owedKick                          // logouts not yet heard by their node

	stats routerStats
	warn  rateLog

	outMu    sync.Mutex
	outboxes map[string]*outbox
	runCtx   context.Context // set while Run runs: outboxes live in it
	outWG    sync.WaitGroup
}

// outbox is what waits to be published to one node.
type outbox struct {
	node string
	mu   sync.Mutex
	q    []Delivery
	wake chan struct{} // cap 1
}

const (
	outboxMax   = 10000 // deliveries waiting for one node
	outboxBatch = 256   // deliveries per publish
)

type owedAnnounce struct {
	latest int64
	users  map[string]struct{} // nil: too many to keep; the node announces to who has seen the conversation
	since  time.Time
}

type routerStats struct {
	publishFailed atomic.Int64
	owedSent      atomic.Int64
	owedDropped   atomic.Int64
}

// RouterStats counts what the Router could not publish at once.
type RouterStats struct {
	PublishFailed int64 // publishes that failed (each is owed, or dropped)
	OwedSent      int64 // owed announces delivered later
	OwedDropped   int64 // owed announces given up (too old, too many)
	Owed          int64 // owed announces waiting now
}

const (
	owedFor        = time.Minute // how long an owed announce is retried
	owedMax        = 10000       // conversations owed, over all nodes
	owedUsersMax   = 1000        // users remembered per owed conversation
	owedRetryEvery = time.Second
	publishTimeout = time.Second // bounds one publish to another node
	// downFor is how long, after a publish to another node failed, the
	// send path owes deliveries to other nodes without trying; Run tries
	// every owedRetryEvery meanwhile and ends it as soon as one gets
	// through.
	downFor = 3 * owedRetryEvery
)

// errBusDown fails a publish not tried, because the last one failed.
var errBusDown = errors.New("bus: publishing to other nodes failed lately; not tried")

// NewRouter returns the Router of node.
func NewRouter(node string, loc Locator, b Bus, log *slog.Logger) *Router {
	return &Router{node: node, loc: loc, bus: b, log: log, owed: make(map[string]map[string]*owedAnnounce), outboxes: make(map[string]*outbox)}
}

// Deliver offers m to every online device of users, except the sending
// stream (which is on this node). Publishes happen in the caller's order,
// so calls for one conversation made in seq order reach each node in seq
// order. When presence cannot be read, the users' devices on this node
// still get m; the others find the gap and sync.
func (r *Router) Deliver(ctx context.Context, users []string, except DeviceKey, m *starlingv1.Message) {
	where, err := r.loc.Locate(ctx, users)
	if err != nil {
		r.warn.log(r.log, "fan-out: presence unreadable; delivering on this node only", "conversation", m.ConversationId, "seq", m.Seq, "err", err)
		where = map[string][]string{r.node: users}
	}
	sh := &wire.Shared{Msg: m} // encoded once, for every node and device
	for node, us := range where {
		d := Delivery{Msg: m, Shared: sh, Users: us}
		if node == r.node {
			d.Except = except
		}
		if node != r.node {
			if ob := r.outbox(node); ob != nil {
				r.queue(ob, d)
				continue
			}
		}
		err := r.publish(ctx, node, true, func(ctx context.Context) error { return r.bus.Publish(ctx, node, d) })
		if err != nil {
			r.failed(node, m.ConversationId, m.Seq, us, err)
		}
	}
}

// outbox returns node's outbox, made on first use; nil when deliveries to
// node are published synchronously (no Batcher, or Run not running).
func (r *Router) outbox(node string) *outbox {
	b, ok := r.bus.(Batcher)
	if !ok {
		return nil
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.runCtx == nil {
		return nil
	}
	ob := r.outboxes[node]
	if ob == nil {
		ob = &outbox{node: node, wake: make(chan struct{}, 1)}
		r.outboxes[node] = ob
		r.outWG.Add(1)
		go func() {
			defer r.outWG.Done()
			r.drain(r.runCtx, b, ob)
		}()
	}
	return ob
}

func (r *Router) queue(ob *outbox, d Delivery) {
	ob.mu.Lock()
	full := len(ob.q) >= outboxMax
	if !full {
		ob.q = append(ob.q, d)
	}
	ob.mu.Unlock()
	if full {
		r.failed(ob.node, d.Msg.ConversationId, d.Msg.Seq, d.Users, errOutboxFull)
		return
	}
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

var errOutboxFull = errors.New("bus: outbox full")

// drain publishes what ob queues until ctx ends, then what is left, for a
// moment: the last sends of a draining node are answered after their
// fan-out was queued.
func (r *Router) drain(ctx context.Context, b Batcher, ob *outbox) {
	for {
		select {
		case <-ob.wake:
			r.flush(ctx, b, ob)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			r.flush(last, b, ob)
			cancel()
			return
		}
	}
}

// flush publishes everything queued in ob, outboxBatch at a time.
func (r *Router) flush(ctx context.Context, b Batcher, ob *outbox) {
	for {
		ob.mu.Lock()
		n := min(len(ob.q), outboxBatch)
		ds := ob.q[:n:n]
		ob.q = ob.q[n:]
		if len(ob.q) == 0 {
			ob.q = nil // let the backing array go
		}
		ob.mu.Unlock()
		if n == 0 {
			return
		}
		err := r.publish(ctx, ob.node, true, func(ctx context.Context) error { return b.PublishBatch(ctx, ob.node, ds) })
		if err != nil {
			for _, d := range ds {
				r.failed(ob.node, d.Msg.ConversationId, d.Msg.Seq, d.Users, err)
			}
		}
	}
}

// publish runs one publish to node. This node's handler is called
// directly and never fails. To another node, the publish is bounded by
// publishTimeout, and its outcome starts or ends the pause after a failure
// (see Router); while the pause lasts, a publish that heeds it (the send
// path's) fails at once with errBusDown.
func (r *Router) publish(ctx context.Context, node string, heedPause bool, publish func(context.Context) error) error {
	if node == r.node {
		return publish(ctx)
	}
	if heedPause {
		if until := r.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
			return errBusDown
		}
	}
	bounded, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err := publish(bounded)
	switch {
	case err == nil || errors.Is(err, ErrNoSubscriber): // Redis answered
		if r.downUntil.Load() != 0 {
			r.downUntil.Store(0)
		}
	case ctx.Err() != nil:
		// The caller gave up (shutdown): that says nothing about Redis.
	default:
		r.downUntil.Store(time.Now().Add(downFor).UnixNano())
	}
	return err
}

// Announce tells the devices of users, and those on this node that have
// seen conv, that conv has messages up to latest (see bus.Announce).
func (r *Router) Announce(ctx context.Context, users []string, conv string, latest int64) {
	where, err := r.loc.Locate(ctx, users)
	if err != nil {
		r.warn.log(r.log, "announce: presence unreadable; announcing on this node only", "conversation", conv, "err", err)
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
		a := Announce{Conv: conv, Latest: latest, Users: us}
		if err := r.publish(ctx, node, true, func(ctx context.Context) error { return r.bus.PublishAnnounce(ctx, node, a) }); err != nil {
			r.failed(node, conv, latest, us, err)
		}
	}
}

// Kick closes the device's stream on whichever node holds it (logout).
func (r *Router) Kick(ctx context.Context, user, device string, reason starlingv1.DisconnectReason) {
	where, err := r.loc.Locate(ctx, []string{user})
	if err != nil {
		r.log.Warn("kick: presence unreadable; kicking on this node only", "user", user, "device", device, "err", err)
	}
	if _, ok := where[r.node]; !ok {
		if where == nil {
			where = make(map[string][]string, 1)
		}
		where[r.node] = nil
	}
	k := Kick{UserID: user, DeviceID: device, Reason: reason}
	for node := range where {
		err := r.publish(ctx, node, true, func(ctx context.Context) error { return r.bus.PublishKick(ctx, node, k) })
		if err != nil && !errors.Is(err, ErrNoSubscriber) {
			// The session is revoked already: a reconnect is refused.
			// The open stream is closed when the kick gets through.
			r.log.Warn("kick: publish failed; retried", "node", node, "user", user, "device", device, "err", err)
			r.mu.Lock()
			if len(r.kicks) < owedMax {
				r.kicks = append(r.kicks, owedKick{node: node, k: k, since: time.Now()})
			}
			r.mu.Unlock()
		}
	}
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

// GroupChanged tells every node that group's membership changed, so that
// none authorizes a send from what it cached before.
func (r *Router) GroupChanged(ctx context.Context, group string) {
	if err := r.bus.PublishGroupChanged(ctx, group); err != nil {
		r.log.Warn("group change: publish failed; other nodes notice at the group's next message", "group", group, "err", err)
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

// Run publishes the outboxes and sends owed announces until ctx ends; it
// returns once the outboxes are flushed.
func (r *Router) Run(ctx context.Context) {
	r.outMu.Lock()
	r.runCtx = ctx
	r.outMu.Unlock()
	defer func() {
		r.outMu.Lock()
		r.runCtx = nil // later deliveries are published synchronously
		clear(r.outboxes)
		r.outMu.Unlock()
		r.outWG.Wait()
	}()
	t := time.NewTicker(owedRetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.retryOwed(ctx)
		}
	}
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

// Stats returns the Router's counters.
func (r *Router) Stats() RouterStats {
	r.mu.Lock()
	owed := r.owedLocked()
	r.mu.Unlock()
	return RouterStats{
		PublishFailed: r.stats.publishFailed.Load(),
		OwedSent:      r.stats.owedSent.Load(),
		OwedDropped:   r.stats.owedDropped.Load(),
		Owed:          int64(owed),
	}
}

// rateLog writes a warning at most once per interval, with how many were
// held back: a Redis outage fails every publish, and one line per message
// would bury the log.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const rateLogEvery = 10 * time.Second

func (l *rateLog) log(log *slog.Logger, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < rateLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_since_last", n)
	}
	log.Warn(msg, args...)
}
