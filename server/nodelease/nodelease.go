// Package nodelease keeps a node's number: the node bits of its message
// ids, leased from the database so that no two nodes on one database make
// the same msg_id (issue 9). The Keeper acquires a number before the node
// serves, renews it every TTL/3, moves the Snowflake's deadline forward
// after each renewal, and releases it when the node stops. A node that
// cannot renew makes no more ids once its lease lapses: its sends fail
// with UNAVAILABLE (the client retries with the same client_msg_id) until
// a renewal gets through.
package nodelease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// DefaultTTL is how long a lease lasts unless renewed.
const DefaultTTL = 15 * time.Second

// Config says how a Keeper leases.
type Config struct {
	// Node is the node's name (host name), stored with the lease for
	// people and for WaitAlone.
	Node string
	// TTL is the lease's length (DefaultTTL when 0). It is renewed every
	// TTL/3, and retried every second after a failure.
	TTL time.Duration
	// Grace is storage.LeaseRequest.Grace (storage.NodeLeaseGrace when 0).
	Grace time.Duration
	// Exclusive refuses to start (HeldError) when another node holds a
	// live lease on the database: one node per database (no --redis).
	Exclusive bool
	// UniqueName refuses to start (HeldError) when another live node
	// has the same name: nodes of a cluster are addressed by name.
	UniqueName bool
}

// Keeper holds one node number. Safe for concurrent use.
type Keeper struct {
	store storage.NodeLeases
	ids   *idgen.Snowflake
	cfg   Config
	req   storage.LeaseRequest
	log   *slog.Logger

	mu      sync.Mutex
	lease   storage.Lease
	held    bool
	failing bool
	stop    context.CancelFunc
	done    chan struct{}
}

// New returns a Keeper that holds nothing yet; its Snowflake makes no ids
// until Start.
func New(store storage.NodeLeases, cfg Config, log *slog.Logger) *Keeper {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Grace <= 0 {
		cfg.Grace = storage.NodeLeaseGrace
	}
	return &Keeper{
		store: store,
		ids:   idgen.NewLeased(),
		cfg:   cfg,
		// The holder is unique per Keeper: a restarted process is a new
		// holder, so it cannot renew what a killed one held.
		req: storage.LeaseRequest{Holder: cfg.Node + "/" + idgen.Random(""), Node: cfg.Node, TTL: cfg.TTL, Grace: cfg.Grace},
		log: log,
	}
}

// IDs is the node's message-id generator, valid while the lease is.
func (k *Keeper) IDs() *idgen.Snowflake { return k.ids }

// Lease returns the lease held, and false when none is.
func (k *Keeper) Lease() (storage.Lease, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease, k.held
}

// Start acquires a number and renews it in the background until Stop.
// With Config.Exclusive, a live lease of another node fails it with a
// *HeldError (and nothing stays leased).
func (k *Keeper) Start(ctx context.Context) error {
	if err := k.acquire(ctx); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	k.mu.Lock()
	k.stop, k.done = cancel, done
	k.mu.Unlock()
	go func() {
		defer close(done)
		k.run(bg)
	}()
	return nil
}

// acquire leases a number and opens the Snowflake on it.
func (k *Keeper) acquire(ctx context.Context) error {
	start := time.Now()
	l, err := k.store.AcquireNodeLease(ctx, k.req)
	if err != nil {
		return fmt.Errorf("lease a node number: %w", err)
	}
	if k.cfg.Exclusive || k.cfg.UniqueName {
		sameName := ""
		if !k.cfg.Exclusive {
			sameName = k.cfg.Node
		}
		other, found, err := otherLive(ctx, k.store, k.req.Holder, sameName)
		if err == nil && found {
			err = &HeldError{Lease: other, SameName: !k.cfg.Exclusive}
		}
		if err != nil {
			k.release(ctx, l)
			return err
		}
	}
	if err := k.ids.SetLease(l.Number, start.Add(k.cfg.TTL)); err != nil {
		k.release(ctx, l)
		return err
	}
	k.mu.Lock()
	k.lease, k.held, k.failing = l, true, false
	k.mu.Unlock()
	k.log.Info("leased node number", "node", k.cfg.Node, "node_number", l.Number, "ttl", k.cfg.TTL)
	return nil
}

func (k *Keeper) release(ctx context.Context, l storage.Lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := k.store.ReleaseNodeLease(ctx, l); err != nil {
		k.log.Warn("could not release the node number lease; it lapses by itself", "node_number", l.Number, "err", err)
	}
}

func (k *Keeper) run(ctx context.Context) {
	interval := k.cfg.TTL / 3
	retry := min(interval, time.Second)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if k.renew(ctx) {
			t.Reset(interval)
		} else {
			t.Reset(retry)
		}
	}
}

// renew renews the lease once and tells whether the node holds a number.
func (k *Keeper) renew(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.TTL/3)
	defer cancel()
	k.mu.Lock()
	lease := k.lease
	k.mu.Unlock()
	// The deadline counts from before the request, by this process's
	// monotonic clock: the database set expires_at to its now()+TTL later
	// than that, so the node stops before the database lets the number go.
	start := time.Now()
	l, err := k.store.RenewNodeLease(ctx, lease, k.cfg.TTL)
	switch {
	case err == nil:
		k.ids.SetValidUntil(start.Add(k.cfg.TTL))
		k.mu.Lock()
		k.lease = l
		failing := k.failing
		k.failing = false
		k.mu.Unlock()
		if failing {
			k.log.Info("node number lease renewed again", "node_number", l.Number)
		}
		return true
	case errors.Is(err, storage.ErrNotFound):
		// Another node took the number: this one could not renew until
		// past expiry plus the grace, and its ids stopped at its deadline.
		k.ids.SetValidUntil(time.Time{})
		k.log.Error("node number lease lost to another node; leasing a new number", "node_number", lease.Number)
		if err := k.acquire(ctx); err != nil {
			k.log.Error("could not lease a new node number; sends fail until one is leased", "err", err)
			return false
		}
		return true
	default:
		until, _ := k.ids.ValidUntil()
		left := time.Until(until)
		k.mu.Lock()
		k.failing = true
		k.mu.Unlock()
		if left > 0 {
			k.log.Warn("could not renew the node number lease; sends fail if it lapses", "node_number", lease.Number, "lapses_in", left.Round(time.Millisecond), "err", err)
		} else {
			k.log.Error("node number lease lapsed: sends fail until a renewal gets through", "node_number", lease.Number, "err", err)
		}
		return false
	}
}

// Stop stops the renewals, stops the Snowflake and releases the number.
// Call it once nothing needs ids any more.
func (k *Keeper) Stop() {
	k.mu.Lock()
	stop, done := k.stop, k.done
	k.stop = nil
	lease, held := k.lease, k.held
	k.held = false
	k.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
	k.ids.SetValidUntil(time.Time{})
	if held {
		k.release(context.Background(), lease)
		k.log.Info("released node number", "node_number", lease.Number)
	}
}

// HeldError: another node holds a live lease on the database.
type HeldError struct {
	Lease    storage.Lease
	SameName bool // a live node has this node's name (cluster mode)
}

func (e *HeldError) Error() string {
	if e.SameName {
		return fmt.Sprintf("another starlingd named %s (number %d) is live on this database until %s; give every node of a cluster its own --node-id, or wait %d s",
			e.Lease.Node, e.Lease.Number, e.Lease.ExpiresAt.Format(time.RFC3339), int(math.Ceil(e.Lease.Remaining.Seconds())))
	}
	return fmt.Sprintf("another starlingd (node %s, number %d) holds this database until %s; without --redis Starling runs one node per database; stop it, wait %d s, or run both as a cluster (--redis)",
		e.Lease.Node, e.Lease.Number, e.Lease.ExpiresAt.Format(time.RFC3339), int(math.Ceil(e.Lease.Remaining.Seconds())))
}

// otherLive returns a live lease whose holder is not holder, and, if
// node is not empty, whose node is node.
func otherLive(ctx context.Context, store storage.NodeLeases, holder, node string) (storage.Lease, bool, error) {
	leases, err := store.ListNodeLeases(ctx)
	if err != nil {
		return storage.Lease{}, false, fmt.Errorf("list node leases: %w", err)
	}
	for _, l := range leases {
		if l.Live() && l.Holder != holder && (node == "" || l.Node == node) {
			return l, true, nil
		}
	}
	return storage.Lease{}, false, nil
}

// WaitAlone returns nil when no node holds a live lease on the database,
// and a *HeldError when one does. A live lease taken under this node's own
// name (node) is most likely this node's previous run, killed before it
// could release it: WaitAlone waits for it to lapse (up to its TTL,
// logging why) and looks again; if it was renewed meanwhile, a live
// process holds it, and that is a HeldError too.
func WaitAlone(ctx context.Context, store storage.NodeLeases, node string, log *slog.Logger) error {
	return wait(ctx, store, node, false, log)
}

// WaitNameFree is WaitAlone for a node of a cluster: only leases held
// under this node's name count (other nodes are welcome).
func WaitNameFree(ctx context.Context, store storage.NodeLeases, node string, log *slog.Logger) error {
	return wait(ctx, store, node, true, log)
}

func wait(ctx context.Context, store storage.NodeLeases, node string, sameNameOnly bool, log *slog.Logger) error {
	only := ""
	if sameNameOnly {
		only = node
	}
	waited := map[string]bool{}
	for {
		l, found, err := otherLive(ctx, store, "", only)
		if err != nil || !found {
			return err
		}
		if l.Node != node || waited[l.Holder] {
			return &HeldError{Lease: l, SameName: sameNameOnly}
		}
		waited[l.Holder] = true
		log.Warn("an earlier run of this node holds a lease on the database (killed?); waiting for it to lapse",
			"node", node, "node_number", l.Number, "wait", l.Remaining.Round(time.Millisecond))
		t := time.NewTimer(l.Remaining + 100*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
