package nodelease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/sqlite"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// flaky fails renewals while failing is set, with err.
type flaky struct {
	storage.NodeLeases
	mu      sync.Mutex
	err     error
	renewed int
}

func (f *flaky) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *flaky) RenewNodeLease(ctx context.Context, l storage.Lease, ttl time.Duration) (storage.Lease, error) {
	f.mu.Lock()
	err := f.err
	f.renewed++
	f.mu.Unlock()
	if err != nil {
		return storage.Lease{}, err
	}
	return f.NodeLeases.RenewNodeLease(ctx, l, ttl)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func TestKeeperLeasesRenewsAndReleases(t *testing.T) {
	st := openStore(t)
	k := New(st, Config{Node: "a", TTL: 300 * time.Millisecond}, quiet)
	if _, err := k.IDs().Next(); !errors.Is(err, idgen.ErrLapsed) {
		t.Fatalf("ids before Start: %v", err)
	}
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	other := New(st, Config{Node: "b"}, quiet)
	if err := other.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	la, _ := k.Lease()
	lb, _ := other.Lease()
	if la.Number == lb.Number || k.IDs().Node() != la.Number || other.IDs().Node() != lb.Number {
		t.Fatalf("numbers %d and %d, snowflakes on %d and %d", la.Number, lb.Number, k.IDs().Node(), other.IDs().Node())
	}
	// Renewed past several TTLs: ids keep coming.
	time.Sleep(time.Second)
	if _, err := k.IDs().Next(); err != nil {
		t.Fatalf("after renewals: %v", err)
	}
	if l, _ := k.Lease(); !l.ExpiresAt.After(la.ExpiresAt) {
		t.Fatalf("lease not renewed: %v, first %v", l.ExpiresAt, la.ExpiresAt)
	}
	k.Stop()
	if _, err := k.IDs().Next(); !errors.Is(err, idgen.ErrLapsed) {
		t.Fatalf("ids after Stop: %v", err)
	}
	leases, err := st.ListNodeLeases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Number == la.Number && l.Live() {
			t.Fatalf("lease %+v still live after Stop", l)
		}
	}
}

// A node that cannot renew stops making ids when its lease lapses, and
// makes them again once a renewal gets through (nobody took the number).
func TestKeeperStopsIDsWhenRenewalsFail(t *testing.T) {
	f := &flaky{NodeLeases: openStore(t)}
	const ttl = 300 * time.Millisecond
	k := New(f, Config{Node: "a", TTL: ttl}, quiet)
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	f.set(storage.ErrUnavailable)
	failedAt := time.Now()
	waitFor(t, "ids stop", func() bool { _, err := k.IDs().Next(); return errors.Is(err, idgen.ErrLapsed) })
	if d := time.Since(failedAt); d > ttl+100*time.Millisecond {
		t.Fatalf("ids stopped %v after renewals began to fail, past the TTL %v", d, ttl)
	}
	f.set(nil)
	waitFor(t, "ids resume", func() bool { _, err := k.IDs().Next(); return err == nil })
}

// A number another node took (this one was cut off past expiry and grace)
// is given up, and a new one leased.
func TestKeeperLeasesANewNumberWhenItsWasTaken(t *testing.T) {
	st := openStore(t)
	f := &flaky{NodeLeases: st}
	k := New(f, Config{Node: "a", TTL: 300 * time.Millisecond, Grace: 10 * time.Millisecond}, quiet)
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	first, _ := k.Lease()
	f.set(storage.ErrUnavailable)
	waitFor(t, "ids stop", func() bool { _, err := k.IDs().Next(); return errors.Is(err, idgen.ErrLapsed) })
	time.Sleep(time.Until(first.ExpiresAt.Add(500 * time.Millisecond)))
	taker, err := st.AcquireNodeLease(t.Context(), storage.LeaseRequest{Holder: "taker", Node: "b", TTL: time.Hour, Grace: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.set(nil)
	waitFor(t, "ids resume", func() bool { _, err := k.IDs().Next(); return err == nil })
	now, _ := k.Lease()
	if taker.Number == now.Number || k.IDs().Node() != now.Number {
		t.Fatalf("taker has %d; keeper moved from %d to %d, snowflake on %d", taker.Number, first.Number, now.Number, k.IDs().Node())
	}
}

func TestExclusiveKeeperRefusesWhileAnotherIsLive(t *testing.T) {
	st := openStore(t)
	a := New(st, Config{Node: "a", Exclusive: true}, quiet)
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := New(st, Config{Node: "b", Exclusive: true}, quiet)
	var held *HeldError
	if err := b.Start(t.Context()); !errors.As(err, &held) || held.Lease.Node != "a" {
		t.Fatalf("second exclusive keeper: %v", err)
	}
	if _, err := b.IDs().Next(); err == nil {
		t.Fatal("a refused keeper makes ids")
	}
	a.Stop()
	if err := b.Start(t.Context()); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	b.Stop()
}

func TestWaitAlone(t *testing.T) {
	st := openStore(t)
	if err := WaitAlone(t.Context(), st, "a", quiet); err != nil {
		t.Fatalf("empty database: %v", err)
	}
	// This node's killed run: waited out.
	if _, err := st.AcquireNodeLease(t.Context(), storage.LeaseRequest{Holder: "a/killed", Node: "a", TTL: 300 * time.Millisecond, Grace: time.Minute}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := WaitAlone(t.Context(), st, "a", quiet); err != nil || time.Since(begin) < 250*time.Millisecond {
		t.Fatalf("own killed run: %v after %v", err, time.Since(begin))
	}
	// A live lease of another node: refused at once.
	live := New(st, Config{Node: "b", TTL: 300 * time.Millisecond}, quiet)
	if err := live.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var held *HeldError
	if err := WaitAlone(t.Context(), st, "a", quiet); !errors.As(err, &held) || held.Lease.Node != "b" {
		t.Fatalf("another node live: %v", err)
	}
	// A live process under the same name, renewing: refused after one wait.
	if err := WaitAlone(t.Context(), st, "b", quiet); !errors.As(err, &held) {
		t.Fatalf("same name, renewing: %v", err)
	}
	live.Stop()
}

func TestMaxNodeNumbersAgree(t *testing.T) {
	if storage.MaxNodeNumber != idgen.MaxNode {
		t.Fatalf("storage.MaxNodeNumber %d, idgen.MaxNode %d", storage.MaxNodeNumber, idgen.MaxNode)
	}
}
