package presence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/starling-im/starling/internal/testproxy"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/redistest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testNode is one node of a test cluster: a Redis Presence that records
// what it tells its node.
type testNode struct {
	*Redis
	name string

	mu       sync.Mutex
	replaced []bus.DeviceKey
	lost     int
}

// startNode starts node name on c under prefix, and stops it when the test
// ends. Unless tune says otherwise, heartbeats never expire and the replica
// is never resynced during a test: what other nodes know comes from the
// change events, which is what most tests look at.
func startNode(t *testing.T, c redis.UniversalClient, prefix, name string, tune ...func(*RedisConfig)) *testNode {
	t.Helper()
	n := &testNode{name: name}
	cfg := RedisConfig{
		Node: name, Prefix: prefix, TTL: time.Minute, ResyncInterval: time.Hour,
		OnReplaced: func(k bus.DeviceKey) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.replaced = append(n.replaced, k)
		},
		OnLost: func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.lost++
		},
	}
	for _, f := range tune {
		f(&cfg)
	}
	n.Redis = NewRedis(c, cfg, quiet)
	if err := n.Start(t.Context()); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	return n
}

// startCutOff starts node name on the test Redis through a proxy the test
// can cut: Redis down for that node alone.
func startCutOff(t *testing.T, prefix, name string, tune ...func(*RedisConfig)) (*testNode, *testproxy.Proxy) {
	t.Helper()
	proxy, via := testproxy.NewProxy(t, redistest.URL(t))
	return startNode(t, redistest.Dial(t, via), prefix, name, tune...), proxy
}

// shortTTL makes heartbeats matter: every 500 ms, expired after 1.5 s.
func shortTTL(cfg *RedisConfig) { cfg.TTL = 1500 * time.Millisecond }

func (n *testNode) replacedKeys() []bus.DeviceKey {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.replaced)
}

func (n *testNode) lostCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost
}

// where is where n's Locate places user: the nodes, sorted, joined by ",".
func (n *testNode) where(user string) string {
	m, err := n.Locate(context.Background(), []string{user})
	if err != nil {
		return "error: " + err.Error()
	}
	var nodes []string
	for node, users := range m {
		if slices.Contains(users, user) {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	return strings.Join(nodes, ",")
}

func (n *testNode) register(t *testing.T, dev bus.DeviceKey) {
	t.Helper()
	if err := n.Register(t.Context(), n.name, dev); err != nil {
		t.Fatalf("%s registers %v: %v", n.name, dev, err)
	}
}

func (n *testNode) unregister(t *testing.T, dev bus.DeviceKey) {
	t.Helper()
	if err := n.Unregister(t.Context(), n.name, dev); err != nil {
		t.Fatalf("%s unregisters %v: %v", n.name, dev, err)
	}
}

// waitFor polls cond every 20 ms for up to 10 s; state describes what
// was seen, for the failure.
func waitFor(t *testing.T, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s; last seen: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLost waits until n has been told it was lost.
func waitLost(t *testing.T, n *testNode) {
	t.Helper()
	waitFor(t, n.name+" is told it was lost", func() (bool, string) {
		l := n.lostCount()
		return l > 0, fmt.Sprint(l, " times")
	})
}

// waitReplaced waits until n has been told a stream of its was replaced.
func waitReplaced(t *testing.T, n *testNode) {
	t.Helper()
	waitFor(t, n.name+" is told its stream was replaced", func() (bool, string) {
		got := n.replacedKeys()
		return len(got) > 0, fmt.Sprint(got)
	})
}

// waitLocated waits until each of nodes places user on want ("a,b").
func waitLocated(t *testing.T, user, want string, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, fmt.Sprintf("%s places %s on %q", n.name, user, want), func() (bool, string) {
			got := n.where(user)
			return got == want, fmt.Sprintf("%q", got)
		})
	}
}

// located asserts, without waiting, that each of nodes places user on
// want.
func located(t *testing.T, user, want string, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		if got := n.where(user); got != want {
			t.Fatalf("%s places %s on %q, want %q", n.name, user, got, want)
		}
	}
}

var barriers atomic.Int64

// barrier returns once every event from published before it has reached
// each of to: events on the channel arrive in the order Redis ran the
// PUBLISH commands, and the barrier's own event was published last.
func barrier(t *testing.T, from *testNode, to ...*testNode) {
	t.Helper()
	dev := key(fmt.Sprintf("barrier-%d", barriers.Add(1)), "x", 1)
	from.register(t, dev)
	waitLocated(t, dev.UserID, from.name, to...)
	from.unregister(t, dev)
}

// userEntry is what Redis holds for a device in its user's hash ("" if
// nothing): "node|session|version".
func userEntry(t *testing.T, c redis.UniversalClient, prefix string, dev bus.DeviceKey) string {
	t.Helper()
	v, err := c.HGet(context.Background(), prefix+"pres:u:{"+dev.UserID+"}", dev.DeviceID).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("HGET user hash: %v", err)
	}
	return v
}

// nodeEntry is what Redis holds for a device in node's hash ("" if
// nothing): "session|version".
func nodeEntry(t *testing.T, c redis.UniversalClient, prefix, node string, dev bus.DeviceKey) string {
	t.Helper()
	v, err := c.HGet(context.Background(), prefix+"pres:n:{"+node+"}", dev.UserID+"\x00"+dev.DeviceID).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("HGET node hash: %v", err)
	}
	return v
}

// holds reports whether Redis holds dev's stream on node in both hashes.
func holds(t *testing.T, c redis.UniversalClient, prefix, node string, dev bus.DeviceKey) (bool, string) {
	u, n := userEntry(t, c, prefix, dev), nodeEntry(t, c, prefix, node, dev)
	ok := strings.HasPrefix(u, userValuePrefix(node, dev.Session)) && strings.HasPrefix(n, fmt.Sprint(dev.Session, "|"))
	return ok, fmt.Sprintf("user hash %q, node hash %q", u, n)
}

// forgets asserts that Redis holds nothing of dev on node.
func forgets(t *testing.T, c redis.UniversalClient, prefix, node string, dev bus.DeviceKey) {
	t.Helper()
	if u, n := userEntry(t, c, prefix, dev), nodeEntry(t, c, prefix, node, dev); u != "" || n != "" {
		t.Fatalf("Redis still holds %v on %s: user hash %q, node hash %q", dev, node, u, n)
	}
}

func noErrors(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		if s := n.Stats(); s.Errors != 0 {
			t.Fatalf("%s counted %d Redis errors", n.name, s.Errors)
		}
	}
}

// A stream registered on one node is located there by the others, and no
// longer once unregistered; a user with devices on two nodes is on both.
func TestRedisLocateAcrossNodes(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b, cn := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b"), startNode(t, c, prefix, "c")
	phone, laptop := key("u", "phone", 1), key("u", "laptop", 2)

	located(t, "u", "a", a)
	located(t, "u", "b", b) // nobody: on the asking node
	a.register(t, phone)
	located(t, "u", "a", a)
	waitLocated(t, "u", "a", b, cn)
	if ok, state := holds(t, c, prefix, "a", phone); !ok {
		t.Fatalf("after Register: %s", state)
	}

	b.register(t, laptop)
	waitLocated(t, "u", "a,b", a, b, cn)
	m, _ := cn.Locate(t.Context(), []string{"u", "v"})
	if len(m) != 3 || !slices.Equal(m["a"], []string{"u"}) || !slices.Equal(m["b"], []string{"u"}) || !slices.Equal(m["c"], []string{"v"}) {
		t.Fatalf("c's Locate(u, v) = %v, want u on a and b, v on c", m)
	}

	a.unregister(t, phone)
	forgets(t, c, prefix, "a", phone)
	waitLocated(t, "u", "b", a, b, cn)
	b.unregister(t, laptop)
	forgets(t, c, prefix, "b", laptop)
	located(t, "u", "b", b)
	waitLocated(t, "u", "a", a)
	waitLocated(t, "u", "c", cn)
	noErrors(t, a, b, cn)
	if s := cn.Stats(); s.LiveNodes != 3 {
		t.Fatalf("c's stats: %+v, want 3 live nodes", s)
	}
}

// A device that moves to another node has its stream on the first node
// closed (REPLACED), once; that stream's late Unregister leaves the newer
// one alone, in Redis and in every replica.
func TestRedisReplacedAcrossNodes(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b, cn := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b"), startNode(t, c, prefix, "c")
	old, moved := key("u", "d", 1), key("u", "d", 7)

	a.register(t, old)
	waitLocated(t, "u", "a", b, cn)
	b.register(t, moved)
	waitReplaced(t, a)
	waitLocated(t, "u", "b", a, b, cn)

	a.unregister(t, old) // the replaced stream closes, late
	barrier(t, a, b, cn)
	located(t, "u", "b", a, b, cn)
	if got := a.replacedKeys(); !slices.Equal(got, []bus.DeviceKey{old}) {
		t.Fatalf("a was told %v replaced, want once %v", got, old)
	}
	if got := b.replacedKeys(); len(got) != 0 {
		t.Fatalf("b was told %v replaced, want nothing", got)
	}
	if ok, state := holds(t, c, prefix, "b", moved); !ok {
		t.Fatalf("the newer stream is gone from Redis: %s", state)
	}
	if n := nodeEntry(t, c, prefix, "a", old); n != "" {
		t.Fatalf("a's hash still holds the replaced stream: %q", n)
	}
	if s := a.Stats(); s.Replaced != 1 {
		t.Fatalf("a's stats: %+v, want 1 replaced", s)
	}
	noErrors(t, a, b, cn)
}

// Registrations of one device on a, b, then a again in quick succession
// end on a everywhere: versions, not the order of arrival, decide; b is
// told its stream was replaced, and a's newest stream is never taken for
// replaced.
func TestRedisNewestRegistrationWins(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b, cn := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b"), startNode(t, c, prefix, "c")
	first, onB, last := key("u", "d", 1), key("u", "d", 7), key("u", "d", 2)

	a.register(t, first)
	b.register(t, onB)
	a.register(t, last)
	waitReplaced(t, b)
	waitLocated(t, "u", "a", a, b, cn)
	barrier(t, b, a, cn)
	barrier(t, a, b, cn)
	located(t, "u", "a", a, b, cn)
	if got := b.replacedKeys(); !slices.Equal(got, []bus.DeviceKey{onB}) {
		t.Fatalf("b was told %v replaced, want once %v", got, onB)
	}
	if got := a.replacedKeys(); slices.Contains(got, last) {
		t.Fatalf("a was told its newest stream was replaced: %v", got)
	}
	if ok, state := holds(t, c, prefix, "a", last); !ok {
		t.Fatalf("Redis does not hold the newest stream: %s", state)
	}
	noErrors(t, a, b, cn)
}

// An event older than what a replica holds (a late one) changes nothing;
// a newer one replaces, whatever order they arrive in.
func TestRedisLateEventIgnored(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b")
	dev := key("u", "d", 7)

	b.register(t, dev)
	waitLocated(t, "u", "b", a)
	entry := userEntry(t, c, prefix, dev)
	vs, ok := strings.CutPrefix(entry, "b|7|")
	ver, err := strconv.ParseInt(vs, 10, 64)
	if !ok || err != nil {
		t.Fatalf("user hash entry %q", entry)
	}
	publish := func(ev event) {
		t.Helper()
		if err := c.Publish(t.Context(), prefix+"pres:events", encodeEvent(ev)).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// Node a's older stream of the device, heard late; and its end.
	stale := key("u", "d", 1)
	publish(event{register: true, node: "a", dev: stale, ver: ver - 1})
	publish(event{node: "a", dev: stale})
	barrier(t, a, b)
	located(t, "u", "b", a, b)
	if got := b.replacedKeys(); len(got) != 0 {
		t.Fatalf("a late event replaced b's stream: %v", got)
	}

	// A newer stream on a replaces b's, even heard by b alone.
	publish(event{register: true, node: "a", dev: stale, ver: ver + 1})
	waitFor(t, "b is told its stream was replaced", func() (bool, string) {
		got := b.replacedKeys()
		return slices.Equal(got, []bus.DeviceKey{dev}), fmt.Sprint(got)
	})
	located(t, "u", "a", b)
}

// A node that stops heartbeating (killed, or cut off from Redis) is taken
// for dead after TTL: its devices are no longer located on it. After
// DeadGrace more, its streams are removed from Redis; when it comes back
// it is told it was lost and writes them again.
func TestRedisDeadNode(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	grace := func(cfg *RedisConfig) { cfg.DeadGrace = 2 * time.Second }
	a, proxy := startCutOff(t, prefix, "a", shortTTL, grace)
	b, cn := startNode(t, c, prefix, "b", shortTTL, grace), startNode(t, c, prefix, "c", shortTTL, grace)
	dev := key("u", "d", 1)

	a.register(t, dev)
	waitLocated(t, "u", "a", b, cn)

	proxy.Cut() // a is as good as killed: no heartbeat, no Stop
	waitLocated(t, "u", "b", b)
	waitLocated(t, "u", "c", cn)
	waitFor(t, "a is buried", func() (bool, string) {
		err := c.ZScore(t.Context(), prefix+"pres:nodes", "a").Err()
		u, n := userEntry(t, c, prefix, dev), nodeEntry(t, c, prefix, "a", dev)
		return errors.Is(err, redis.Nil) && u == "" && n == "", fmt.Sprintf("ZSCORE: %v, user hash %q, node hash %q", err, u, n)
	})
	if s := b.Stats(); s.LiveNodes != 2 {
		t.Fatalf("b's stats: %+v, want 2 live nodes", s)
	}

	proxy.Restore()
	waitLost(t, a)
	waitFor(t, "a writes its stream again", func() (bool, string) { return holds(t, c, prefix, "a", dev) })
	waitLocated(t, "u", "a", b, cn)
}

// A node cut off from Redis for longer than TTL, but back before
// DeadGrace, was taken for dead meanwhile: deliveries to its devices went
// nowhere, so it is told it was lost, and is located again.
func TestRedisTakenForDeadBriefly(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, proxy := startCutOff(t, prefix, "a", shortTTL)
	b := startNode(t, c, prefix, "b", shortTTL)
	dev := key("u", "d", 1)

	a.register(t, dev)
	waitLocated(t, "u", "a", b)
	proxy.Cut()
	waitLocated(t, "u", "b", b)
	proxy.Restore()
	waitLocated(t, "u", "a", b)
	waitLost(t, a)
	if ok, state := holds(t, c, prefix, "a", dev); !ok {
		t.Fatalf("after the cut: %s", state)
	}
}

// flush deletes every key of the test at once, as FLUSHALL would (one
// DEL: a heartbeat cannot write in between).
func flush(t *testing.T, c redis.UniversalClient, prefix string) {
	t.Helper()
	var keys []string
	iter := c.Scan(t.Context(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys to flush")
	}
	if err := c.Del(t.Context(), keys...).Err(); err != nil {
		t.Fatal(err)
	}
}

// When Redis forgets everything (a restart without persistence, a
// FLUSHALL), each node notices at its next heartbeat, is told it was lost,
// and writes its streams again; the other nodes locate them again.
func TestRedisForgetsEverything(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b := startNode(t, c, prefix, "a", shortTTL), startNode(t, c, prefix, "b", shortTTL)
	onA, onB := key("u", "d", 1), key("v", "d", 2)
	a.register(t, onA)
	b.register(t, onB)
	waitLocated(t, "u", "a", b)
	waitLocated(t, "v", "b", a)

	flush(t, c, prefix)
	waitLost(t, a)
	waitLost(t, b)
	waitFor(t, "a writes its stream again", func() (bool, string) { return holds(t, c, prefix, "a", onA) })
	waitFor(t, "b writes its stream again", func() (bool, string) { return holds(t, c, prefix, "b", onB) })
	waitLocated(t, "u", "a", b)
	waitLocated(t, "v", "b", a)
	// A node started now knows both from Redis alone.
	cn := startNode(t, c, prefix, "c", shortTTL)
	located(t, "u", "a", cn)
	located(t, "v", "b", cn)
}

// While Redis is down for a node, Register still succeeds and the node
// locates the stream itself; once Redis is back the stream is written and
// the other nodes locate it.
func TestRedisDownForOneNode(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, proxy := startCutOff(t, prefix, "a", shortTTL)
	b := startNode(t, c, prefix, "b", shortTTL)
	laptop, phone := key("u", "laptop", 3), key("u", "phone", 1)
	b.register(t, laptop)
	waitLocated(t, "u", "b", a)

	proxy.Cut()
	a.register(t, phone)
	located(t, "u", "a,b", a)
	if s := a.Stats(); s.Errors == 0 {
		t.Fatalf("a's stats: %+v, want Redis errors counted", s)
	}
	if u := userEntry(t, c, prefix, phone); u != "" {
		t.Fatalf("Redis holds %q through a cut", u)
	}

	proxy.Restore()
	waitFor(t, "a writes its stream", func() (bool, string) { return holds(t, c, prefix, "a", phone) })
	waitLocated(t, "u", "a,b", a, b)
	cn := startNode(t, c, prefix, "c", shortTTL)
	located(t, "u", "a,b", cn)
}

// A node that stops takes itself out at once, not after TTL: the other
// nodes stop locating its devices, and Redis holds nothing of it.
func TestRedisStop(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b") // TTL a minute
	dev := key("u", "d", 1)
	a.register(t, dev)
	waitLocated(t, "u", "a", b)

	a.Stop(t.Context())
	waitLocated(t, "u", "b", b)
	forgets(t, c, prefix, "a", dev)
	if n, err := c.Exists(t.Context(), prefix+"pres:n:{a}").Result(); err != nil || n != 0 {
		t.Fatalf("a's node hash: EXISTS = %d, %v; want gone", n, err)
	}
	if err := c.ZScore(t.Context(), prefix+"pres:nodes", "a").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a still in the live nodes: %v", err)
	}
	waitFor(t, "b has 1 live node", func() (bool, string) {
		s := b.Stats()
		return s.LiveNodes == 1, fmt.Sprintf("%+v", s)
	})
	a.Stop(t.Context()) // again: nothing
	noErrors(t, a, b)
}

// What is not an event on the channel is dropped; the events after it are
// applied.
func TestRedisMalformedEventsIgnored(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b")
	for _, garbage := range []string{
		"", "x", "r", "u", "l", "b\x00", "\x00\x00\x00",
		"r\x00a\x001\x00ver\x00u\x00d",        // version not a number
		"r\x00a\x00one\x001\x00u\x00d",        // session not a number
		"r\x00a\x001\x002\x00u",               // a field short
		"r\x00a\x001\x002\x00u\x00d\x00extra", // a field too many
		"u\x00a\x00-1\x00u\x00d",              // negative session
		"l\x00b",                              // b leaving, heard by b
		"\xff\xfe binary",
	} {
		if err := c.Publish(t.Context(), prefix+"pres:events", garbage).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a.register(t, key("u", "d", 1))
	waitLocated(t, "u", "a", b)
	if s := b.Stats(); s.Devices != 1 || s.LiveNodes != 2 {
		t.Fatalf("b's stats: %+v, want 1 device on 2 live nodes", s)
	}
	located(t, "nobody", "b", b)
}

func TestEventEncoding(t *testing.T) {
	for _, ev := range []event{
		{register: true, node: "a", dev: key("u", "d", 1), ver: 1700000000000001},
		{register: true, node: "node-7", dev: key("user|with|bars", "dev:1", 1<<63), ver: 1},
		{node: "a", dev: key("u", "d", 42)},
		{node: "b", dev: key("", "", 1)},
	} {
		got, leave, err := decodeEvent(encodeEvent(ev))
		if err != nil || leave != "" || got != ev {
			t.Errorf("decode(encode(%+v)) = %+v, %q, %v", ev, got, leave, err)
		}
	}
	if ev, leave, err := decodeEvent(encodeLeave("node-3")); err != nil || leave != "node-3" || ev != (event{}) {
		t.Errorf("leave: %+v, %q, %v", ev, leave, err)
	}
	if _, _, err := decodeEvent(encodeRebuild()); !errors.Is(err, errRebuild) {
		t.Errorf("rebuild: %v", err)
	}
	for _, s := range []string{"", "r", "r\x00a\x001\x00x\x00u\x00d", "u\x00a\x00x\x00u\x00d", "l", "l\x00a\x00b", "b\x00", "z\x00a"} {
		if _, _, err := decodeEvent(s); !errors.Is(err, errBadEvent) {
			t.Errorf("decode(%q): %v, want errBadEvent", s, err)
		}
	}
}

// hook calls before with every command a client sends, alone or in a
// pipeline, before it is sent.
type hook func(ctx context.Context, cmd redis.Cmder)

func (h hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(ctx, cmd)
		return next(ctx, cmd)
	}
}

func (h hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h(ctx, cmd)
		}
		return next(ctx, cmds)
	}
}

// Redis restarted (with its data persisted, say) has no script cached:
// an EVALSHA fails with NOSCRIPT until the script is sent whole. Register,
// Unregister, Stop and the rewriting of lost streams work all the same.
func TestRedisScriptsNotCached(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	forgetful := redistest.Dial(t, redistest.URL(t))
	// Every EVALSHA names a digest Redis does not have.
	forgetful.AddHook(hook(func(_ context.Context, cmd redis.Cmder) {
		if args := cmd.Args(); strings.EqualFold(cmd.Name(), "evalsha") {
			args[1] = strings.Repeat("0", 40)
		}
	}))
	a := startNode(t, forgetful, prefix, "a", shortTTL)
	b := startNode(t, c, prefix, "b", shortTTL)
	dev, other := key("u", "d", 1), key("v", "d", 2)

	a.register(t, dev)
	a.register(t, other)
	waitLocated(t, "u", "a", b)
	a.unregister(t, dev)
	forgets(t, c, prefix, "a", dev)
	noErrors(t, a)

	flush(t, c, prefix) // a writes other again, at its next heartbeat
	waitFor(t, "a writes its stream again", func() (bool, string) { return holds(t, c, prefix, "a", other) })
	noErrors(t, a)

	a.Stop(t.Context())
	forgets(t, c, prefix, "a", other)
	noErrors(t, a)
}

// Two streams of one device register at once on a and b, b's version
// drawn between a's stream being recorded on a and a's version drawn: a's
// is the newer (its version is higher). b hears it and is told it was
// replaced; a, having heard b's while its own was being written, is not.
func TestRedisConcurrentRegistrations(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	slow := redistest.Dial(t, redistest.URL(t))
	var a, b *testNode
	onA, onB := key("u", "d", 2), key("u", "d", 7)
	var armed atomic.Bool
	slow.AddHook(hook(func(ctx context.Context, cmd redis.Cmder) {
		args := cmd.Args()
		if len(args) < 4 || args[3] != prefix+"pres:u:{u}" || !armed.CompareAndSwap(true, false) {
			return
		}
		// a's Register is about to write its stream: b's comes first.
		b.register(t, onB)
		waitLocated(t, "u", "b", a)
	}))
	a = startNode(t, slow, prefix, "a")
	b = startNode(t, c, prefix, "b")
	cn := startNode(t, c, prefix, "c")

	armed.Store(true)
	a.register(t, onA)
	if armed.Load() {
		t.Fatal("the hook did not run")
	}
	waitReplaced(t, b)
	waitLocated(t, "u", "a", a, b, cn)
	barrier(t, b, a)
	barrier(t, a, b, cn)
	located(t, "u", "a", a, b, cn)
	if got := a.replacedKeys(); len(got) != 0 {
		t.Fatalf("a was told %v replaced; its stream is the newest", got)
	}
	if got := b.replacedKeys(); !slices.Equal(got, []bus.DeviceKey{onB}) {
		t.Fatalf("b was told %v replaced, want once %v", got, onB)
	}
	if ok, state := holds(t, c, prefix, "a", onA); !ok {
		t.Fatalf("Redis does not hold the newest stream: %s", state)
	}
}

// The replica's changes, unit by unit: Register's stream is recorded at
// once with a version of this node's clock, corrected to Redis's when it
// answers; a stream elsewhere replaces a stream here only if its version
// is higher than the one Redis gave.
func TestApplyToVersions(t *testing.T) {
	replica := map[string]map[string]entry{}
	own := map[devKey]ownEntry{}
	k := devKey{"u", "d"}
	mine, theirs := key("u", "d", 2), key("u", "d", 7)
	reg := func(node string, dev bus.DeviceKey, ver int64) bus.DeviceKey {
		return applyTo(replica, own, "a", event{register: true, node: node, dev: dev, ver: ver})
	}

	// This node's clock is ahead of Redis's: the provisional version is
	// higher than the one Redis gives.
	own[k] = ownEntry{session: 2, ver: 1000, provisional: true}
	reg("a", mine, 1000)
	own[k] = ownEntry{session: 2, ver: 900}
	reg("a", mine, 900)
	if e := replica["u"]["d"]; e != (entry{node: "a", session: 2, ver: 900}) {
		t.Fatalf("after Redis answered: %+v, want version 900", e)
	}
	// b's stream, drawn after a's in Redis (950 > 900), replaces it.
	if got := reg("b", theirs, 950); got != mine {
		t.Fatalf("replaced %v, want %v", got, mine)
	}
	if _, ok := own[k]; ok {
		t.Fatal("the replaced stream is still this node's")
	}

	// A stream elsewhere heard while this node's is being written is
	// recorded, whatever its version; which one is newer is Redis's to
	// say, not this node's clock's.
	clear(replica)
	own[k] = ownEntry{session: 3, ver: 2000, provisional: true}
	reg("a", key("u", "d", 3), 2000)
	if got := reg("b", theirs, 1500); !got.IsZero() {
		t.Fatalf("a provisional stream taken for replaced: %v", got)
	}
	if e := replica["u"]["d"]; e.node != "b" {
		t.Fatalf("the stream elsewhere is not recorded: %+v", e)
	}
	if _, ok := own[k]; !ok {
		t.Fatal("a provisional stream dropped")
	}

	// Late news of an older stream changes nothing.
	clear(replica)
	reg("b", theirs, 3000)
	if got := reg("c", key("u", "d", 9), 2999); !got.IsZero() || replica["u"]["d"].node != "b" {
		t.Fatalf("late news applied: %+v", replica["u"]["d"])
	}
}

// Change events lost on the way are made up for at the next resync: the
// replica is rebuilt from the nodes' hashes.
func TestRedisResyncRepairsLostEvents(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	startNode(t, c, prefix, "a")
	b := startNode(t, c, prefix, "b", func(cfg *RedisConfig) { cfg.ResyncInterval = 200 * time.Millisecond })
	nodeHash, field := prefix+"pres:n:{a}", "w\x00d"

	// a's stream, as if its event had been lost.
	if err := c.HSet(t.Context(), nodeHash, field, "5|123").Err(); err != nil {
		t.Fatal(err)
	}
	waitLocated(t, "w", "a", b)
	// Its end, the same.
	if err := c.HDel(t.Context(), nodeHash, field).Err(); err != nil {
		t.Fatal(err)
	}
	waitLocated(t, "w", "b", b)
	if s := b.Stats(); s.Rebuilds < 2 {
		t.Fatalf("b's stats: %+v, want rebuilds", s)
	}
}

// A node whose subscription broke has missed events: once it has
// subscribed again it rebuilds its replica, without waiting for a resync.
func TestRedisResubscribeRebuilds(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a := startNode(t, c, prefix, "a")
	b, proxy := startCutOff(t, prefix, "b") // TTL a minute, no resync
	dev := key("u", "d", 1)

	proxy.Cut()
	a.register(t, dev) // b does not hear of it
	located(t, "u", "b", b)
	proxy.Restore()
	waitLocated(t, "u", "a", b)
}

// Register refuses another node's stream; Start runs once.
func TestRedisMisuse(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a := startNode(t, c, prefix, "a")
	if err := a.Register(t.Context(), "b", key("u", "d", 1)); err == nil {
		t.Fatal("a registered a stream of b")
	}
	if err := a.Start(t.Context()); err == nil {
		t.Fatal("a started twice")
	}
	if s := a.Stats(); s.Devices != 0 {
		t.Fatalf("a's stats: %+v, want no device", s)
	}
}

// Online is true on every node for a user with a stream on any live node,
// and false once it closed.
func TestRedisOnline(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	a, b := startNode(t, c, prefix, "a"), startNode(t, c, prefix, "b")
	phone := key("u", "phone", 1)
	online := func(n *testNode) bool {
		m, err := n.Online(t.Context(), []string{"u", "v"})
		if err != nil || m["v"] {
			t.Fatalf("%s: Online = %v, %v", n.name, m, err)
		}
		return m["u"]
	}
	if online(a) || online(b) {
		t.Fatal("u online before registering")
	}
	a.register(t, phone)
	waitLocated(t, "u", "a", b)
	if !online(a) || !online(b) {
		t.Fatal("u not online on both nodes after registering on a")
	}
	a.unregister(t, phone)
	waitLocated(t, "u", "b", b)
	if online(a) || online(b) {
		t.Fatal("u still online after unregistering")
	}
}
