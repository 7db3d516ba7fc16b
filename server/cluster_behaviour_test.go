package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/nodelease"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// metered gives every node of a cluster a metrics registry of its own, so
// a test can wait for what a node's presence replica knows (how many
// devices, how many live nodes) instead of assuming how fast Redis
// pub/sub carries the news.
type metered struct {
	mu   sync.Mutex
	regs map[string]*prometheus.Registry // node → its registry (the latest start's)
	// then, if not nil, changes each node's configuration further.
	then func(*server.Config)
}

func newMetered(then func(*server.Config)) *metered {
	return &metered{regs: make(map[string]*prometheus.Registry), then: then}
}

// configure is StartCluster's configure function.
func (m *metered) configure(cfg *server.Config) {
	reg := prometheus.NewRegistry() // a restart registers everything again
	m.mu.Lock()
	m.regs[cfg.NodeID] = reg
	m.mu.Unlock()
	cfg.Registerer = reg
	if m.then != nil {
		m.then(cfg)
	}
}

// noRecheck turns off the second catch-up read of a new stream
// (RecheckAfter). The tests that use it assert that a message is PUSHED:
// the recheck, two seconds after a connect, legitimately turns a push
// into a Notify when its database read falls between another node's
// commit and the delivery's arrival here. Those tests wait (await) until
// every node routes to the devices before sending, so no message depends
// on the recheck.
func noRecheck(cfg *server.Config) { cfg.RecheckAfter = 0 }

// value reads a counter or gauge of node; -1 when it is not exported.
func (m *metered) value(t *testing.T, node, name string) float64 {
	t.Helper()
	m.mu.Lock()
	reg := m.regs[node]
	m.mu.Unlock()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather %s's metrics: %v", node, err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return value(f.GetMetric()[0])
		}
	}
	return -1
}

// await waits until node's metric name equals want and returns how long
// that took.
func (m *metered) await(t *testing.T, node, name string, want float64) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := m.value(t, node, name)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > servertest.Timeout {
			t.Fatalf("%s: %s is %v after %v, want %v", node, name, got, servertest.Timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitDevices waits until each of nodes places want devices in the
// cluster: the streams opened and closed so far are known there.
func (m *metered) awaitDevices(t *testing.T, want float64, nodes ...*servertest.ClusterNode) {
	t.Helper()
	for _, n := range nodes {
		m.await(t, n.Name, "starling_presence_devices", want)
	}
}

// awaitCursors waits until the database holds the device's cursors in
// want (conversation → delivered seq), read through srv: the acks the
// device sent have been written by whichever node it was on.
func awaitCursors(t *testing.T, srv *servertest.Server, token string, want map[string]int64) {
	t.Helper()
	cc := chatClient(t, srv)
	deadline := time.Now().Add(servertest.Timeout)
	for {
		res, err := cc.ListConversations(servertest.WithToken(t.Context(), token), &starlingv1.ListConversationsRequest{})
		if err != nil {
			t.Fatalf("list conversations: %v", err)
		}
		got := map[string]int64{}
		for _, c := range res.GetConversations() {
			got[c.GetConversationId()] = c.GetDeliveredSeq()
		}
		match := true
		for conv, seq := range want {
			match = match && got[conv] == seq
		}
		if match {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursors %v after %v, want %v", got, servertest.Timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endsWith waits for st to end and checks that its last frame is a
// Disconnect with reason and reconnect; it returns the stream's error.
func endsWith(t *testing.T, st *servertest.Stream, reason starlingv1.DisconnectReason, reconnect bool) error {
	t.Helper()
	rest, err := st.End(t)
	if len(rest) == 0 {
		t.Fatalf("stream ended (%v) without a Disconnect, want %v", err, reason)
	}
	d := rest[len(rest)-1].GetDisconnect()
	if d.GetReason() != reason || d.GetReconnect() != reconnect {
		t.Fatalf("last frames %v (end: %v), want Disconnect %v reconnect=%v", rest, err, reason, reconnect)
	}
	return err
}

// startAliceBob starts a metered cluster of three nodes (then, if not
// nil, changes each node's configuration) with alice's phone connected to
// node-0 and bob's to node-1.
func startAliceBob(t *testing.T, then func(*server.Config)) (*servertest.Cluster, *metered, device, device) {
	t.Helper()
	m := newMetered(then)
	c := servertest.StartCluster(t, 3, m.configure)
	aliceU, bobU := c.Nodes[0].NewUser(t, "alice"), c.Nodes[1].NewUser(t, "bob")
	return c, m, connect(t, c.Nodes[0].Server, aliceU, "phone"), connect(t, c.Nodes[1].Server, bobU, "phone")
}

// A device moves node: bob's phone acks what it was pushed on node-1,
// goes away, and comes back on node-2. It is told (Welcome, then one
// Notify per conversation) exactly what it missed, from the cursor node-1
// wrote; Sync returns exactly that; nothing acked is pushed again; and
// new messages are pushed to it on node-2.
func TestClusterDeviceMovesNode(t *testing.T) {
	t.Parallel()
	c, m, alice, bob := startAliceBob(t, noRecheck)
	n0, n2 := c.Nodes[0], c.Nodes[2]
	aliceU, bobU := alice.user, bob.user
	g := newGroup(t, n0.Server, alice, bobU)
	c2c, grp := storage.C2CConversationID(aliceU.ID, bobU.ID), g.GetConversationId()
	m.awaitDevices(t, 2, n0)
	readCreation(t, alice, bob) // the group's seq 1: message i of the group is seq i+1

	send := func(i int) {
		t.Helper()
		if ack, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint("c", i), fmt.Sprint("c2c ", i))); ack.GetSeq() != int64(i) {
			t.Fatalf("c2c message %d stored at seq %d", i, ack.GetSeq())
		}
		if ack, _ := expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), fmt.Sprint("g", i), fmt.Sprint("group ", i))); ack.GetSeq() != int64(i+1) {
			t.Fatalf("group message %d stored at seq %d", i, ack.GetSeq())
		}
	}
	// On node-1: pushed and acked, one by one.
	for i := 1; i <= 2; i++ {
		send(i)
		got := pushed(t, bob, 2)
		if got[0].GetConversationId() != c2c || got[0].GetSeq() != int64(i) || got[1].GetConversationId() != grp || got[1].GetSeq() != int64(i+1) {
			t.Fatalf("bob on node-1 was pushed %v, want c2c then group at seq %d", got, i)
		}
	}
	awaitCursors(t, n2.Server, bob.token, map[string]int64{c2c: 2, grp: 3})
	bob.Close()
	m.awaitDevices(t, 1, n0) // node-0 no longer places bob on node-1

	// Missed while away: seqs 3..5 of both conversations.
	for i := 3; i <= 5; i++ {
		send(i)
	}

	back := device{user: bobU, token: bob.token, Stream: n2.OpenStream(t, bob.token)}
	if back.Welcome.GetNodeId() != "node-2" {
		t.Fatalf("welcomed by %s, want node-2", back.Welcome.GetNodeId())
	}
	notified := map[string]*starlingv1.Notify{}
	for len(notified) < 2 {
		f := back.Next(t)
		n := f.GetNotify()
		if n == nil || notified[n.GetConversationId()] != nil {
			t.Fatalf("after Welcome got %v, want one Notify per conversation", f)
		}
		notified[n.GetConversationId()] = n
	}
	for conv, off := range map[string]int64{c2c: 0, grp: 1} {
		if n := notified[conv]; n.GetLatestSeq() != 5+off || n.GetDeliveredSeq() != 2+off {
			t.Fatalf("Notify for %s: %v, want latest %d, delivered %d (the cursor node-1 wrote)", conv, n, 5+off, 2+off)
		}
	}
	back.Quiet(t, 200*time.Millisecond) // nothing acked on node-1 is pushed again
	for conv, off := range map[string]int64{c2c: 0, grp: 1} {
		got := syncAll(t, back, conv, 2+off)
		wantSeqs(t, got, 3+off, 5+off)
		for _, msg := range got {
			if msg.GetConversationId() != conv || !strings.HasSuffix(msg.GetContent().GetText(), fmt.Sprint(" ", msg.GetSeq()-off)) {
				t.Fatalf("sync of %s returned %v", conv, msg)
			}
		}
	}
	back.Quiet(t, 200*time.Millisecond)

	// New messages are pushed on node-2, once node-0 knows bob is there.
	m.awaitDevices(t, 2, n0)
	send(6)
	got := pushed(t, back, 2)
	if got[0].GetConversationId() != c2c || got[0].GetSeq() != 6 || got[1].GetConversationId() != grp || got[1].GetSeq() != 7 {
		t.Fatalf("bob on node-2 was pushed %v, want seq 6 of c2c then group", got)
	}
	back.Quiet(t, 200*time.Millisecond)
}

// The same device opening a stream on another node replaces its stream
// on the first: that one gets Disconnect{REPLACED, no reconnect} and
// ends; the new one is pushed what comes next. Both with the same token
// and with a new login of the device, both ways between two nodes, and
// back again.
func TestClusterReplacedAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		newLogin bool
		hops     []int // the nodes the device opens its streams on, in turn
	}{
		{name: "same token", hops: []int{0, 1, 0}},
		{name: "new login", newLogin: true, hops: []int{1, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMetered(noRecheck)
			c := servertest.StartCluster(t, 2, m.configure)
			aliceU, bobU := c.Nodes[0].NewUser(t, "alice"), c.Nodes[0].NewUser(t, "bob")
			alice := connect(t, c.Nodes[0].Server, aliceU, "phone")
			var prev *servertest.Stream
			token := ""
			for i, hop := range tc.hops {
				n := c.Nodes[hop]
				if token == "" || tc.newLogin {
					token = n.Login(t, bobU, "phone")
				}
				start := time.Now()
				cur := n.OpenStream(t, token)
				if prev == nil {
					m.awaitDevices(t, 2, c.Nodes[0])
				} else {
					// node-0 holds one of the two streams: it has placed
					// the device on the new one's node once the old one
					// was replaced (here, or on its order from elsewhere).
					if err := endsWith(t, prev, starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED, false); err != nil {
						t.Fatalf("replaced stream ended with %v, want a clean end", err)
					}
					t.Logf("hop %d: the stream on node-%d was replaced %v after the device began opening one on node-%d",
						i, tc.hops[i-1], time.Since(start).Round(time.Millisecond), hop)
				}
				seq := int64(i + 1)
				expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint("m", seq), "after hop"))
				got := nextPush(t, cur)
				if len(got) != 1 || got[0].GetSeq() != seq {
					t.Fatalf("hop %d: the stream on node-%d was pushed %v, want seq %d", i, hop, got, seq)
				}
				cur.Ack(t, got[0].GetConversationId(), seq)
				// The next stream's catch-up must find the device up to
				// date, or it would start the conversation with a Notify.
				awaitCursors(t, c.Nodes[0].Server, token, map[string]int64{got[0].GetConversationId(): seq})
				prev = cur
			}
		})
	}
}

// Logout through one node closes the device's stream on another
// (Disconnect{LOGGED_OUT, no reconnect}); the token is refused on a
// third; the user's other device is untouched.
func TestClusterLogoutAcrossNodes(t *testing.T) {
	t.Parallel()
	c, m, alice, phone := startAliceBob(t, noRecheck)
	n0, n2 := c.Nodes[0], c.Nodes[2]
	bobU := phone.user
	laptop := connect(t, n2.Server, bobU, "laptop")
	m.awaitDevices(t, 3, n0)

	start := time.Now()
	if _, err := starlingv1.NewAuthServiceClient(n0.Dial(t)).Logout(servertest.WithToken(t.Context(), phone.token), &starlingv1.LogoutRequest{}); err != nil {
		t.Fatalf("logout through node-0: %v", err)
	}
	called := time.Since(start)
	if err := endsWith(t, phone.Stream, starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT, false); err != nil {
		t.Fatalf("logged-out stream ended with %v, want a clean end", err)
	}
	t.Logf("logout: the call through node-0 took %v; the stream on node-1 ended %v after it was made",
		called.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	if _, err := n2.OpenRawStream(t, servertest.WithToken(t.Context(), phone.token)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream on node-2 with the revoked token: %v, want Unauthenticated", err)
	}
	if _, err := chatClient(t, n2.Server).ListConversations(servertest.WithToken(t.Context(), phone.token), &starlingv1.ListConversationsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unary call on node-2 with the revoked token: %v, want Unauthenticated", err)
	}
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "after", "still there?"))
	if got := pushed(t, laptop, 1); got[0].GetSeq() != 1 {
		t.Fatalf("bob's laptop on node-2 was pushed %v", got)
	}
}

// A logout through a node that cannot reach Redis still closes the
// device's stream on another node, once Redis answers again: the kick is
// owed, not dropped. Meanwhile the token is revoked everywhere.
func TestClusterLogoutDuringARedisBlip(t *testing.T) {
	t.Parallel()
	c, m, _, phone := startAliceBob(t, noRecheck)
	n0, n2 := c.Nodes[0], c.Nodes[2]
	m.awaitDevices(t, 2, n0)
	n0.RedisProxy.Cut()
	if _, err := starlingv1.NewAuthServiceClient(n0.Dial(t)).Logout(servertest.WithToken(t.Context(), phone.token), &starlingv1.LogoutRequest{}); err != nil {
		t.Fatalf("logout through node-0 with Redis cut: %v", err)
	}
	if _, err := n2.OpenRawStream(t, servertest.WithToken(t.Context(), phone.token)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reconnect with the revoked token: %v, want Unauthenticated", err)
	}
	n0.RedisProxy.Restore()
	if err := endsWith(t, phone.Stream, starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT, false); err != nil {
		t.Fatalf("logged-out stream ended with %v, want a clean end", err)
	}
}

// A member who leaves through one node can no longer send through
// another whose member cache held the group: the leave is heard there
// (GroupChanged over the bus), the send is refused PermissionDenied, and
// nothing is stored.
func TestClusterLeaveHeardByOtherNodes(t *testing.T) {
	t.Parallel()
	m := newMetered(noRecheck)
	c := servertest.StartCluster(t, 3, m.configure)
	n0, n2 := c.Nodes[0], c.Nodes[2]
	aliceU, carolU := n0.NewUser(t, "alice"), n2.NewUser(t, "carol")
	alice := connect(t, n0.Server, aliceU, "phone")
	carol := connect(t, n2.Server, carolU, "phone")
	g := newGroup(t, n0.Server, alice, carolU)
	m.awaitDevices(t, 2, n0, n2)
	readCreation(t, alice, carol)

	// Traffic both ways: node-2 authorizes carol from its member cache.
	expectAck(t, carol, carol.Text(t, "", g.GetGroupId(), "c1", "from node-2"))
	if got := pushed(t, alice, 1); got[0].GetSeq() != 2 {
		t.Fatalf("alice was pushed %v", got)
	}
	expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), "a2", "from node-0"))
	if got := pushed(t, carol, 1); got[0].GetSeq() != 3 {
		t.Fatalf("carol was pushed %v", got)
	}
	expectAck(t, carol, carol.Text(t, "", g.GetGroupId(), "c3", "cached"))
	pushed(t, alice, 1)

	laptop := device{user: carolU, token: n0.Login(t, carolU, "laptop")}
	leave(t, n0.Server, laptop, g)
	// Carol's phone is pushed the system message of her leaving (seq 5),
	// the last of the group she reads.
	if got := pushed(t, carol, 1); got[0].GetSeq() != 5 || got[0].GetSenderId() != "" {
		t.Fatalf("carol was pushed %v, want the leave's system message at seq 5", got)
	}
	// A barrier: node-2 hears node-0's publications in order, on one
	// subscription, one at a time. A push published after the leave
	// returned reaches carol after node-2 has handled the group change.
	expectAck(t, alice, alice.Text(t, carolU.ID, "", "barrier", "after the leave"))
	if got := pushed(t, carol, 1); got[0].GetConversationId() != storage.C2CConversationID(aliceU.ID, carolU.ID) {
		t.Fatalf("carol was pushed %v, want the c2c message", got)
	}

	e := expectError(t, carol, carol.Text(t, "", g.GetGroupId(), "c4", "still here?"), codes.PermissionDenied)
	if e.GetMessage() != apierr.NotMember.Message {
		t.Fatalf("refused with %q, want %q", e.GetMessage(), apierr.NotMember.Message)
	}
	if h := history(t, n2.Server, alice, g.GetConversationId(), 50); !slices.Equal(seqs(h.GetMessages()), []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("history %v, want seqs 1..5: the refused send stored nothing", seqs(h.GetMessages()))
	}
	// Nor is she pushed the group any more.
	expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), "a4", "after carol left"))
	carol.Quiet(t, 200*time.Millisecond)
}

// A node drained as by SIGTERM: its streams get Disconnect{SHUTDOWN,
// reconnect}, the other nodes stop routing to it within moments (a
// message for a device that was only there is stored, and published to
// no node), and the device, reconnecting elsewhere, pulls it once.
func TestClusterDrain(t *testing.T) {
	t.Parallel()
	c, m, alice, bob := startAliceBob(t, nil)
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	bobU := bob.user
	m.awaitDevices(t, 2, n0, n2)
	for _, n := range []*servertest.ClusterNode{n0, n2} {
		m.await(t, n.Name, "starling_presence_live_nodes", 3) // a node hears of another at its register events or heartbeat
	}

	start := time.Now()
	n1.Stop()
	stopped := time.Since(start)
	if err := endsWith(t, bob.Stream, starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN, true); status.Code(err) != apierr.ShuttingDown.Code {
		t.Fatalf("drained stream ended with %v, want %v", err, apierr.ShuttingDown.Code)
	}
	for _, n := range []*servertest.ClusterNode{n0, n2} {
		m.await(t, n.Name, "starling_presence_live_nodes", 2)
		m.await(t, n.Name, "starling_presence_devices", 1)
	}
	gone := time.Since(start)
	t.Logf("drain: node-1's Stop took %v; node-0 and node-2 took it out of presence %v after the Stop began",
		stopped.Round(time.Millisecond), gone.Round(time.Millisecond))

	ack, _ := expectAck(t, alice, alice.Text(t, bobU.ID, "", "while away", "stored for later"))
	if ack.GetSeq() != 1 {
		t.Fatalf("stored at seq %d", ack.GetSeq())
	}
	for _, name := range []string{"starling_bus_publish_failed_total", "starling_bus_owed"} {
		if v := m.value(t, "node-0", name); v != 0 {
			t.Fatalf("node-0: %s is %v: it still routed to node-1", name, v)
		}
	}

	back := device{user: bobU, token: bob.token, Stream: n2.OpenStream(t, bob.token)}
	f := back.Next(t)
	if n := f.GetNotify(); n.GetConversationId() != ack.GetConversationId() || n.GetLatestSeq() != 1 || n.GetDeliveredSeq() != 0 {
		t.Fatalf("after Welcome on node-2: %v, want Notify{latest 1, delivered 0}", f)
	}
	got := syncAll(t, back, ack.GetConversationId(), 0)
	if len(got) != 1 || got[0].GetMsgId() != ack.GetMsgId() {
		t.Fatalf("synced %v, want the one message", got)
	}
	back.Quiet(t, 300*time.Millisecond)
}

// Two nodes of one cluster may not share a node id: a second node started
// as node-0 on node-0's database refuses to serve, naming the id, and
// node-0 serves on.
func TestClusterNodeIDsUnique(t *testing.T) {
	t.Parallel()
	c := servertest.StartCluster(t, 1, nil)
	n0 := c.Nodes[0]
	// node-0's Serve runs in the background: wait until it holds its
	// lease, or the twin may take one first and node-0 be the one refused.
	for deadline := time.Now().Add(servertest.Timeout); ; time.Sleep(10 * time.Millisecond) {
		ls, err := n0.Store().ListNodeLeases(t.Context())
		if err == nil && len(ls) > 0 && ls[0].Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-0 holds no lease: %v", err)
		}
	}
	twin, err := server.New(n0.Config(), n0.Store(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), servertest.Timeout)
	defer cancel()
	err = twin.Serve(ctx, lis) // returns at once when refused; serves until ctx ends otherwise
	var held *nodelease.HeldError
	if !errors.As(err, &held) || !held.SameName || held.Lease.Node != "node-0" || !strings.Contains(err.Error(), "node-0") {
		t.Fatalf("a second node-0 served, or failed with %v; want a HeldError naming node-0", err)
	}
	t.Logf("refused: %v", err)

	leases, err := n0.Store().ListNodeLeases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var live []storage.Lease
	for _, l := range leases {
		if l.Live() {
			live = append(live, l)
		}
	}
	if len(live) != 1 || live[0].Node != "node-0" {
		t.Fatalf("live leases after the refusal: %+v, want node-0's alone", live)
	}
	aliceU, bobU := n0.NewUser(t, "alice"), n0.NewUser(t, "bob")
	alice, bob := connect(t, n0.Server, aliceU, "phone"), connect(t, n0.Server, bobU, "phone")
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "1", "still serving"))
	pushed(t, bob, 1)
}
