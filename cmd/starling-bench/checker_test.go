package main

import (
	"strings"
	"testing"
)

// ackAll records seqs 1..n of conv as acknowledged with msg id 100+seq.
func ackAll(c *checker, conv string, n int64, sender *receiver) {
	for s := int64(1); s <= n; s++ {
		c.acked(conv, s, 100+s, sender)
	}
}

func TestCheckerCleanRun(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("c2c:a:b", r)
	ackAll(c, "c2c:a:b", 5, nil)
	for s := int64(1); s <= 5; s++ {
		if got := r.deliver("c2c:a:b", s, 100+s, false, viaPush); got != accepted {
			t.Fatalf("seq %d: %v, want accepted", s, got)
		}
	}
	if res := c.verify(); !res.OK || res.Acked != 5 || res.Lost != 0 || len(res.Problems) != 0 {
		t.Fatalf("verify = %+v, want OK", res)
	}
}

func TestCheckerFlagsLoss(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("c2c:a:b", r)
	ackAll(c, "c2c:a:b", 5, nil)
	for s := int64(1); s <= 3; s++ {
		r.deliver("c2c:a:b", s, 100+s, false, viaPush)
	}
	res := c.verify()
	if res.OK || res.Lost != 2 {
		t.Fatalf("verify = %+v, want 2 lost", res)
	}
	if len(res.Problems) == 0 || !strings.Contains(res.Problems[0], "never arrived") {
		t.Errorf("problems = %q, want the loss explained", res.Problems)
	}
}

func TestCheckerFlagsDuplicate(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("c2c:a:b", r)
	ackAll(c, "c2c:a:b", 3, nil)
	r.deliver("c2c:a:b", 1, 101, false, viaPush)
	r.deliver("c2c:a:b", 2, 102, false, viaPush)
	if got := r.deliver("c2c:a:b", 2, 102, false, viaPush); got != duplicate {
		t.Fatalf("second push of seq 2: %v, want duplicate", got)
	}
	r.deliver("c2c:a:b", 3, 103, false, viaPush)
	res := c.verify()
	if res.OK || res.Duplicates != 1 || res.Lost != 0 {
		t.Fatalf("verify = %+v, want 1 duplicate, nothing lost", res)
	}
}

func TestCheckerFlagsAlteredMessage(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("c2c:a:b", r)
	ackAll(c, "c2c:a:b", 2, nil)
	r.deliver("c2c:a:b", 1, 101, false, viaPush)
	r.deliver("c2c:a:b", 2, 999, false, viaPush) // not the message acked as seq 2
	if res := c.verify(); res.OK || res.Altered != 1 {
		t.Fatalf("verify = %+v, want 1 altered", res)
	}
}

// A gap is repaired by a Sync; the repeats it brings, and pushes already
// on their way that repeat what it brought, are not duplicates.
func TestCheckerGapRepairedBySync(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("g", r)
	ackAll(c, "g", 4, nil)
	r.deliver("g", 1, 101, false, viaPush)
	if got := r.deliver("g", 3, 103, false, viaPush); got != gap {
		t.Fatalf("seq 3 after 1: %v, want gap", got)
	}
	r.pulledOverGap("g")
	for s := int64(2); s <= 4; s++ {
		if got := r.deliver("g", s, 100+s, false, viaSync); got != accepted {
			t.Fatalf("synced seq %d: %v", s, got)
		}
	}
	if got := r.deliver("g", 4, 104, false, viaPush); got != redundant {
		t.Fatalf("push of seq 4 after the pull: %v, want redundant", got)
	}
	if res := c.verify(); !res.OK || res.Gaps != 1 || res.Redundant != 1 {
		t.Fatalf("verify = %+v, want OK with 1 gap and 1 redundant", res)
	}
}

// A group sender learns its own messages from SendAcks, possibly ahead of
// others' messages it has not been given yet, which a Sync then brings
// along with its own again.
func TestCheckerOwnMessages(t *testing.T) {
	c, alice, bob := newChecker(), newReceiver("alice"), newReceiver("bob")
	c.expect("g", alice)
	c.expect("g", bob)
	if n := c.acked("g", 1, 101, alice); n != 1 {
		t.Fatalf("alice's message promises %d deliveries, want 1 (bob)", n)
	}
	c.acked("g", 2, 102, bob)
	c.acked("g", 3, 103, alice)
	alice.own("g", 1, 101)
	alice.own("g", 3, 103) // ahead: seq 2 (bob's) not here yet
	alice.deliver("g", 2, 102, false, viaSync)
	alice.deliver("g", 3, 103, true, viaSync) // her own, again
	bob.deliver("g", 1, 101, false, viaPush)
	bob.own("g", 2, 102)
	bob.deliver("g", 3, 103, false, viaPush)
	if res := c.verify(); !res.OK || res.Lost != 0 {
		t.Fatalf("verify = %+v, want OK", res)
	}
	if alice.last("g") != 3 || bob.last("g") != 3 {
		t.Fatalf("last: alice %d, bob %d; want 3", alice.last("g"), bob.last("g"))
	}
}

func TestCheckerMissing(t *testing.T) {
	c, r := newChecker(), newReceiver("bob")
	c.expect("x", r)
	ackAll(c, "x", 3, nil)
	r.deliver("x", 1, 101, false, viaPush)
	if m := c.missing(); m != 2 {
		t.Fatalf("missing = %d, want 2", m)
	}
}
