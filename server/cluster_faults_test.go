package server_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/nodelease"
	"github.com/starling-im/starling/server/servertest"
)

// The fault tests run traffic through a three-node cluster while something
// breaks, then check that every acknowledged message reached every device
// of every member exactly once, in order (clusterDevice fails the test at
// the first duplicate or gap), and that the database holds exactly what
// was acknowledged.
//
// The cluster: six users, each with a sending device ("tx") on node i%3
// and a receiving one ("rx") on the next node; six one-to-one
// conversations in a ring (user i with user i+1, always across two
// nodes) and one group of all six (members on every node). Every tx
// device sends, in turn, to its two ring neighbours and to the group.

// faultCluster is the cluster, users, devices and conversations of one
// fault test.
type faultCluster struct {
	c       *servertest.Cluster
	users   []servertest.User
	tx      []*clusterDevice // the sending devices, by user
	devices []*clusterDevice // every device
	convs   []clusterConv
	group   string
}

var faultNames = [...]string{"alice", "bob", "carol", "dave", "erin", "frank"}

const (
	faultUsers   = len(faultNames)
	sendEvery    = 60 * time.Millisecond // per sending device: 100 messages/s in all
	faultTimeout = 30 * time.Second      // bound on every wait for progress or delivery
)

func startFaultCluster(t *testing.T, configure func(*server.Config)) *faultCluster {
	t.Helper()
	fc := &faultCluster{c: servertest.StartCluster(t, 3, configure)}
	nodes := fc.c.Nodes
	for i := range faultUsers {
		fc.users = append(fc.users, nodes[i%3].NewUser(t, faultNames[i]))
	}
	var others []string
	for _, u := range fc.users[1:] {
		others = append(others, u.ID)
	}
	g, err := starlingv1.NewGroupServiceClient(nodes[0].Dial(t)).CreateGroup(
		servertest.WithToken(t.Context(), nodes[0].Login(t, fc.users[0], "admin")),
		&starlingv1.CreateGroupRequest{Name: "everyone", MemberIds: others})
	if err != nil {
		t.Fatal(err)
	}
	fc.group = g.GetGroup().GetGroupId()
	fc.convs = append(fc.convs, clusterConv{ID: g.GetGroup().GetConversationId(), Members: fc.users})
	for i, u := range fc.users {
		fc.convs = append(fc.convs, c2cConv(u, fc.users[(i+1)%faultUsers]))
		// Each device starts on its own node and moves on along the ring.
		at := func(first int) []*servertest.ClusterNode {
			return []*servertest.ClusterNode{nodes[first%3], nodes[(first+1)%3], nodes[(first+2)%3]}
		}
		tx := newClusterDevice(t, u, "tx", at(i)...)
		rx := newClusterDevice(t, u, "rx", at(i+1)...)
		fc.tx = append(fc.tx, tx)
		fc.devices = append(fc.devices, tx, rx)
	}
	return fc
}

// traffic has every tx device send one message every sendEvery, in turn
// to its two ring neighbours and the group, until the returned stop is
// called.
func (fc *faultCluster) traffic() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range fc.tx {
		next, prev := fc.users[(i+1)%faultUsers].ID, fc.users[(i+faultUsers-1)%faultUsers].ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(sendEvery)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				switch n % 3 {
				case 0:
					d.Send(next, "")
				case 1:
					d.Send("", fc.group)
				case 2:
					d.Send(prev, "")
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// acked counts the SendAcks of every device, and those received in
// [from, to).
func (fc *faultCluster) acked(from, to time.Time) (all, within int) {
	for _, d := range fc.tx {
		for _, a := range d.Acked() {
			all++
			if !a.At.Before(from) && a.At.Before(to) {
				within++
			}
		}
	}
	return all, within
}

// waitAcked waits until n more messages than now were acknowledged.
func (fc *faultCluster) waitAcked(t *testing.T, n int) {
	t.Helper()
	base, _ := fc.acked(time.Time{}, time.Time{})
	deadline := time.Now().Add(faultTimeout)
	for {
		all, _ := fc.acked(time.Time{}, time.Time{})
		if all >= base+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d more sends acknowledged within %v: %s", all-base, n, faultTimeout, deliveryMissing(fc.devices, fc.convs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the traffic, waits for every message to be delivered,
// stops the devices and runs the final check through node.
func (fc *faultCluster) finish(t *testing.T, stopTraffic func(), node *servertest.ClusterNode) {
	t.Helper()
	stopTraffic()
	recovery := waitDelivered(t, faultTimeout, fc.devices, fc.convs)
	for _, d := range fc.devices {
		d.Stop()
	}
	total := checkDelivered(t, node, fc.devices, fc.convs)
	var sum deviceStats
	for _, d := range fc.devices {
		s := d.stats()
		sum.pushed, sum.synced, sum.streams = sum.pushed+s.pushed, sum.synced+s.synced, sum.streams+s.streams
		sum.resent, sum.duplicates = sum.resent+s.resent, sum.duplicates+s.duplicates
	}
	t.Logf("%d messages acknowledged; devices got %d by push and %d by Sync; %d streams, %d sends resent, %d acknowledged as duplicates; all delivered %v after the traffic stopped",
		total, sum.pushed, sum.synced, sum.streams, sum.resent, sum.duplicates, recovery.Round(time.Millisecond))
}

// A node is killed mid-traffic: its devices reconnect to the other nodes,
// sends it had taken but not answered are resent there (dedup by
// client_msg_id), and messages other nodes published to it, or routed to
// it while presence still took it for live, reach the devices by their
// catch-up on reconnect, the second catch-up read (RecheckAfter) and the
// periodic resync. Then it comes back, and a new device connects to it
// and catches up on everything.
func TestClusterFaultNodeCrash(t *testing.T) {
	t.Parallel()
	fc := startFaultCluster(t, func(cfg *server.Config) {
		cfg.NodeLeaseTTL = 3 * time.Second // the crashed node's lease lapses soon: it can come back
		cfg.ResyncInterval = time.Second
	})
	stop := fc.traffic()
	fc.waitAcked(t, 100)

	crashed := fc.c.Nodes[1]
	var onCrashed []*clusterDevice
	for _, d := range fc.devices {
		if d.Node() == crashed.Name {
			onCrashed = append(onCrashed, d)
		}
	}
	if len(onCrashed) == 0 {
		t.Fatal("no device on node-1")
	}
	// Sends in flight when it dies: written, not acknowledged (perhaps
	// committed), so resent on the next node with the same client_msg_id.
	var bursting []*clusterDevice
	for _, d := range fc.tx {
		if d.Node() == crashed.Name {
			bursting = append(bursting, d)
			for range 20 {
				d.Send("", fc.group)
			}
		}
	}
	start := time.Now()
	crashed.Crash()
	t.Logf("node-1 crashed (took %v) with %d devices on it", time.Since(start).Round(time.Millisecond), len(onCrashed))
	fc.waitAcked(t, 100)
	deadline := time.Now().Add(faultTimeout)
	for _, d := range onCrashed {
		for n := d.Node(); n == "" || n == crashed.Name; n = d.Node() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reconnect elsewhere", d.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Back once its lease lapsed (a node refuses to start while a live
	// lease holds its name).
	ctx, cancel := context.WithTimeout(t.Context(), faultTimeout)
	defer cancel()
	if err := nodelease.WaitNameFree(ctx, fc.c.Nodes[0].Store(), crashed.Name, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	crashed.Revive(t)
	// A new device of alice on the revived node: its catch-up is every
	// conversation from seq 1, pulled in batches while traffic goes on.
	late := newClusterDevice(t, fc.users[0], "tablet", crashed, fc.c.Nodes[2], fc.c.Nodes[0])
	fc.devices = append(fc.devices, late)
	fc.waitAcked(t, 100)
	fc.finish(t, stop, fc.c.Nodes[0])
	if w := late.Welcomes(); len(w) == 0 || w[0] != crashed.Name {
		t.Errorf("the new device was welcomed by %v, want node-1 first", w)
	}
	for _, d := range bursting {
		if s := d.stats(); s.resent == 0 {
			t.Errorf("%s resent nothing after node-1 crashed under its burst", d.Name)
		}
	}
}

// Redis is cut off from every node for about 2 s mid-traffic. Sends go on
// being committed and acknowledged (the database is the truth; a node's
// own devices are served without Redis); publishes to other nodes fail and
// are owed as announces, sent once Redis is back; the bus resubscribes and
// reports Lost, and the nodes resync.
func TestClusterFaultRedisOutage(t *testing.T) {
	t.Parallel()
	fc := startFaultCluster(t, func(cfg *server.Config) { cfg.ResyncInterval = time.Second })
	stop := fc.traffic()
	fc.waitAcked(t, 100)

	cut := time.Now()
	for _, n := range fc.c.Nodes {
		n.RedisProxy.Cut()
	}
	time.Sleep(2 * time.Second) // the outage: traffic goes on meanwhile
	for _, n := range fc.c.Nodes {
		n.RedisProxy.Restore()
	}
	restored := time.Now()
	_, during := fc.acked(cut, restored)
	t.Logf("Redis down for %v; %d sends acknowledged meanwhile", restored.Sub(cut).Round(time.Millisecond), during)
	// About 200 are offered. Each failed publish to another node costs
	// about 0.5 s (the Redis client's retries): before the Router paused
	// publishing after a failure, the send path managed about 3 a second.
	if during < 40 {
		t.Errorf("only %d sends acknowledged in %v without Redis", during, restored.Sub(cut).Round(time.Millisecond))
	}
	fc.waitAcked(t, 100)
	fc.finish(t, stop, fc.c.Nodes[0])
}

// The cluster's Redis keys are deleted mid-traffic, twice (FLUSHALL, or
// a Redis restarted without persistence): presence loses every stream
// and node. Each node's heartbeat finds itself forgotten, writes its
// streams again and resyncs (presence OnLost); until the other nodes
// rebuild their replica, deliveries may go to the wrong node or none, and
// the devices get them by gap → Sync or by the resync.
func TestClusterFaultRedisWiped(t *testing.T) {
	t.Parallel()
	fc := startFaultCluster(t, func(cfg *server.Config) { cfg.ResyncInterval = time.Second })
	stop := fc.traffic()
	fc.waitAcked(t, 100)
	fc.c.WipeRedis(t)
	fc.waitAcked(t, 100)
	fc.c.WipeRedis(t)
	fc.waitAcked(t, 100)
	fc.finish(t, stop, fc.c.Nodes[0])
}

// lossyBus drops and reorders deliveries published to other nodes, in a
// fixed pattern: of the cross-node deliveries a node publishes, every
// dropEvery-th is dropped (Publish reports success and publishes nothing),
// and every swapEvery-th is held back and published right after the next
// delivery of the same conversation to the same node. Announces, kicks and
// group changes, and deliveries to the node itself, pass untouched.
//
// What recovers what:
//   - a dropped or held-back delivery followed by a later one of the
//     conversation: the receiving hub sees the gap and switches the
//     conversation to pull (Notify → Sync from the device's last seq); the
//     late one that follows a swap is then dropped by the hub or folded
//     into the pull;
//   - a dropped delivery that nothing follows (the last messages before
//     the traffic stops): the periodic resync (ResyncInterval) re-reads
//     what each stream is behind on and sends a Notify.
type lossyBus struct {
	bus.Bus
	node                 string
	dropEvery, swapEvery int

	mu      sync.Mutex
	n       int                      // cross-node deliveries published to
	held    map[heldKey]bus.Delivery // swapped: waits for the next of its conversation
	dropped int
	swapped int
}

type heldKey struct{ node, conv string }

func (b *lossyBus) Publish(ctx context.Context, node string, d bus.Delivery) error {
	if node == b.node {
		return b.Bus.Publish(ctx, node, d)
	}
	b.mu.Lock()
	defer b.mu.Unlock() // publishes stay in the order of the calls
	b.n++
	k := heldKey{node, d.Msg.GetConversationId()}
	late, holding := b.held[k]
	switch {
	case b.n%b.dropEvery == 0:
		b.dropped++
		return nil
	case b.n%b.swapEvery == 0 && !holding:
		b.swapped++
		b.held[k] = d
		return nil
	}
	err := b.Bus.Publish(ctx, node, d)
	if holding {
		delete(b.held, k)
		if lerr := b.Bus.Publish(ctx, node, late); err == nil {
			err = lerr
		}
	}
	return err
}

func (b *lossyBus) counts() (dropped, swapped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped, b.swapped
}

// Deliveries between nodes are lost and reordered in a fixed pattern;
// every message still arrives exactly once and in order (see lossyBus
// for which mechanism recovers which loss).
func TestClusterFaultBusReorderAndDrop(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		buses []*lossyBus
	)
	fc := startFaultCluster(t, func(cfg *server.Config) {
		// A trailing dropped delivery waits for the resync: keep it short.
		cfg.ResyncInterval = 500 * time.Millisecond
		b := &lossyBus{
			Bus:       bus.NewRedis(cfg.Redis, cfg.RedisPrefix, slog.New(slog.NewTextHandler(io.Discard, nil))),
			node:      cfg.NodeID,
			dropEvery: 5,
			swapEvery: 7,
			held:      make(map[heldKey]bus.Delivery),
		}
		cfg.Bus = b
		mu.Lock()
		buses = append(buses, b)
		mu.Unlock()
	})
	stop := fc.traffic()
	fc.waitAcked(t, 400)
	fc.finish(t, stop, fc.c.Nodes[0])
	var dropped, swapped int
	for _, b := range buses {
		d, s := b.counts()
		dropped, swapped = dropped+d, swapped+s
	}
	t.Logf("the bus dropped %d deliveries and reordered %d", dropped, swapped)
	if dropped == 0 || swapped == 0 {
		t.Errorf("the bus dropped %d and reordered %d deliveries: the test tested nothing", dropped, swapped)
	}
}
