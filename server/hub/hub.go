package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/wire"
	"github.com/starling-im/starling/storage"
)

// Config bounds what one device may hold on this node.
type Config struct {
	// Window is how many pushes may await an ack per device before its
	// conversations switch to pull mode (Notify + Sync).
	Window int
	// QueueSize bounds a session's outbound queue; a device whose queue
	// fills is disconnected as slow. It must leave room above Window for
	// answers and Notifies.
	QueueSize int
	// MaxDevices is how many devices of one user may be online on this node.
	MaxDevices int
	// IdleTimeout closes a session that sent no frame for this long (0: never).
	IdleTimeout time.Duration
	// CursorFlushInterval is how often acknowledged cursors are written.
	CursorFlushInterval time.Duration
	// MaxPushBytes bounds the encoded messages packed into one Push frame
	// (a single larger message still goes, alone).
	MaxPushBytes int
	// MaxQueueBytes bounds a session's outbound queue in encoded bytes, as
	// QueueSize does in frames; past either the device is cut as slow.
	MaxQueueBytes int
	// OffersMayBeLost says that a message committed after a session
	// started may never be offered to it, or be offered late or out of
	// order: in a cluster, where the bus is best effort and other nodes
	// learn of a new stream only after a while. A conversation the session
	// knows nothing about is then not pushed from its first offer (the
	// device may lack the messages before it) but announced with a Notify,
	// unless the offer is its seq 1. On one node every message committed
	// after the catch-up read is offered, in seq order, so the first offer
	// follows what the device holds and is pushed.
	OffersMayBeLost bool
}

// CursorStore persists delivery cursors.
type CursorStore interface {
	AdvanceCursors(ctx context.Context, cursors []storage.DeviceCursor) error
}

const shardCount = 64

// Hub holds this node's sessions.
type Hub struct {
	cfg     Config
	cursors CursorStore
	log     *slog.Logger
	seed    maphash.Seed
	shards  [shardCount]shard
	nextID  atomic.Uint64
	metrics counters
	closed  atomic.Bool // CloseAll ran: no new sessions

	pendingMu sync.Mutex
	pending   map[cursorKey]int64 // acked cursors not yet written
}

type counters struct {
	slowDisconnects atomic.Int64
	notifies        atomic.Int64
	opened          atomic.Int64
	pushed          atomic.Int64 // messages handed to writers in Push frames
	pushFrames      atomic.Int64
}

type shard struct {
	mu    sync.RWMutex
	users map[string]*userSessions
}

// userSessions is one user's devices on this node.
type userSessions struct {
	devices map[string]*Session
}

type cursorKey struct{ user, device, conv string }

// New returns a Hub. Run must be running for cursors to be written and idle
// sessions to be closed.
func New(cfg Config, cursors CursorStore, log *slog.Logger) *Hub {
	if cfg.MaxPushBytes <= 0 {
		cfg.MaxPushBytes = 1 << 20
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = 8 << 20
	}
	h := &Hub{cfg: cfg, cursors: cursors, log: log, seed: maphash.MakeSeed(), pending: make(map[cursorKey]int64)}
	for i := range h.shards {
		h.shards[i].users = make(map[string]*userSessions)
	}
	return h
}

func (h *Hub) shard(user string) *shard {
	return &h.shards[maphash.String(h.seed, user)%shardCount]
}

// Register adds a session for a device. The session starts in the starting
// phase (offers are held until FinishStart). A session already open for the
// same device is closed as replaced. Errors: apierr.TooManyDevices when the
// user already has MaxDevices other devices online; apierr.ShuttingDown
// once CloseAll has run.
func (h *Hub) Register(userID, deviceID string) (*Session, error) {
	s := &Session{
		UserID:   userID,
		DeviceID: deviceID,
		id:       h.nextID.Add(1),
		hub:      h,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		starting: true,
		convs:    make(map[string]*convState),
	}
	s.Touch()
	h.metrics.opened.Add(1)
	sh := h.shard(userID)
	sh.mu.Lock()
	if h.closed.Load() {
		// Checked under the shard lock, which CloseAll takes after setting
		// closed: a session either is refused here or is closed there.
		sh.mu.Unlock()
		return nil, apierr.ShuttingDown
	}
	u := sh.users[userID]
	if u == nil {
		u = &userSessions{devices: make(map[string]*Session)}
		sh.users[userID] = u
	}
	old := u.devices[deviceID]
	if old == nil && len(u.devices) >= h.cfg.MaxDevices {
		sh.mu.Unlock()
		return nil, fmt.Errorf("%w: %d online", apierr.TooManyDevices, len(u.devices))
	}
	u.devices[deviceID] = s
	sh.mu.Unlock()
	if old != nil {
		old.Close(kickReason(starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED))
	}
	return s, nil
}

// Unregister removes s (if it is still the device's current session) and
// closes it.
func (h *Hub) Unregister(s *Session) {
	s.Close(nil)
	sh := h.shard(s.UserID)
	sh.mu.Lock()
	if u := sh.users[s.UserID]; u != nil && u.devices[s.DeviceID] == s {
		delete(u.devices, s.DeviceID)
		if len(u.devices) == 0 {
			delete(sh.users, s.UserID)
		}
	}
	sh.mu.Unlock()
}

// Kick closes the session of k's device on this node: any session of it,
// or, when k.Session is set, only that one (a stream replaced elsewhere).
func (h *Hub) Kick(k bus.Kick) {
	sh := h.shard(k.UserID)
	sh.mu.RLock()
	var s *Session
	if u := sh.users[k.UserID]; u != nil {
		s = u.devices[k.DeviceID]
	}
	sh.mu.RUnlock()
	if s == nil || (k.Session != 0 && s.id != k.Session) {
		return
	}
	s.Close(kickReason(k.Reason))
}

func kickReason(r starlingv1.DisconnectReason) *starlingv1.Disconnect {
	switch r {
	case starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED:
		return &starlingv1.Disconnect{Reason: r, Message: "a newer stream of this device replaced this one"}
	case starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT:
		return &starlingv1.Disconnect{Reason: r, Message: "logged out"}
	}
	return &starlingv1.Disconnect{Reason: r, Message: "closed by the server", Reconnect: true}
}

// Online reports how many devices of the user are online on this node.
func (h *Hub) Online(userID string) int {
	sh := h.shard(userID)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if u := sh.users[userID]; u != nil {
		return len(u.devices)
	}
	return 0
}

// Deliver offers a committed message to every online device of d.Users on
// this node, except the sending stream d.Except (which learns from its
// SendAck). Messages of one conversation must be delivered in seq order.
func (h *Hub) Deliver(d bus.Delivery) {
	var targets []*Session
	for _, uid := range d.Users {
		shard := h.shard(uid)
		shard.mu.RLock()
		if u := shard.users[uid]; u != nil {
			for _, s := range u.devices {
				if !s.is(d.Except) {
					targets = append(targets, s)
				}
			}
		}
		shard.mu.RUnlock()
	}
	if len(targets) == 0 {
		return
	}
	// The message is encoded once, by the first writer that sends it, for
	// every recipient's Push frame (and, given by the bus, for every node).
	sh := d.Shared
	if sh == nil {
		sh = &wire.Shared{Msg: d.Msg}
	}
	// Offer outside the shard locks: a session lock is never taken under one.
	for _, s := range targets {
		s.offer(d.Msg, sh)
	}
}

// Announce switches a.Conv to pull mode, with a Notify{a.Latest}, on every
// online device of a.Users and on every session here that has seen the
// conversation: the fallback when a message was stored but who may read it
// could not be read. A device that may not read it is refused by its Sync.
func (h *Hub) Announce(a bus.Announce) {
	conv, latest := a.Conv, a.Latest
	targets := make(map[*Session]struct{})
	for _, uid := range a.Users {
		sh := h.shard(uid)
		sh.mu.RLock()
		if u := sh.users[uid]; u != nil {
			for _, s := range u.devices {
				targets[s] = struct{}{}
			}
		}
		sh.mu.RUnlock()
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, u := range sh.users {
			for _, s := range u.devices {
				if s.knows(conv) {
					targets[s] = struct{}{}
				}
			}
		}
		sh.mu.RUnlock()
	}
	for s := range targets {
		s.announce(conv, latest)
	}
}

// Ack records a PushAck from s and queues its cursor for writing. It
// returns the device's cursor when the ack moved it (clamped to what this
// stream gave the device), else 0.
func (h *Hub) Ack(s *Session, conversationID string, seq int64) int64 {
	cur := s.Ack(conversationID, seq)
	if cur > 0 {
		k := cursorKey{s.UserID, s.DeviceID, conversationID}
		h.pendingMu.Lock()
		if cur > h.pending[k] {
			h.pending[k] = cur
		}
		h.pendingMu.Unlock()
	}
	return cur
}

// Signal sends s.Frame to every online device of s.Users on this node,
// except s.Except. A session still starting holds it until after its
// Welcome.
func (h *Hub) Signal(sig bus.Signal) {
	var targets []*Session
	for _, uid := range sig.Users {
		sh := h.shard(uid)
		sh.mu.RLock()
		if u := sh.users[uid]; u != nil {
			for _, s := range u.devices {
				if !s.is(sig.Except) {
					targets = append(targets, s)
				}
			}
		}
		sh.mu.RUnlock()
	}
	for _, s := range targets {
		s.signal(sig.Frame)
	}
}

// Run writes cursors and closes idle sessions until ctx ends, then writes
// the cursors still pending.
func (h *Hub) Run(ctx context.Context) error {
	flush := time.NewTicker(h.cfg.CursorFlushInterval)
	defer flush.Stop()
	var sweep <-chan time.Time
	if h.cfg.IdleTimeout > 0 {
		t := time.NewTicker(h.cfg.IdleTimeout / 3)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-ctx.Done():
			// The request context is gone; give the last write its own short deadline.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := h.FlushCursors(fctx); err != nil {
				h.log.Error("final cursor flush failed", "err", err)
			}
			return nil
		case <-flush.C:
			if err := h.FlushCursors(ctx); err != nil && !errors.Is(err, context.Canceled) {
				h.log.Warn("cursor flush failed; will retry", "err", err)
			}
		case <-sweep:
			h.closeIdle(time.Now().Add(-h.cfg.IdleTimeout))
		}
	}
}

// cursorChunk bounds the cursors written in one transaction: on SQLite a
// write transaction holds the single writer, and message commits wait
// behind it.
const cursorChunk = 256

// FlushCursors writes the pending cursors, cursorChunk per transaction. On
// failure the unwritten ones are put back, so nothing acknowledged is
// forgotten while the process lives.
func (h *Hub) FlushCursors(ctx context.Context) error {
	h.pendingMu.Lock()
	if len(h.pending) == 0 {
		h.pendingMu.Unlock()
		return nil
	}
	batch := h.pending
	h.pending = make(map[cursorKey]int64)
	h.pendingMu.Unlock()

	cursors := make([]storage.DeviceCursor, 0, len(batch))
	for k, seq := range batch {
		cursors = append(cursors, storage.DeviceCursor{UserID: k.user, DeviceID: k.device, ConversationID: k.conv, DeliveredSeq: seq})
	}
	for len(cursors) > 0 {
		n := min(len(cursors), cursorChunk)
		if err := h.cursors.AdvanceCursors(ctx, cursors[:n]); err != nil {
			h.repend(cursors)
			return fmt.Errorf("hub: write %d cursors: %w", n, err)
		}
		cursors = cursors[n:]
	}
	return nil
}

// repend puts unwritten cursors back, unless newer acks came meanwhile.
func (h *Hub) repend(cursors []storage.DeviceCursor) {
	h.pendingMu.Lock()
	defer h.pendingMu.Unlock()
	for _, c := range cursors {
		k := cursorKey{c.UserID, c.DeviceID, c.ConversationID}
		if c.DeliveredSeq > h.pending[k] {
			h.pending[k] = c.DeliveredSeq
		}
	}
}

func (h *Hub) closeIdle(cutoff time.Time) {
	c := cutoff.UnixNano()
	for _, s := range h.sessions() {
		if s.lastSeen.Load() >= c {
			continue
		}
		s.Close(&starlingv1.Disconnect{
			Reason:    starlingv1.DisconnectReason_DISCONNECT_REASON_IDLE,
			Message:   "no frame for too long; send Ping at the heartbeat interval",
			Reconnect: true,
		})
	}
}

// OffersMayBeLost reports Config.OffersMayBeLost: whether sessions should
// be seeded (Session.Seed) with where their devices stand.
func (h *Hub) OffersMayBeLost() bool { return h.cfg.OffersMayBeLost }

// Reader reads what a device is behind on (the catch-up read).
type Reader func(ctx context.Context, userID, deviceID string) ([]CatchUp, error)

// Resync re-reads what every session of this node is behind on and puts
// the conversations it missed in pull mode, with a Notify: after the bus
// lost deliveries, or as the periodic safety net of a cluster. At most
// parallel reads run at once; it returns when all are done or ctx ends.
func (h *Hub) Resync(ctx context.Context, read Reader, parallel int) (checked, failed int) {
	sessions := h.sessions()
	sem := make(chan struct{}, max(parallel, 1))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs int
	)
	for _, s := range sessions {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return checked, failed + len(sessions) - checked
		}
		checked++
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			behind, err := read(ctx, s.UserID, s.DeviceID)
			if err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
				return
			}
			s.Recheck(behind)
		}()
	}
	wg.Wait()
	return checked, errs
}

// sessions returns every session of the node.
func (h *Hub) sessions() []*Session {
	var out []*Session
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, u := range sh.users {
			for _, s := range u.devices {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// CloseAll closes every session with reason and refuses new ones, for
// shutdown. Each session's writer still writes what was queued before (the
// SendAcks of a drained pipeline), then the Disconnect.
func (h *Hub) CloseAll(reason *starlingv1.Disconnect) {
	h.closed.Store(true)
	// Listed under each shard's lock, taken after closed was set: a
	// session registered before is listed, one after is refused.
	for _, s := range h.sessions() {
		s.Close(reason)
	}
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Sessions        int
	QueuedBytes     int64 // encoded bytes waiting in every session's queue
	Opened          int64 // sessions registered since start
	SlowDisconnects int64
	Notifies        int64
	Pushed          int64 // messages pushed
	PushFrames      int64 // Push frames they went in
}

// Stats counts sessions and queued bytes and reads the counters. It visits
// every session: for a scrape, not a hot path.
func (h *Hub) Stats() Stats {
	st := Stats{
		SlowDisconnects: h.metrics.slowDisconnects.Load(),
		Notifies:        h.metrics.notifies.Load(),
		Opened:          h.metrics.opened.Load(),
		Pushed:          h.metrics.pushed.Load(),
		PushFrames:      h.metrics.pushFrames.Load(),
	}
	for _, s := range h.sessions() {
		st.Sessions++
		s.qmu.Lock()
		st.QueuedBytes += int64(s.queueBytes)
		s.qmu.Unlock()
	}
	return st
}
