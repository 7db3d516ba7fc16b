package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/starling-im/starling/server/bus"
)

// RedisConfig configures the Presence of a cluster.
type RedisConfig struct {
	Node   string // this node
	Prefix string // put before every key and channel
	// TTL is how long a node that stopped heartbeating (killed) is still
	// taken for live: its devices are located on it until then. The
	// heartbeat runs every TTL/3, so others notice within TTL*4/3. 0: 10 s.
	TTL time.Duration
	// ResyncInterval is how often the replica is rebuilt from Redis
	// whole, for change events lost on the way.
	ResyncInterval time.Duration
	// DeadGrace is how long past its TTL a node that stopped heartbeating
	// keeps its streams in Redis before another node removes them: a node
	// that comes back late writes them again. Default 30 s.
	DeadGrace time.Duration
	// OnReplaced is called with a stream of this node that a newer stream
	// of the same device on another node replaced: close it (REPLACED).
	OnReplaced func(bus.DeviceKey)
	// OnLost is called when other nodes may have missed this node's
	// devices for a while (Redis forgot them: a restart, a FLUSHALL, or
	// this node was taken for dead): deliveries meant for them may have
	// gone nowhere, so the node re-reads what its devices are behind on.
	OnLost func()
}

// Redis is the Presence of a cluster (see the package comment for the
// keys and why Locate reads a replica).
type Redis struct {
	c   redis.UniversalClient
	cfg RedisConfig
	log *slog.Logger

	mu      sync.RWMutex
	own     map[devKey]ownEntry         // this node's streams
	replica map[string]map[string]entry // user → device → where; every node's
	live    map[string]bool             // live nodes, this one included
	pending []event                     // events seen during a rebuild
	rebuild bool                        // a rebuild is reading Redis
	dirty   atomic.Bool                 // own streams Redis may not hold
	wake    chan struct{}               // cap 1: rebuild now
	stats   redisStats
	started bool
	beat    time.Time // start of the last heartbeat that reached Redis (expiry: +TTL)

	stop func()
	done chan struct{}
}

type devKey struct{ user, device string }

type ownEntry struct {
	session uint64
	ver     int64
	// provisional: ver is this node's clock, not yet Redis's; whether a
	// stream elsewhere is newer is for Redis to say.
	provisional bool
}

type entry struct {
	node    string
	session uint64
	ver     int64 // orders the streams of one device: the highest is current
}

type event struct {
	register bool
	node     string
	dev      bus.DeviceKey
	ver      int64
}

type redisStats struct {
	errors   atomic.Int64
	rebuilds atomic.Int64
	replaced atomic.Int64
	lost     atomic.Int64
}

// RedisStats counts the Presence's work and failures.
type RedisStats struct {
	Devices   int   // devices of the cluster in the replica
	LiveNodes int   // nodes taken for live, this one included
	Errors    int64 // Redis calls that failed
	Rebuilds  int64 // replica rebuilds
	Replaced  int64 // streams here replaced by one elsewhere
	Lost      int64 // times Redis was found to have forgotten this node
}

var (
	_ Presence    = (*Redis)(nil)
	_ bus.Locator = (*Redis)(nil)
)

// NewRedis returns the Presence of cfg.Node on c. Start must run before
// the first Register.
func NewRedis(c redis.UniversalClient, cfg RedisConfig, log *slog.Logger) *Redis {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.DeadGrace <= 0 {
		cfg.DeadGrace = 30 * time.Second
	}
	if cfg.OnReplaced == nil {
		cfg.OnReplaced = func(bus.DeviceKey) {}
	}
	if cfg.OnLost == nil {
		cfg.OnLost = func() {}
	}
	return &Redis{
		c: c, cfg: cfg, log: log,
		own:     make(map[devKey]ownEntry),
		replica: make(map[string]map[string]entry),
		live:    map[string]bool{cfg.Node: true},
		wake:    make(chan struct{}, 1),
	}
}

// Keys. A user's devices are one hash, so registering and replacing a
// stream is one single-key script (any Redis Cluster slot); a node's
// streams are another hash, which other nodes read to rebuild their
// replica and to clean up after a dead node.
func (r *Redis) userKey(user string) string { return r.cfg.Prefix + "pres:u:{" + user + "}" }
func (r *Redis) nodeKey(node string) string { return r.cfg.Prefix + "pres:n:{" + node + "}" }
func (r *Redis) nodesKey() string           { return r.cfg.Prefix + "pres:nodes" }
func (r *Redis) eventChannel() string       { return r.cfg.Prefix + "pres:events" }

// userKeyTTL bounds how long a user's hash outlives its last
// registration if every cleanup failed.
const userKeyTTL = 24 * time.Hour

// registerScript records a device's stream in its user's hash, with a
// version from Redis's clock that is higher than the one it replaces, and
// returns the version and what it replaced. Values: "node|session|ver".
//
// With ARGV[5] (the stream's version), it puts back a stream Redis forgot
// or never stored: unless a newer stream of the device holds the entry,
// which it returns with version 0 (the caller's stream was replaced).
var registerScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local ver = 0
if old then
  local n, s, ov = string.match(old, '^(.*)|(%d+)|(%d+)$')
  ov = tonumber(ov)
  if ARGV[5] then
    if n == ARGV[2] and s == ARGV[3] then return {ARGV[5], ''} end
    if ov and ov > tonumber(ARGV[5]) then return {'0', old} end
  end
  ver = ov or 0
end
if ARGV[5] then ver = math.max(ver, tonumber(ARGV[5])) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now > ver then ver = now else ver = ver + 1 end
local v = string.format('%d', ver)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3] .. '|' .. v)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {v, old or ''}
`)

// forgetScript deletes a hash field if its value still starts with
// ARGV[2]: a stream's entry, unless a newer stream took it.
//
// In a pipeline both scripts are sent whole (Eval): Script.Run falls back
// from EVALSHA to EVAL when Redis has not cached the script (it restarted)
// for a lone command only; in a pipeline the NOSCRIPT error comes at Exec.
var forgetScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

func nodeField(user, device string) string { return user + "\x00" + device }

func userValuePrefix(node string, session uint64) string {
	return node + "|" + strconv.FormatUint(session, 10) + "|"
}

// Start makes the node live in Redis, reads the cluster's streams and
// runs the heartbeat until Stop. It fails when Redis cannot be reached.
func (r *Redis) Start(ctx context.Context) error {
	if r.started {
		return errors.New("presence: started twice")
	}
	r.started = true
	ps := r.c.Subscribe(ctx, r.eventChannel())
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return fmt.Errorf("presence: subscribe to events: %w", err)
	}
	if _, err := r.heartbeat(ctx, true); err != nil {
		ps.Close()
		return err
	}
	// Streams left by an earlier run of this node (killed) are stale.
	if err := r.c.Del(ctx, r.nodeKey(r.cfg.Node)).Err(); err != nil {
		ps.Close()
		return fmt.Errorf("presence: clear this node's old streams: %w", err)
	}
	if err := r.rebuildReplica(ctx); err != nil {
		ps.Close()
		return err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.listen(ps) }()
	go func() { defer wg.Done(); r.loop(bg) }()
	go func() { wg.Wait(); close(r.done) }()
	r.stop = func() { cancel(); ps.Close() }
	return nil
}

// Stop ends the heartbeat and takes the node out of Redis: other nodes
// stop routing to it at once instead of after TTL. The node's streams are
// closed by then, or about to be; their entries go with the node.
func (r *Redis) Stop(ctx context.Context) {
	if r.stop == nil {
		return
	}
	r.stop()
	<-r.done
	r.stop = nil
	r.mu.RLock()
	own := make(map[devKey]ownEntry, len(r.own))
	for k, v := range r.own {
		own[k] = v
	}
	r.mu.RUnlock()
	pipe := r.c.Pipeline()
	for k, e := range own {
		forgetScript.Eval(ctx, pipe, []string{r.userKey(k.user)}, k.device, userValuePrefix(r.cfg.Node, e.session))
	}
	pipe.Del(ctx, r.nodeKey(r.cfg.Node))
	pipe.ZRem(ctx, r.nodesKey(), r.cfg.Node)
	pipe.Publish(ctx, r.eventChannel(), encodeLeave(r.cfg.Node))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		r.log.Warn("presence: leaving Redis failed; other nodes notice when this node's heartbeat expires", "err", err)
	}
}

// Register implements Presence. It records the stream here at once (so
// this node's Locate sees it) and in Redis; when Redis fails it logs,
// counts, and keeps the stream for the heartbeat to write later: a device
// connects while Redis is down, and is routed to once Redis is back.
func (r *Redis) Register(ctx context.Context, node string, dev bus.DeviceKey) error {
	if node != r.cfg.Node {
		return fmt.Errorf("presence: node %q registers for %q", r.cfg.Node, node)
	}
	k := devKey{dev.UserID, dev.DeviceID}
	provisional := time.Now().UnixMicro()
	r.mu.Lock()
	r.own[k] = ownEntry{session: dev.Session, ver: provisional, provisional: true}
	r.applyLocked(event{register: true, node: node, dev: dev, ver: provisional})
	r.mu.Unlock()

	res, err := registerScript.Run(ctx, r.c, []string{r.userKey(dev.UserID)},
		dev.DeviceID, node, dev.Session, int(userKeyTTL/time.Second)).StringSlice()
	if err != nil {
		r.failed("register", err)
		return nil
	}
	ver, _ := strconv.ParseInt(res[0], 10, 64)
	var replaced bus.DeviceKey
	r.mu.Lock()
	if cur, ok := r.own[k]; ok && cur.session == dev.Session {
		if e, ok := r.replica[dev.UserID][dev.DeviceID]; ok && e.node != node && e.ver > ver {
			// A newer stream elsewhere, heard while this one was written.
			delete(r.own, k)
			replaced = dev
		} else {
			r.own[k] = ownEntry{session: dev.Session, ver: ver}
			r.applyLocked(event{register: true, node: node, dev: dev, ver: ver})
		}
	}
	r.mu.Unlock()
	r.replacedHere(replaced)
	pipe := r.c.Pipeline()
	pipe.HSet(ctx, r.nodeKey(node), nodeField(dev.UserID, dev.DeviceID), strconv.FormatUint(dev.Session, 10)+"|"+res[0])
	pipe.Publish(ctx, r.eventChannel(), encodeEvent(event{register: true, node: node, dev: dev, ver: ver}))
	if _, err := pipe.Exec(ctx); err != nil {
		r.failed("register", err)
	}
	return nil
}

// Unregister implements Presence.
func (r *Redis) Unregister(ctx context.Context, node string, dev bus.DeviceKey) error {
	k := devKey{dev.UserID, dev.DeviceID}
	r.mu.Lock()
	if cur, ok := r.own[k]; ok && cur.session == dev.Session {
		delete(r.own, k)
	}
	r.applyLocked(event{node: node, dev: dev})
	r.mu.Unlock()
	pipe := r.c.Pipeline()
	forgetScript.Eval(ctx, pipe, []string{r.userKey(dev.UserID)}, dev.DeviceID, userValuePrefix(node, dev.Session))
	forgetScript.Eval(ctx, pipe, []string{r.nodeKey(node)}, nodeField(dev.UserID, dev.DeviceID), strconv.FormatUint(dev.Session, 10)+"|")
	pipe.Publish(ctx, r.eventChannel(), encodeEvent(event{node: node, dev: dev}))
	if _, err := pipe.Exec(ctx); err != nil {
		r.failed("unregister", err)
	}
	return nil
}

// failed logs and counts a Redis failure, and has the heartbeat write
// this node's streams again.
func (r *Redis) failed(op string, err error) {
	r.stats.errors.Add(1)
	r.dirty.Store(true)
	r.log.Warn("presence: Redis failed; this node's streams are written again when it answers", "op", op, "err", err)
}

// Locate implements Presence and bus.Locator from the replica: no Redis
// call per message. Users with no device on a live node are placed on
// this node, whose hub skips the offline ones.
func (r *Redis) Locate(_ context.Context, users []string) (map[string][]string, error) {
	out := make(map[string][]string, 2)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, u := range users {
		var seen [4]string
		placed := seen[:0]
		for _, e := range r.replica[u] {
			if r.live[e.node] && !contains(placed, e.node) {
				placed = append(placed, e.node)
				out[e.node] = append(out[e.node], u)
			}
		}
		if len(placed) == 0 {
			out[r.cfg.Node] = append(out[r.cfg.Node], u)
		}
	}
	return out, nil
}

// Online implements Presence from the replica: a user is online when a
// device of theirs is on a live node.
func (r *Redis) Online(_ context.Context, users []string) (map[string]bool, error) {
	out := make(map[string]bool, len(users))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, u := range users {
		for _, e := range r.replica[u] {
			if r.live[e.node] {
				out[u] = true
				break
			}
		}
	}
	return out, nil
}

// applyLocked applies a change to the replica; during a rebuild it is also
// kept to apply again on the rebuilt replica. It returns this node's
// stream that a newer one elsewhere replaced, if any.
func (r *Redis) applyLocked(ev event) (replaced bus.DeviceKey) {
	if r.rebuild {
		r.pending = append(r.pending, ev)
	}
	return applyTo(r.replica, r.own, r.cfg.Node, ev)
}

func applyTo(replica map[string]map[string]entry, own map[devKey]ownEntry, self string, ev event) (replaced bus.DeviceKey) {
	u, d := ev.dev.UserID, ev.dev.DeviceID
	devs := replica[u]
	if !ev.register {
		if e, ok := devs[d]; ok && e.node == ev.node && e.session == ev.dev.Session {
			delete(devs, d)
			if len(devs) == 0 {
				delete(replica, u)
			}
		}
		return bus.DeviceKey{}
	}
	if e, ok := devs[d]; ok && e.ver > ev.ver && !overrides(e, ev, own, self) {
		return bus.DeviceKey{} // an older stream's late news
	}
	if devs == nil {
		devs = make(map[string]entry, 1)
		replica[u] = devs
	}
	devs[d] = entry{node: ev.node, session: ev.dev.Session, ver: ev.ver}
	if ev.node != self {
		if o, ok := own[devKey{u, d}]; ok && !o.provisional && o.ver < ev.ver {
			delete(own, devKey{u, d})
			return bus.DeviceKey{UserID: u, DeviceID: d, Session: o.session}
		}
	}
	return bus.DeviceKey{}
}

// overrides reports whether ev replaces e in the replica although its
// version is lower: ev is news of e's stream itself (Redis's version of a
// provisional one, lower when this node's clock is ahead of Redis's), or
// e is a stream of this node whose version is still provisional (which of
// the two is newer is for Redis to say).
func overrides(e entry, ev event, own map[devKey]ownEntry, self string) bool {
	if e.node == ev.node && e.session == ev.dev.Session {
		return true
	}
	o, ok := own[devKey{ev.dev.UserID, ev.dev.DeviceID}]
	return ok && o.provisional && e.node == self && e.session == o.session
}

// listen applies the other nodes' change events until the subscription
// is closed. A resubscription after a break means events were lost: the
// replica is rebuilt.
func (r *Redis) listen(ps *redis.PubSub) {
	for m := range ps.ChannelWithSubscriptions() {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				r.log.Warn("presence: resubscribed to events after a break; rebuilding the replica")
				r.wakeUp()
			}
		case *redis.Message:
			ev, leave, err := decodeEvent(m.Payload)
			switch {
			case errors.Is(err, errRebuild):
				r.wakeUp()
			case err != nil:
				r.log.Error("presence: undecodable event dropped", "err", err)
			case leave != "":
				r.mu.Lock()
				if leave != r.cfg.Node {
					// Its streams go too, so that a heartbeat that read
					// the live nodes just before it left cannot route
					// to it again.
					delete(r.live, leave)
					r.forgetNodeLocked(leave)
				}
				r.mu.Unlock()
			case ev.node != r.cfg.Node: // this node's own are applied already
				r.mu.Lock()
				replaced := r.applyLocked(ev)
				if ev.register {
					r.live[ev.node] = true
				}
				r.mu.Unlock()
				r.replacedHere(replaced)
			}
		}
	}
}

// forgetNodeLocked drops a node's streams from the replica.
func (r *Redis) forgetNodeLocked(node string) {
	for u, devs := range r.replica {
		for d, e := range devs {
			if e.node == node {
				delete(devs, d)
			}
		}
		if len(devs) == 0 {
			delete(r.replica, u)
		}
	}
}

func (r *Redis) replacedHere(k bus.DeviceKey) {
	if k.IsZero() {
		return
	}
	r.stats.replaced.Add(1)
	r.cfg.OnReplaced(k)
}

func (r *Redis) wakeUp() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// loop heartbeats every TTL/3, writes this node's streams again when
// Redis lost them, and rebuilds the replica every ResyncInterval, when
// the set of live nodes changes, or when woken.
func (r *Redis) loop(ctx context.Context) {
	beat := time.NewTicker(r.cfg.TTL / 3)
	defer beat.Stop()
	resync := time.NewTicker(r.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		rebuild := false
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			changed, err := r.heartbeat(ctx, false)
			if err != nil {
				r.stats.errors.Add(1)
				r.log.Warn("presence: heartbeat failed", "err", err)
				continue
			}
			rebuild = changed
		case <-resync.C:
			rebuild = true
		case <-r.wake:
			rebuild = true
		}
		if rebuild {
			if err := r.rebuildReplica(ctx); err != nil && ctx.Err() == nil {
				r.stats.errors.Add(1)
				r.log.Warn("presence: replica rebuild failed; retried at the next heartbeat", "err", err)
				r.wakeUp()
			}
		}
	}
}

// heartbeat keeps this node live, writes its streams again if Redis lost
// them, reads which nodes are live and cleans up after dead ones. It
// reports whether the set of live nodes changed.
func (r *Redis) heartbeat(ctx context.Context, first bool) (bool, error) {
	now := time.Now()
	added, err := r.c.ZAdd(ctx, r.nodesKey(), redis.Z{Score: float64(now.Add(r.cfg.TTL).UnixMilli()), Member: r.cfg.Node}).Result()
	if err != nil {
		return false, fmt.Errorf("presence: heartbeat: %w", err)
	}
	// Redis restarted or was flushed, or this node was taken for dead
	// after missing heartbeats (buried, or expired for a while: the last
	// expiry passed before this heartbeat got through): nobody routed to
	// its devices.
	if !first && (added == 1 || time.Since(r.beat) > r.cfg.TTL) {
		r.stats.lost.Add(1)
		r.log.Warn("presence: Redis had forgotten this node; writing its streams again")
		r.dirty.Store(true)
		r.cfg.OnLost()
	}
	r.beat = now
	if r.dirty.Swap(false) {
		if err := r.restoreOwn(ctx); err != nil {
			r.dirty.Store(true)
			return false, err
		}
	}
	liveNodes, err := r.c.ZRangeByScore(ctx, r.nodesKey(), &redis.ZRangeBy{Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return false, fmt.Errorf("presence: read live nodes: %w", err)
	}
	live := map[string]bool{r.cfg.Node: true}
	for _, n := range liveNodes {
		live[n] = true
	}
	r.mu.Lock()
	changed := len(live) != len(r.live)
	for n := range live {
		changed = changed || !r.live[n]
	}
	r.live = live
	r.mu.Unlock()
	r.buryDead(ctx, now)
	return changed, nil
}

// buryDead removes nodes whose heartbeat expired more than DeadGrace ago,
// and their streams from the users' hashes. ZREM decides which node does
// it.
func (r *Redis) buryDead(ctx context.Context, now time.Time) {
	dead, err := r.c.ZRangeByScore(ctx, r.nodesKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.Add(-r.cfg.DeadGrace).UnixMilli(), 10)}).Result()
	if err != nil {
		return
	}
	for _, node := range dead {
		if n, err := r.c.ZRem(ctx, r.nodesKey(), node).Result(); err != nil || n == 0 {
			continue // another node buries it
		}
		streams, err := r.c.HGetAll(ctx, r.nodeKey(node)).Result()
		if err != nil {
			continue
		}
		pipe := r.c.Pipeline()
		for field, v := range streams {
			user, device, ok := strings.Cut(field, "\x00")
			session, _, _ := strings.Cut(v, "|")
			if ok {
				forgetScript.Eval(ctx, pipe, []string{r.userKey(user)}, device, node+"|"+session+"|")
			}
		}
		pipe.Del(ctx, r.nodeKey(node))
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			r.log.Warn("presence: cleaning up a dead node failed", "node", node, "err", err)
			continue
		}
		r.log.Info("presence: node taken for dead; its streams removed", "node", node, "streams", len(streams))
	}
}

// restoreOwn writes every stream of this node to Redis again, unless a
// newer stream of the device replaced it meanwhile (then it is closed).
func (r *Redis) restoreOwn(ctx context.Context) error {
	r.mu.RLock()
	own := make(map[devKey]ownEntry, len(r.own))
	for k, v := range r.own {
		own[k] = v
	}
	r.mu.RUnlock()
	type result struct {
		k   devKey
		e   ownEntry
		cmd *redis.Cmd
	}
	pipe := r.c.Pipeline()
	results := make([]result, 0, len(own))
	for k, e := range own {
		args := []any{k.device, r.cfg.Node, e.session, int(userKeyTTL / time.Second)}
		if !e.provisional {
			args = append(args, e.ver) // put back unless replaced since
		}
		cmd := registerScript.Eval(ctx, pipe, []string{r.userKey(k.user)}, args...)
		results = append(results, result{k, e, cmd})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("presence: write this node's streams again: %w", err)
	}
	nodeHash := make(map[string]any, len(results))
	var lost []bus.DeviceKey
	r.mu.Lock()
	for _, res := range results {
		out, err := res.cmd.StringSlice()
		if err != nil || len(out) != 2 {
			continue
		}
		ver, _ := strconv.ParseInt(out[0], 10, 64)
		cur, still := r.own[res.k]
		if !still || cur.session != res.e.session {
			continue
		}
		if ver == 0 { // a newer stream elsewhere holds the device
			delete(r.own, res.k)
			lost = append(lost, bus.DeviceKey{UserID: res.k.user, DeviceID: res.k.device, Session: res.e.session})
			continue
		}
		r.own[res.k] = ownEntry{session: res.e.session, ver: ver}
		dev := bus.DeviceKey{UserID: res.k.user, DeviceID: res.k.device, Session: res.e.session}
		r.applyLocked(event{register: true, node: r.cfg.Node, dev: dev, ver: ver})
		nodeHash[nodeField(res.k.user, res.k.device)] = strconv.FormatUint(res.e.session, 10) + "|" + out[0]
	}
	r.mu.Unlock()
	for _, k := range lost {
		r.replacedHere(k)
	}
	pipe = r.c.TxPipeline()
	pipe.Del(ctx, r.nodeKey(r.cfg.Node))
	if len(nodeHash) > 0 {
		pipe.HSet(ctx, r.nodeKey(r.cfg.Node), nodeHash)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("presence: write this node's stream list again: %w", err)
	}
	// Other nodes learn of the streams at their next rebuild; tell them now.
	return r.c.Publish(ctx, r.eventChannel(), encodeRebuild()).Err()
}

// rebuildReplica reads every live node's streams and replaces the
// replica with them. Changes heard while it reads are applied again on
// top. A stream of this node that a newer one elsewhere replaced is
// closed.
func (r *Redis) rebuildReplica(ctx context.Context) error {
	r.mu.Lock()
	if r.rebuild {
		r.mu.Unlock()
		return nil
	}
	r.rebuild, r.pending = true, nil
	nodes := make([]string, 0, len(r.live))
	for n := range r.live {
		if n != r.cfg.Node {
			nodes = append(nodes, n)
		}
	}
	r.mu.Unlock()
	done := func() {
		r.mu.Lock()
		r.rebuild, r.pending = false, nil
		r.mu.Unlock()
	}
	fresh := make(map[string]map[string]entry)
	for _, node := range nodes {
		streams, err := r.c.HGetAll(ctx, r.nodeKey(node)).Result()
		if err != nil {
			done()
			return fmt.Errorf("presence: read the streams of %q: %w", node, err)
		}
		for field, v := range streams {
			user, device, ok1 := strings.Cut(field, "\x00")
			s, vs, ok2 := strings.Cut(v, "|")
			session, err1 := strconv.ParseUint(s, 10, 64)
			ver, err2 := strconv.ParseInt(vs, 10, 64)
			if !ok1 || !ok2 || err1 != nil || err2 != nil {
				continue
			}
			applyTo(fresh, nil, r.cfg.Node, event{register: true, node: node, dev: bus.DeviceKey{UserID: user, DeviceID: device, Session: session}, ver: ver})
		}
	}
	var replaced []bus.DeviceKey
	r.mu.Lock()
	for k, e := range r.own {
		applyTo(fresh, nil, r.cfg.Node, event{register: true, node: r.cfg.Node, dev: bus.DeviceKey{UserID: k.user, DeviceID: k.device, Session: e.session}, ver: e.ver})
	}
	for _, ev := range r.pending {
		if k := applyTo(fresh, r.own, r.cfg.Node, ev); !k.IsZero() {
			replaced = append(replaced, k)
		}
	}
	// A stream here that lost to a newer one elsewhere.
	for k, e := range r.own {
		if cur, ok := fresh[k.user][k.device]; ok && !e.provisional && cur.node != r.cfg.Node && cur.ver > e.ver {
			delete(r.own, k)
			replaced = append(replaced, bus.DeviceKey{UserID: k.user, DeviceID: k.device, Session: e.session})
		}
	}
	r.replica = fresh
	r.rebuild, r.pending = false, nil
	r.mu.Unlock()
	r.stats.rebuilds.Add(1)
	for _, k := range replaced {
		r.replacedHere(k)
	}
	return nil
}

// Stats returns the Presence's counters.
func (r *Redis) Stats() RedisStats {
	r.mu.RLock()
	devices := 0
	for _, devs := range r.replica {
		devices += len(devs)
	}
	live := len(r.live)
	r.mu.RUnlock()
	return RedisStats{
		Devices:   devices,
		LiveNodes: live,
		Errors:    r.stats.errors.Load(),
		Rebuilds:  r.stats.rebuilds.Load(),
		Replaced:  r.stats.replaced.Load(),
		Lost:      r.stats.lost.Load(),
	}
}

// Events on the channel, fields separated by NUL:
//
//	r node session ver user device   a stream registered
//	u node session user device       a stream ended
//	l node                           a node left (drained)
//	b                                rebuild your replica (a node wrote its streams again)
func encodeEvent(ev event) string {
	s := strconv.FormatUint(ev.dev.Session, 10)
	if ev.register {
		return "r\x00" + ev.node + "\x00" + s + "\x00" + strconv.FormatInt(ev.ver, 10) + "\x00" + ev.dev.UserID + "\x00" + ev.dev.DeviceID
	}
	return "u\x00" + ev.node + "\x00" + s + "\x00" + ev.dev.UserID + "\x00" + ev.dev.DeviceID
}

func encodeLeave(node string) string { return "l\x00" + node }
func encodeRebuild() string          { return "b" }

var errBadEvent = errors.New("presence: malformed event")

// decodeEvent parses an event; leave is the node that left, for "l".
func decodeEvent(s string) (ev event, leave string, err error) {
	f := strings.Split(s, "\x00")
	switch {
	case f[0] == "r" && len(f) == 6:
		ev.register = true
		ev.ver, err = strconv.ParseInt(f[3], 10, 64)
		f = []string{f[1], f[2], f[4], f[5]}
	case f[0] == "u" && len(f) == 5:
		f = f[1:]
	case f[0] == "l" && len(f) == 2:
		return event{}, f[1], nil
	case f[0] == "b" && len(f) == 1:
		return event{node: ""}, "", errRebuild
	default:
		return event{}, "", errBadEvent
	}
	if err != nil {
		return event{}, "", errBadEvent
	}
	ev.node = f[0]
	ev.dev.UserID, ev.dev.DeviceID = f[2], f[3]
	if ev.dev.Session, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return event{}, "", errBadEvent
	}
	return ev, "", nil
}

// errRebuild is not an error: the event asks for a rebuild.
var errRebuild = errors.New("presence: rebuild asked")
