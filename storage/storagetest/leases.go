package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var leaseTests = []test{
	{"ConcurrentAcquirersGetDistinctNumbers", testLeaseConcurrent},
	{"RenewKeepsTheNumberAndExtends", testLeaseRenew},
	{"LapsedNotReusedWithinGrace", testLeaseGrace},
	{"RenewAfterLossFails", testLeaseLost},
	{"Release", testLeaseRelease},
}

func leaseReq(holder string, ttl, grace time.Duration) storage.LeaseRequest {
	return storage.LeaseRequest{Holder: holder, Node: "node-" + holder, TTL: ttl, Grace: grace}
}

func acquire(t *testing.T, s storage.Store, req storage.LeaseRequest) storage.Lease {
	t.Helper()
	l, err := s.AcquireNodeLease(t.Context(), req)
	must(t, err, "acquire a node lease for "+req.Holder)
	if l.Holder != req.Holder || l.Node != req.Node || l.Number < 0 || l.Number > storage.MaxNodeNumber || !l.Live() {
		t.Fatalf("acquired %+v for %+v", l, req)
	}
	return l
}

// Many nodes starting at once never share a number, and the numbers are
// the smallest ones.
func testLeaseConcurrent(t *testing.T, f Factory) {
	s := newStore(t, f)
	const n = 20
	var wg sync.WaitGroup
	leases := make([]storage.Lease, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			leases[i], errs[i] = s.AcquireNodeLease(t.Context(), leaseReq(fmt.Sprint("h", i), time.Minute, storage.NodeLeaseGrace))
		})
	}
	wg.Wait()
	seen := map[int]string{}
	for i, l := range leases {
		must(t, errs[i], "concurrent acquire")
		if other, ok := seen[l.Number]; ok {
			t.Fatalf("number %d leased to both %s and %s", l.Number, other, l.Holder)
		}
		seen[l.Number] = l.Holder
	}
	for i := range n {
		if _, ok := seen[i]; !ok {
			t.Fatalf("numbers %v: %d is missing", seen, i)
		}
	}
	list, err := s.ListNodeLeases(t.Context())
	must(t, err, "list leases")
	if len(list) != n {
		t.Fatalf("listed %d leases, want %d", len(list), n)
	}
	for i, l := range list {
		if l.Number != i || seen[i] != l.Holder || !l.Live() {
			t.Fatalf("lease %d listed as %+v", i, l)
		}
	}
}

func testLeaseRenew(t *testing.T, f Factory) {
	s := newStore(t, f)
	l := acquire(t, s, leaseReq("a", 2*time.Second, storage.NodeLeaseGrace))
	time.Sleep(20 * time.Millisecond)
	r, err := s.RenewNodeLease(t.Context(), l, time.Minute)
	must(t, err, "renew")
	if r.Number != l.Number || r.Holder != "a" || !r.ExpiresAt.After(l.ExpiresAt) || r.Remaining < 50*time.Second || r.Remaining > time.Minute {
		t.Fatalf("renewed %+v into %+v", l, r)
	}
	// A lease that lapsed but was not taken can still be renewed: no one
	// else made ids with its number.
	short := acquire(t, s, leaseReq("b", time.Millisecond, storage.NodeLeaseGrace))
	time.Sleep(10 * time.Millisecond)
	r, err = s.RenewNodeLease(t.Context(), short, time.Minute)
	must(t, err, "renew a lapsed lease nobody took")
	if r.Number != short.Number || !r.Live() {
		t.Fatalf("renewed %+v into %+v", short, r)
	}
}

// A lapsed lease is not reused before expires_at + grace (its holder may
// still be making ids by its own clock), and is reused after.
func testLeaseGrace(t *testing.T, f Factory) {
	s := newStore(t, f)
	const ttl, grace = 100 * time.Millisecond, 1500 * time.Millisecond
	old := acquire(t, s, leaseReq("old", ttl, grace))
	time.Sleep(ttl + 50*time.Millisecond)
	list, err := s.ListNodeLeases(t.Context())
	must(t, err, "list")
	if len(list) != 1 || list[0].Live() {
		t.Fatalf("after its ttl the lease is listed as %+v, want lapsed", list)
	}
	within := acquire(t, s, leaseReq("within", time.Minute, grace))
	if within.Number == old.Number {
		t.Fatalf("number %d reused %v after it lapsed, within the grace of %v", old.Number, time.Since(old.ExpiresAt), grace)
	}
	time.Sleep(time.Until(old.ExpiresAt.Add(grace + 200*time.Millisecond)))
	after := acquire(t, s, leaseReq("after", time.Minute, grace))
	if after.Number != old.Number {
		t.Fatalf("got number %d after the grace, want the lapsed %d", after.Number, old.Number)
	}
}

func testLeaseLost(t *testing.T, f Factory) {
	s := newStore(t, f)
	const grace = 50 * time.Millisecond
	old := acquire(t, s, leaseReq("old", time.Millisecond, grace))
	time.Sleep(100 * time.Millisecond)
	taker := acquire(t, s, leaseReq("taker", time.Minute, grace))
	if taker.Number != old.Number {
		t.Fatalf("taker got %d, want the lapsed %d", taker.Number, old.Number)
	}
	_, err := s.RenewNodeLease(t.Context(), old, time.Minute)
	wantErr(t, err, storage.ErrNotFound, "renew a lease another holder took")
	wantErr(t, s.ReleaseNodeLease(t.Context(), old), storage.ErrNotFound, "release a lease another holder took")
	list, err := s.ListNodeLeases(t.Context())
	must(t, err, "list")
	if len(list) != 1 || list[0].Holder != "taker" || !list[0].Live() {
		t.Fatalf("leases %+v after a failed renew and release by the old holder", list)
	}
}

// Release ends a lease at once (not live: a single-node check passes), and
// its number is free after the grace.
func testLeaseRelease(t *testing.T, f Factory) {
	s := newStore(t, f)
	const grace = 300 * time.Millisecond
	l := acquire(t, s, leaseReq("a", time.Hour, grace))
	must(t, s.ReleaseNodeLease(t.Context(), l), "release")
	list, err := s.ListNodeLeases(t.Context())
	must(t, err, "list")
	if len(list) != 1 || list[0].Live() || list[0].Holder != "a" {
		t.Fatalf("after release: %+v", list)
	}
	time.Sleep(grace + 100*time.Millisecond)
	if again := acquire(t, s, leaseReq("b", time.Hour, grace)); again.Number != l.Number {
		t.Fatalf("after release and grace got %d, want %d", again.Number, l.Number)
	}
	if _, err := s.AcquireNodeLease(t.Context(), storage.LeaseRequest{Node: "x", TTL: time.Second}); err == nil {
		t.Fatal("a lease without a holder was granted")
	}
}
