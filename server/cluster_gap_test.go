package server_test

import (
	"testing"

	"github.com/starling-im/starling/server/servertest"
)

// A conversation a device's stream has not seen yet: its first message to
// reach the device's node must not be taken for where the device starts
// when an earlier message, committed on another node, is still on its way.
// node-1 commits seq 1 while it cannot reach Redis (its delivery to node-0
// is owed), then node-0 commits seq 2: carol (node-0) must not be pushed 2
// across the gap, and alice, who sent 2 from node-0, must still learn of 1.
// (It failed before hub.Config.OffersMayBeLost: carol was pushed [2] and
// neither heard of 1 again, the owed Announce{latest 1} being below what
// the sessions thought the devices had.)
func TestClusterFirstOfferAfterAGap(t *testing.T) {
	m := newMetered(noRecheck)
	c := servertest.StartCluster(t, 2, m.configure)
	n0, n1 := c.Nodes[0], c.Nodes[1]
	aliceU, bobU, carolU := n0.NewUser(t, "alice"), n1.NewUser(t, "bob"), n0.NewUser(t, "carol")
	alice := connect(t, n0.Server, aliceU, "phone")
	bob := connect(t, n1.Server, bobU, "phone")
	carol := connect(t, n0.Server, carolU, "phone")
	m.awaitDevices(t, 3, n0, n1)
	// Made through the store: CreateGroup would record the creation at
	// seq 1, which the devices would see before the gap.
	g := storeGroup(t, n0.Server, aliceU, bobU, carolU)

	n1.RedisProxy.Cut()
	expectAck(t, bob, bob.Text(t, "", g.GetGroupId(), "b1", "first, from node-1"))
	expectAck(t, alice, alice.Text(t, "", g.GetGroupId(), "a2", "second, from node-0"))
	n1.RedisProxy.Restore()

	f := carol.Next(t)
	if p := f.GetPush(); p != nil && p.GetMessages()[0].GetSeq() != 1 {
		t.Errorf("carol's first frame for the group is %v: a push across the gap at seq 1", traceFrame(f))
	}
	// Whatever carol gets, a Notify or push of seq 1 must reach alice too.
	for {
		f := alice.Next(t)
		if p := f.GetPush(); p != nil && p.GetMessages()[0].GetSeq() == 1 || f.GetNotify() != nil {
			return
		}
	}
}
