package auth

import (
	"context"
	"time"
)

// Login sessions are rows in the database, one per Login. Without
// collection they would pile up forever; the node collects them in the
// background (RunSessionCollector, started by server.Serve).
//
// Only sessions that no token can use any more are deleted: expired ones
// (the token's own expiry refuses it first) and revoked ones. A token whose
// session is gone is refused by Authenticate as invalid, so deleting a
// revoked session before its token expires keeps the token refused; only
// the message changes, from "token was revoked" to "invalid token".

// sessionGCMargin: a session is collected only once it expired this long
// ago, so a node whose clock is a little behind still finds the session of
// a token it accepts as unexpired.
const sessionGCMargin = time.Minute

// batchPause separates the batches of one collection, so that a large
// backlog does not hold the database's write lock (SQLite has one writer)
// for long stretches.
const batchPause = 10 * time.Millisecond

// CollectSessions deletes expired and revoked sessions, at most batch per
// transaction, until none are left, and returns how many it deleted.
func (a *Accounts) CollectSessions(ctx context.Context, batch int) (int, error) {
	total := 0
	for {
		n, err := a.store.DeleteSessions(ctx, a.now().Add(-sessionGCMargin), batch)
		total += n
		if n > 0 {
			// The database does not say which sessions went: forget
			// every cached one, so none outlives its deletion here.
			a.sessions.collected()
		}
		if err != nil || n < batch {
			return total, err
		}
		t := time.NewTimer(batchPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return total, ctx.Err()
		case <-t.C:
		}
	}
}

// RunSessionCollector runs CollectSessions every interval until ctx ends.
// interval or batch 0: it returns at once (no collection).
func (a *Accounts) RunSessionCollector(ctx context.Context, interval time.Duration, batch int) {
	if interval <= 0 || batch <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.CollectSessions(ctx, batch)
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.log.Warn("session collection failed", "deleted", n, "err", err)
		case n > 0:
			a.log.log.Info("sessions collected", "deleted", n)
		}
	}
}
