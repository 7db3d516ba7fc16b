// Package readstate keeps users' read and delivered positions in memory
// and writes them behind, in batches: a MarkRead or a PushAck costs no
// database write of its own. After each write it tells the users
// concerned, one Receipt per (conversation, user) that moved, however
// many messages the move covers: the coalescing of receipts.
//
// What a crash may lose: the moves of the last flush interval (250 ms by
// default) before a kill -9 or a power loss. A read cursor then stands
// where the previous flush left it (the user sees those messages unread
// again, and no Receipt was sent for them: a Receipt is sent only after
// its positions are written, so no device ever saw a position the
// database lost). A graceful stop flushes. Cursors never move back
// otherwise: every write takes the max.
package readstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/storage"
)

// Store is where positions are written.
type Store interface {
	AdvanceReadCursors(ctx context.Context, cursors []storage.ReadCursor, at time.Time) error
	MarkSeen(ctx context.Context, seen []storage.DeviceSeen) error
}

// Signaler hands a frame to the online devices of users on any node
// (bus.Router).
type Signaler interface {
	Signal(ctx context.Context, users []string, except bus.DeviceKey, f *starlingv1.StreamResponse)
}

// DefaultInterval is how often moves are written.
const DefaultInterval = 250 * time.Millisecond

// chunk bounds the cursors of one write: on SQLite a write transaction
// holds the single writer, and message commits wait behind it.
const chunk = 1000

type key struct{ user, conv string }

// pos is a pending move. origin is the stream that moved the read cursor
// when only one did (its own Receipt would tell it what it said); zero
// when none did, several did, or the unary call did.
type pos struct {
	read, delivered int64
	origin          bus.DeviceKey
	mixed           bool // more than one origin: send to every device
}

// Blocks tells whether a block stands between two users (either way).
// A blocked pair sends each other no receipts: the positions are still
// written (they are the mover's own unread state), only not told.
type Blocks interface {
	Blocked(ctx context.Context, a, b string) (bool, error)
}

// Tracker collects moves and writes them behind. Run must be running.
type Tracker struct {
	store    Store
	signal   Signaler
	blocks   Blocks // nil: no blocks exist
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending map[key]pos
	seen    map[[2]string]time.Time
	flushMu sync.Mutex // one flush at a time: writes and receipts in order
}

// New returns a Tracker that writes every interval (DefaultInterval if 0).
func New(store Store, signal Signaler, interval time.Duration, log *slog.Logger) *Tracker {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Tracker{store: store, signal: signal, interval: interval, log: log,
		pending: make(map[key]pos), seen: make(map[[2]string]time.Time)}
}

// SetBlocks makes receipts honour blocks; call it before Run.
func (t *Tracker) SetBlocks(b Blocks) { t.blocks = b }

// Read records that user read conv up to seq (checked by the caller),
// from the stream origin (the zero key: not from a stream). Reading
// implies delivery.
func (t *Tracker) Read(user, conv string, seq int64, origin bus.DeviceKey) {
	t.move(user, conv, pos{read: seq, delivered: seq, origin: origin})
}

// Delivered records that a device of user acknowledged conv up to seq.
// Only one-to-one conversations are tracked: group delivery is not
// reported to anyone (see GetReadReceipts).
func (t *Tracker) Delivered(user, conv string, seq int64) {
	if p, err := storage.ParseConversationID(conv); err != nil || p.Kind != storage.KindC2C {
		return
	}
	t.move(user, conv, pos{delivered: seq})
}

func (t *Tracker) move(user, conv string, p pos) {
	if p.read <= 0 && p.delivered <= 0 {
		return
	}
	k := key{user, conv}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending[k] = merge(t.pending[k], p)
}

// merge is a and b together: the higher positions, and the origin of the
// read moves if they all came from one stream.
func merge(a, b pos) pos {
	m := pos{read: max(a.read, b.read), delivered: max(a.delivered, b.delivered), mixed: a.mixed || b.mixed}
	switch {
	case a.read == 0:
		m.origin = b.origin
	case b.read == 0:
		m.origin = a.origin
	case a.origin != b.origin:
		m.mixed = true
	default:
		m.origin = a.origin
	}
	if m.mixed {
		m.origin = bus.DeviceKey{}
	}
	return m
}

// Seen records that a device's stream ended at at: its next Welcome
// reports what changed since.
func (t *Tracker) Seen(user, device string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := [2]string{user, device}
	if at.After(t.seen[k]) {
		t.seen[k] = at
	}
}

// Run writes every interval until ctx ends, then writes what is left.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := t.Flush(fctx); err != nil {
				t.log.Error("read state: final flush failed; the last moves are lost", "err", err)
			}
			return
		case <-tick.C:
			if err := t.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.log.Warn("read state: flush failed; will retry", "err", err)
			}
		}
	}
}

// Flush writes every pending move, then sends their receipts. On failure
// the unwritten moves are put back (nothing is forgotten while the
// process lives) and no receipt is sent for them.
func (t *Tracker) Flush(ctx context.Context) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	if len(t.pending) == 0 && len(t.seen) == 0 {
		t.mu.Unlock()
		return nil
	}
	batch, seen := t.pending, t.seen
	t.pending, t.seen = make(map[key]pos), make(map[[2]string]time.Time)
	t.mu.Unlock()

	var err error
	if len(seen) > 0 {
		ds := make([]storage.DeviceSeen, 0, len(seen))
		for k, at := range seen {
			ds = append(ds, storage.DeviceSeen{UserID: k[0], DeviceID: k[1], At: at})
		}
		if e := t.store.MarkSeen(ctx, ds); e != nil {
			err = fmt.Errorf("read state: mark %d devices seen: %w", len(ds), e)
			t.repend(nil, nil, seen)
		}
	}
	cursors := make([]storage.ReadCursor, 0, len(batch))
	for k, p := range batch {
		cursors = append(cursors, storage.ReadCursor{UserID: k.user, ConversationID: k.conv, ReadSeq: p.read, DeliveredSeq: p.delivered})
	}
	now := time.Now()
	for len(cursors) > 0 {
		n := min(len(cursors), chunk)
		if e := t.store.AdvanceReadCursors(ctx, cursors[:n], now); e != nil {
			t.repend(cursors, batch, nil)
			return errors.Join(err, fmt.Errorf("read state: write %d cursors: %w", n, e))
		}
		t.receipts(ctx, cursors[:n], batch)
		cursors = cursors[n:]
	}
	return err
}

// receipts tells who must know about written moves: for a one-to-one
// conversation the other user (ticks) and, when the read cursor moved,
// the mover's devices (unread counts) but the stream that moved it; for a
// group, the mover's other devices only.
func (t *Tracker) receipts(ctx context.Context, cursors []storage.ReadCursor, batch map[key]pos) {
	for _, c := range cursors {
		var users []string
		if c.ReadSeq > 0 {
			users = append(users, c.UserID)
		}
		if p, err := storage.ParseConversationID(c.ConversationID); err == nil && p.Kind == storage.KindC2C {
			peer := p.Users[0]
			if peer == c.UserID {
				peer = p.Users[1]
			}
			if !t.blockedPair(ctx, c.UserID, peer) {
				users = append(users, peer)
			}
		}
		if len(users) == 0 {
			continue
		}
		f := &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Receipt{Receipt: &starlingv1.Receipt{
			ConversationId: c.ConversationID, UserId: c.UserID, DeliveredSeq: max(c.DeliveredSeq, c.ReadSeq), ReadSeq: c.ReadSeq,
		}}}
		t.signal.Signal(ctx, users, batch[key{c.UserID, c.ConversationID}].origin, f)
	}
}

// blockedPair is whether a block stands between a and b. When that cannot
// be read, no receipt goes: a receipt is a courtesy, a leak past a block
// is not.
func (t *Tracker) blockedPair(ctx context.Context, a, b string) bool {
	if t.blocks == nil {
		return false
	}
	blocked, err := t.blocks.Blocked(ctx, a, b)
	if err != nil {
		t.log.Warn("read state: receipt withheld: relation unreadable", "user", a, "peer", b, "err", err)
		return true
	}
	return blocked
}

// repend puts unwritten moves back, merged with newer ones.
func (t *Tracker) repend(cursors []storage.ReadCursor, batch map[key]pos, seen map[[2]string]time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cursors {
		k := key{c.UserID, c.ConversationID}
		t.pending[k] = merge(t.pending[k], batch[k])
	}
	for k, at := range seen {
		if at.After(t.seen[k]) {
			t.seen[k] = at
		}
	}
}
