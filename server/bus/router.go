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

// Signal hands f to the online devices of users, wherever they are,
// except the stream except. Best effort: a publish that fails is dropped
// (see Signal), and a failed presence read reaches this node's devices
// only. It does not wait behind the send path's outboxes.
func (r *Router) Signal(ctx context.Context, users []string, except DeviceKey, f *starlingv1.StreamResponse) {
	where, err := r.loc.Locate(ctx, users)
	if err != nil {
		r.warn.log(r.log, "signal: presence unreadable; signalling on this node only", "err", err)
		where = map[string][]string{r.node: users}
	}
	for node, us := range where {
		sig := Signal{Frame: f, Users: us, Except: except}
		err := r.publish(ctx, node, true, func(ctx context.Context) error { return r.bus.PublishSignal(ctx, node, sig) })
		if err != nil && !errors.Is(err, ErrNoSubscriber) {
			r.stats.publishFailed.Add(1)
			r.warn.log(r.log, "signal: publish failed; dropped", "node", node, "err", err)
		}
	}
}

// GroupChanged tells every node that group's membership changed, so that
// none authorizes a send from what it cached before.
func (r *Router) GroupChanged(ctx context.Context, group string) {
	if err := r.bus.PublishGroupChanged(ctx, group); err != nil {
		r.log.Warn("group change: publish failed; other nodes notice at the group's next message", "group", group, "err", err)
	}
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
