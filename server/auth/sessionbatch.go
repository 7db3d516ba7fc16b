package auth

import (
	"context"
	"sync"
	"time"

	"github.com/starling-im/starling/storage"
)

// sessionBatcher writes the sessions of tokens issued at once in one
// transaction (group commit): the first caller to find no write running
// writes what is pending, again and again until nothing is, while the
// others wait for their answer. No goroutine of its own: the writer is
// always a caller. A durable commit costs ~1 ms (SQLite fsyncs), so one
// commit per token would cap issuance near 1,000 a second.
type sessionBatcher struct {
	store interface {
		CreateSessions(ctx context.Context, sessions []storage.Session) error
		CreateSession(ctx context.Context, s storage.Session) error
	}

	mu       sync.Mutex
	pending  []*sessionWrite
	flushing bool
}

type sessionWrite struct {
	s    storage.Session
	done chan error // buffered: the writer never waits on a caller
}

// maxSessionBatch bounds one transaction.
const maxSessionBatch = 512

// sessionWriteTimeout bounds a batch's transaction: it is not tied to one
// caller's context, since it carries others' sessions too.
const sessionWriteTimeout = 10 * time.Second

// create stores s, in a batch with whatever else is being issued.
func (b *sessionBatcher) create(ctx context.Context, s storage.Session) error {
	w := &sessionWrite{s: s, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if !b.flushing {
		b.flushing = true
		for len(b.pending) > 0 {
			n := min(len(b.pending), maxSessionBatch)
			batch := b.pending[:n:n]
			b.pending = b.pending[n:]
			b.mu.Unlock()
			b.write(ctx, batch)
			b.mu.Lock()
		}
		b.pending = nil
		b.flushing = false
	}
	b.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The session may still be stored; its token is never handed out.
		return ctx.Err()
	}
}

func (b *sessionBatcher) write(ctx context.Context, batch []*sessionWrite) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionWriteTimeout)
	defer cancel()
	if len(batch) == 1 {
		batch[0].done <- b.store.CreateSession(wctx, batch[0].s)
		return
	}
	ss := make([]storage.Session, len(batch))
	for i, w := range batch {
		ss[i] = w.s
	}
	err := b.store.CreateSessions(wctx, ss)
	if err == nil {
		for _, w := range batch {
			w.done <- nil
		}
		return
	}
	// One bad session (its user deleted meanwhile) must not fail the
	// others: each is tried alone.
	for _, w := range batch {
		w.done <- b.store.CreateSession(wctx, w.s)
	}
}
