package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Several targets are the nodes of one cluster (--target a,b,c): every
// user exists on all of them, so setup calls may go to any node, and each
// device's stream is placed on one target, by its slot: the target's
// position in --target. Two slots may name the same address (one node
// measured as if it were two); figures per target are per slot, while the
// same-node/cross-node split of latencies is by address (see nodeIDs).

// maxTargets bounds --target: a message carries its sender's slot in two
// bytes, and a cluster of more nodes than that is no bench on one machine.
const maxTargets = 256

// parseTargets splits --target into its addresses, in order.
func parseTargets(s string) ([]string, error) {
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("--target %q: empty address in the list", s)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) > maxTargets {
		return nil, fmt.Errorf("--target: %d addresses, at most %d", len(addrs), maxTargets)
	}
	return addrs, nil
}

// roundRobin is the target slot of the i-th device of a population spread
// evenly over n targets.
func roundRobin(i, n int) int { return i % n }

// pairTargets is where c2c pair i's sender and receiver connect. With
// split the receiver is on the target after the sender's, so with n > 1
// the two ends are never on the same slot and every message crosses
// nodes; without split both ends share slot i mod n, so a cluster run can
// still measure same-node figures while every node carries load.
func pairTargets(i, n int, split bool) (sender, receiver int) {
	s := roundRobin(i, n)
	if split {
		return s, roundRobin(i+1, n)
	}
	return s, s
}

// nodeIDs maps each slot to the first slot with the same address: slots
// with one id are one node. Addresses compare as written, so
// "localhost:7070" and "127.0.0.1:7070" count as two nodes; name a node
// the same way every time it is meant to be one.
func nodeIDs(addrs []string) []int {
	ids := make([]int, len(addrs))
	first := make(map[string]int, len(addrs))
	for i, a := range addrs {
		if j, ok := first[a]; ok {
			ids[i] = j
			continue
		}
		first[a] = i
		ids[i] = i
	}
	return ids
}

// Latency classes of a delivery: sender and receiver on one node or not.
const (
	sameNode = iota
	crossNode
	nodeClasses
)

// className is the report's key of a latency class.
func className(class int) string {
	if class == sameNode {
		return "same_node"
	}
	return "cross_node"
}

// placement says where senders and receivers connect, for the report.
func placement(scenario string, n int, split bool) string {
	switch {
	case n == 1:
		return "one target"
	case scenario == "c2c" && split:
		return fmt.Sprintf("c2c pair i: sender on target i mod %d, receiver on target (i+1) mod %d", n, n)
	case scenario == "c2c":
		return fmt.Sprintf("c2c pair i: sender and receiver on target i mod %d", n)
	default:
		return fmt.Sprintf("device i on target i mod %d (round-robin)", n)
	}
}

// nodeStats counts what the devices of one target slot did; every field
// is updated atomically from many goroutines.
type nodeStats struct {
	devices    atomic.Int64 // devices placed on the target
	senders    atomic.Int64 // of them, those that send
	connected  atomic.Int64 // first streams opened (reconnects not counted)
	sent       atomic.Int64
	acked      atomic.Int64
	delivered  atomic.Int64
	viaPush    atomic.Int64
	viaSync    atomic.Int64
	pushFrames atomic.Int64
}

// TargetReport is what the devices placed on one --target slot did.
type TargetReport struct {
	Slot       int    `json:"slot"` // position in --target
	Addr       string `json:"addr"`
	Devices    int64  `json:"devices"`
	Senders    int64  `json:"senders"`
	Connected  int64  `json:"connected"`
	Sent       int64  `json:"sent"`
	Acked      int64  `json:"acked"`
	Delivered  int64  `json:"delivered"`
	ViaPush    int64  `json:"via_push"`
	ViaSync    int64  `json:"via_sync"`
	PushFrames int64  `json:"push_frames"`
}

// report is the figures of slot at addr.
func (s *nodeStats) report(slot int, addr string) TargetReport {
	return TargetReport{
		Slot:       slot,
		Addr:       addr,
		Devices:    s.devices.Load(),
		Senders:    s.senders.Load(),
		Connected:  s.connected.Load(),
		Sent:       s.sent.Load(),
		Acked:      s.acked.Load(),
		Delivered:  s.delivered.Load(),
		ViaPush:    s.viaPush.Load(),
		ViaSync:    s.viaSync.Load(),
		PushFrames: s.pushFrames.Load(),
	}
}

// nodeLatency is send→push latency split by class: whether the sender's
// target and the receiver's are one node.
type nodeLatency struct {
	nodeID  []int // per slot, from nodeIDs
	classes [nodeClasses]*latency
}

func newNodeLatency(addrs []string) *nodeLatency {
	l := &nodeLatency{nodeID: nodeIDs(addrs)}
	for i := range l.classes {
		l.classes[i] = newLatency()
	}
	return l
}

// class is the class of a delivery from a sender on slot from to a
// receiver on slot to; ok is false for a slot out of range (content the
// bench did not send, or a message of an earlier run).
func (l *nodeLatency) class(from, to int) (class int, ok bool) {
	if from < 0 || from >= len(l.nodeID) || to < 0 || to >= len(l.nodeID) {
		return 0, false
	}
	if l.nodeID[from] == l.nodeID[to] {
		return sameNode, true
	}
	return crossNode, true
}

// record adds one delivery's latency to its class; shard as in
// latency.record.
func (l *nodeLatency) record(shard, from, to int, d time.Duration) {
	if c, ok := l.class(from, to); ok {
		l.classes[c].record(shard, d)
	}
}

// summary is each class's percentiles, by className; classes without
// samples are left out.
func (l *nodeLatency) summary() map[string]Percentiles {
	out := make(map[string]Percentiles)
	for c, h := range l.classes {
		if p := summarize(h.merged()); p.Count > 0 {
			out[className(c)] = p
		}
	}
	return out
}
