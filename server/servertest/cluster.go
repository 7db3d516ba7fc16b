package servertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/starling-im/starling/internal/testproxy"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/redistest"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// Cluster is several nodes serving one user base: one fresh PostgreSQL
// database, one Redis key prefix, one token secret. Each node reaches the
// database, Redis and its clients through proxies of its own, so a test
// can cut one node off anything, or crash it.
type Cluster struct {
	Nodes []*ClusterNode
	// Prefix is the cluster's Redis key prefix; Redis is a direct client
	// of the test Redis (for looking at, or wiping, the cluster's keys).
	Prefix string
	Redis  redis.UniversalClient
}

// ClusterNode is one node of a Cluster.
type ClusterNode struct {
	*Server
	Name string
	// Front stands between the node and its clients: Target is the
	// front's address. DB and RedisProxy stand between the node and the
	// database and Redis.
	Front, DB, RedisProxy *testproxy.Proxy
}

// StartCluster starts n nodes named node-0 … node-(n-1). configure, if
// not nil, changes every node's configuration after the cluster's
// settings are in. The test is skipped (or fails, in CI) without
// PostgreSQL or Redis.
func StartCluster(t testing.TB, n int, configure func(*server.Config)) *Cluster {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	rc, prefix := redistest.Client(t)
	redisURL := redistest.URL(t)
	secret := make([]byte, 32)
	copy(secret, []byte(fmt.Sprintf("cluster-secret-%s", prefix)))
	c := &Cluster{Prefix: prefix, Redis: rc}
	for i := range n {
		name := fmt.Sprintf("node-%d", i)
		dbProxy, viaDB := testproxy.NewProxy(t, dbURL)
		redisProxy, viaRedis := testproxy.NewProxy(t, redisURL)
		nodeRedis := redistest.Dial(t, viaRedis)
		s := &Server{t: t, secret: secret}
		s.opts.open = func(t testing.TB) storage.Store { return pgtest.Open(t, viaDB) }
		s.opts.configure = func(cfg *server.Config) {
			cfg.NodeID = name
			cfg.ClusterDefaults(nodeRedis, prefix)
			cfg.PresenceTTL = 3 * time.Second
			if configure != nil {
				configure(cfg)
			}
		}
		s.start(t, "127.0.0.1:0")
		t.Cleanup(s.Stop)
		front, _ := testproxy.NewProxy(t, "tcp://"+s.Target())
		s.mu.Lock()
		s.front = front.Addr()
		s.mu.Unlock()
		c.Nodes = append(c.Nodes, &ClusterNode{Server: s, Name: name, Front: front, DB: dbProxy, RedisProxy: redisProxy})
	}
	return c
}

// Crash kills the node as kill -9 would, as far as anyone else can tell:
// its clients' connections drop at once, and it reaches neither Redis nor
// the database again (it leaves no goodbye in presence, releases no
// lease, acknowledges nothing more). Its clients reconnect elsewhere.
func (n *ClusterNode) Crash() {
	n.Front.Cut()
	n.RedisProxy.Cut()
	n.DB.Cut()
	n.Stop()
}

// Revive starts a crashed (or stopped) node again. Clients reach it at
// the same address, its front's: the node itself listens on a fresh port,
// since the old one may meanwhile be some outgoing connection's source
// port (the kernel hands out freed ports).
func (n *ClusterNode) Revive(t testing.TB) {
	t.Helper()
	n.RedisProxy.Restore()
	n.DB.Restore()
	n.start(t, "127.0.0.1:0")
	n.Front.Retarget(n.listenAddr())
	n.Front.Restore()
}

// WipeRedis deletes every key of the cluster, as a FLUSHALL would (other
// tests share the Redis, so only this cluster's keys).
func (c *Cluster) WipeRedis(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	iter := c.Redis.Scan(ctx, 0, c.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Redis.Del(ctx, iter.Val()).Err(); err != nil {
			t.Fatalf("servertest: wipe Redis: %v", err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("servertest: wipe Redis: %v", err)
	}
}
