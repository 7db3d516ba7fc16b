package hub

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/server/wire"
)

// item is one entry of a session's outbound queue: either a ready frame or a
// message to push. Pushes are kept apart so the writer can pack consecutive
// ones into a single Push frame.
type item struct {
	frame  *starlingv1.StreamResponse
	msg    *starlingv1.Message
	shared *wire.Shared // msg, encoded once for every recipient
	end    bool         // the writer stops here (End)
	cost   int          // encoded bytes, counted against Config.MaxQueueBytes
}

// convState is what the hub knows about one conversation on one device.
type convState struct {
	pushed int64 // highest seq sent to the device by push
	base   int64 // highest seq the device got otherwise (sync, own send): not in the window
	acked  int64 // highest seq the device acknowledged
	pull   bool  // pull mode: the device was sent a Notify, pushes are suspended
	latest int64 // highest seq offered while in pull mode
}

// inflight is how many pushes of this conversation await an ack.
func (c *convState) inflight() int64 {
	return max(0, c.pushed-max(c.acked, c.base))
}

// top is the highest seq the device is known to have been given.
func (c *convState) top() int64 { return max(c.pushed, c.base) }

// Session is one device's stream on this node.
type Session struct {
	UserID   string
	DeviceID string
	id       uint64 // tells apart two sessions of the same device (replaced)

	hub      *Hub
	done     chan struct{}
	closing  sync.Once
	reason   atomic.Pointer[starlingv1.Disconnect]
	lastSeen atomic.Int64 // unix nanoseconds of the last frame received

	// The outbound queue: a slice rather than a buffered channel, so an
	// idle session holds no buffer (a 1,024-slot channel would cost every
	// connection 24 KiB whether it is used or not).
	qmu        sync.Mutex
	queue      []item
	queueBytes int           // sum of the queued items' cost
	wake       chan struct{} // cap 1: the queue got items (for Next)
	// The writer, once Attach has run: a goroutine exists only while
	// there is something to write (see write), so an idle stream holds
	// no writer goroutine and no stack for it.
	sink     Sink
	writing  bool          // a writer goroutine is running
	finished bool          // the writer has finished: nothing more is written
	written  chan struct{} // closed when the writer has finished
	onClose  func()        // called once when the session closes

	mu       sync.Mutex
	starting bool                  // catch-up not yet computed: offers are held
	held     []*starlingv1.Message // offers held while starting, at most QueueSize
	// heldOver is, per conversation, what came while starting after held
	// was full: those conversations start in pull mode.
	heldOver map[string]overflow
	convs    map[string]*convState
	unacked  int64 // sum of inflight over convs
	// signals are the bus.Signal frames that came while starting, sent
	// after the Welcome (at most maxHeldSignals; the catch-up read covers
	// receipts beyond them).
	signals []*starlingv1.StreamResponse
}

// maxHeldSignals bounds the signals a starting session holds.
const maxHeldSignals = 256

// overflow is the first and last seq of a conversation offered while held
// was full.
type overflow struct{ first, latest int64 }

// Key identifies this stream of the device (see bus.DeviceKey).
func (s *Session) Key() bus.DeviceKey {
	return bus.DeviceKey{UserID: s.UserID, DeviceID: s.DeviceID, Session: s.id}
}

// is reports whether s is the stream k names.
func (s *Session) is(k bus.DeviceKey) bool {
	return s.id == k.Session && s.UserID == k.UserID && s.DeviceID == k.DeviceID
}

// Done is closed when the session must end; Reason says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Reason is the Disconnect frame to send before closing, or nil when the
// stream ended from the client side.
func (s *Session) Reason() *starlingv1.Disconnect { return s.reason.Load() }

// Touch records that a frame arrived, for the idle sweeper.
func (s *Session) Touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// Close ends the session with reason (nil: the client went away). The first
// call wins; later ones do nothing.
func (s *Session) Close(reason *starlingv1.Disconnect) {
	s.closing.Do(func() {
		if reason != nil {
			s.reason.Store(reason)
		}
		close(s.done)
		s.qmu.Lock()
		f := s.onClose
		s.onClose = nil
		start := s.claimWriter()
		s.qmu.Unlock()
		if f != nil {
			f()
		}
		if start {
			// What is queued, then the Disconnect.
			go s.write()
		}
	})
}

// OnClose has f called once when the session closes (at once if it is
// closed already), on the goroutine that closes it: f must not block. The
// gateway arms there the bound on a writer stuck on a device that does
// not read.
func (s *Session) OnClose(f func()) {
	s.qmu.Lock()
	s.onClose = f
	s.qmu.Unlock()
	select {
	case <-s.done:
		s.qmu.Lock()
		f, s.onClose = s.onClose, nil
		s.qmu.Unlock()
		if f != nil {
			f()
		}
	default:
	}
}

// Send queues a frame (an answer, a Welcome, an Error). It never blocks: if
// the queue is full the session is closed as slow.
func (s *Session) Send(f *starlingv1.StreamResponse) {
	s.enqueue(item{frame: f})
}

// signal queues a frame the session was not asked for (bus.Signal); while
// the session is starting it is held until after the Welcome.
func (s *Session) signal(f *starlingv1.StreamResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		if len(s.signals) < maxHeldSignals {
			s.signals = append(s.signals, f)
		}
		return
	}
	s.enqueue(item{frame: f})
}

// Known returns the highest seq of the conversation this stream knows to
// exist for its user (pushed, offered, synced, sent, or where the device
// stood at connect), 0 if none: a MarkRead or Typing up to it needs no
// database read to be checked.
func (s *Session) Known(conversationID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[conversationID]
	if c == nil {
		return 0
	}
	return max(c.top(), c.latest, c.acked)
}

// End asks the writer to stop once it has written everything queued
// before this call.
func (s *Session) End() { s.enqueue(item{end: true}) }

func (s *Session) enqueue(it item) {
	select {
	case <-s.done:
		return
	default:
	}
	switch {
	case it.frame != nil:
		it.cost = proto.Size(it.frame) // walks the fields; copies nothing
	case it.shared != nil:
		it.cost = pushCost(it.shared) // the encoding the writer needs anyway
	}
	s.qmu.Lock()
	// Bounded in frames and in bytes: a device that does not read holds at
	// most MaxQueueBytes of the node's memory (one item larger than that
	// still goes through an empty queue: frames are bounded on their own).
	full := len(s.queue) >= s.hub.cfg.QueueSize ||
		(len(s.queue) > 0 && s.queueBytes+it.cost > s.hub.cfg.MaxQueueBytes)
	if !full {
		s.queue = append(s.queue, it)
		s.queueBytes += it.cost
	}
	start := !full && s.claimWriter()
	s.qmu.Unlock()
	if start {
		go s.write()
		return
	}
	if full {
		s.hub.metrics.slowDisconnects.Add(1)
		s.Close(&starlingv1.Disconnect{
			Reason:    starlingv1.DisconnectReason_DISCONNECT_REASON_SLOW,
			Message:   "outbound queue full: the device is not reading; reconnect and sync",
			Reconnect: true,
		})
		return
	}
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending; the writer takes everything queued
	}
}

func (s *Session) conv(id string) *convState {
	c := s.convs[id]
	if c == nil {
		c = &convState{}
		s.convs[id] = c
	}
	return c
}

// setInflight applies a change to c and keeps the session's unacked total
// in step with it.
func (s *Session) update(c *convState, change func()) {
	before := c.inflight()
	change()
	s.unacked += c.inflight() - before
}

// offer decides what the device gets for a newly committed message. sh is
// the message's shared encoding.
func (s *Session) offer(m *starlingv1.Message, sh *wire.Shared) {
	if m.Seq == 0 && eventwire.IsEphemeral(m) {
		s.offerEphemeral(m)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		s.hold(m.ConversationId, m.Seq, m)
		return
	}
	s.offerLocked(m, sh)
}

// hold keeps an offer (m, or with m nil an announcement of latest) for
// FinishStart. Past QueueSize held messages, a conversation is only
// remembered by its seqs, and starts in pull mode: memory stays bounded
// however long the catch-up read takes.
func (s *Session) hold(conv string, seq int64, m *starlingv1.Message) {
	if o, over := s.heldOver[conv]; over {
		o.latest = max(o.latest, seq)
		s.heldOver[conv] = o
		return
	}
	if m == nil || len(s.held) >= s.hub.cfg.QueueSize {
		if s.heldOver == nil {
			s.heldOver = make(map[string]overflow)
		}
		s.heldOver[conv] = overflow{first: seq, latest: seq}
		return
	}
	s.held = append(s.held, m)
}

// knows reports whether the device has been offered or has pulled conv on
// this session.
func (s *Session) knows(conv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.convs[conv]
	return ok
}

// announce puts conv in pull mode with a Notify{latest}, unless the device
// was already given latest.
func (s *Session) announce(conv string, latest int64) {
	if latest <= 0 {
		return // an owed ephemeral event (seq 0): nothing to pull
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		s.hold(conv, latest, nil)
		return
	}
	c := s.conv(conv)
	switch {
	case c.pull:
		c.latest = max(c.latest, latest)
	case latest > c.top():
		c.pull = true
		c.latest = latest
		s.hub.metrics.notifies.Add(1)
		s.enqueue(item{frame: notifyFrame(conv, latest, c.acked)})
	}
}

func (s *Session) offerLocked(m *starlingv1.Message, sh *wire.Shared) {
	if sh == nil {
		sh = &wire.Shared{Msg: m}
	}
	c, known := s.convs[m.ConversationId]
	if !known {
		c = s.conv(m.ConversationId)
		c.acked = m.Seq - 1 // where a device without local state starts
		if s.hub.cfg.OffersMayBeLost && m.Seq > 1 {
			// An earlier message may have been committed after the
			// catch-up read and its offer lost, or still be on its way:
			// what the device holds is unknown, so it pulls from what
			// it has (pushing would jump a gap it cannot see).
			c.pull = true
			c.latest = m.Seq
			s.hub.metrics.notifies.Add(1)
			s.enqueue(item{frame: notifyFrame(m.ConversationId, m.Seq, c.acked)})
			return
		}
		// Not behind at connect (or it would be in pull mode), and every
		// message committed since was offered here in order (or this is
		// the conversation's first): the device has everything before
		// this message.
		c.base = m.Seq - 1
	}
	switch {
	case c.pull:
		c.latest = max(c.latest, m.Seq)
	case m.Seq <= c.top():
		// Already sent (a late duplicate delivery from the bus): drop.
	case s.unacked >= int64(s.hub.cfg.Window) || m.Seq > c.top()+1:
		// The window is full, or there is a gap: an earlier message has
		// not reached this node (a late or lost delivery from another
		// node) or the user may not read it (between two membership
		// periods). A push never jumps a gap: the device pulls instead,
		// and Sync serves exactly what it may read.
		c.pull = true
		c.latest = m.Seq
		s.hub.metrics.notifies.Add(1)
		s.enqueue(item{frame: notifyFrame(m.ConversationId, m.Seq, c.acked)})
	default:
		s.update(c, func() { c.pushed = m.Seq })
		if it, ok := pushItem(m, sh); ok {
			s.enqueue(it)
		}
	}
}

// CatchUp is one conversation the device is behind on at connect.
type CatchUp struct {
	ConversationID string
	LatestSeq      int64
	DeliveredSeq   int64 // where the device's Sync should start
}

// Seed records, before FinishStart, the conversations the device was up to
// date on at the catch-up read and their latest seq: an offer that does
// not follow on from it is then a gap the device pulls across, and one
// that does is pushed. Where offers may be lost (Config.OffersMayBeLost)
// this is what lets the first message of a conversation after a connect
// be pushed; without it the session cannot tell where the device stands.
func (s *Session) Seed(current []CatchUp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cu := range current {
		if _, known := s.convs[cu.ConversationID]; known {
			continue
		}
		c := s.conv(cu.ConversationID)
		c.base, c.acked = cu.LatestSeq, cu.LatestSeq
	}
}

// FinishStart ends the starting phase: it queues welcome (if not nil),
// puts every conversation in behind in pull mode with a Notify, then
// replays the messages offered meanwhile (pushed, or folded into a pending
// Notify). The caller computes behind AFTER registering the session, so a
// message is either in behind, or among the held offers, or both — never
// in neither (invariant 2). Since nothing is queued before welcome, a
// device that sees Welcome knows the catch-up Notifies follow it at once
// and that whatever is committed later is pushed.
func (s *Session) FinishStart(welcome *starlingv1.StreamResponse, behind []CatchUp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if welcome != nil {
		s.enqueue(item{frame: welcome})
	}
	var pulled []string // conversations to Notify, in order
	for _, b := range behind {
		c := s.conv(b.ConversationID)
		c.pull = true
		c.latest = max(c.latest, b.LatestSeq)
		c.acked = max(c.acked, b.DeliveredSeq)
		c.base = max(c.base, b.DeliveredSeq)
		pulled = append(pulled, b.ConversationID)
	}
	held, over := s.held, s.heldOver
	s.starting, s.held, s.heldOver = false, nil, nil
	for conv, o := range over {
		// Not behind at the catch-up read, so the device had everything
		// before the first message offered since.
		for _, m := range held {
			if m.ConversationId == conv {
				o.first = min(o.first, m.Seq)
			}
		}
		c, known := s.convs[conv]
		if !known {
			c = s.conv(conv)
			c.base, c.acked = o.first-1, o.first-1
		}
		if !c.pull {
			c.pull = true
			pulled = append(pulled, conv)
		}
		c.latest = max(c.latest, o.latest)
	}
	for _, m := range held {
		if c := s.convs[m.ConversationId]; c != nil && c.pull {
			c.latest = max(c.latest, m.Seq)
		}
	}
	for _, conv := range pulled {
		c := s.convs[conv]
		s.enqueue(item{frame: notifyFrame(conv, c.latest, c.acked)})
	}
	for _, m := range held {
		s.offerLocked(m, nil)
	}
	for _, f := range s.signals {
		s.enqueue(item{frame: f})
	}
	s.signals = nil
}

// Recheck puts every conversation of behind that the device was not
// given up to its LatestSeq in pull mode, with a Notify: a second look at
// the database after the catch-up, for messages whose delivery to this
// node was lost. A conversation pushed or pulled up to LatestSeq since is
// left alone. Before FinishStart it does nothing (the catch-up read comes
// later and sees more).
func (s *Session) Recheck(behind []CatchUp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		return
	}
	for _, b := range behind {
		c, known := s.convs[b.ConversationID]
		if !known {
			c = s.conv(b.ConversationID)
			c.base, c.acked = b.DeliveredSeq, b.DeliveredSeq
		}
		switch {
		case c.pull:
			c.latest = max(c.latest, b.LatestSeq)
		case b.LatestSeq > c.top():
			c.pull = true
			c.latest = b.LatestSeq
			s.hub.metrics.notifies.Add(1)
			s.enqueue(item{frame: notifyFrame(b.ConversationID, b.LatestSeq, c.acked)})
		}
	}
}

// Ack records a PushAck and returns the cursor to persist (0 when nothing
// moved). Acks past what this session gave the device are clamped: a client
// cannot move its cursor over messages it never received.
func (s *Session) Ack(conversationID string, seq int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[conversationID]
	if c == nil {
		return 0
	}
	seq = min(seq, c.top())
	if seq <= c.acked {
		return 0
	}
	s.update(c, func() { c.acked = seq })
	return seq
}

// SyncDone records that the device was answered a Sync of conversationID:
// it now holds everything up to reached (the batch's last seq, or, for an
// empty batch, the after_seq it asked from, capped at the latest seq). When
// the batch was the last one the conversation leaves pull mode — unless more
// arrived while the device was syncing, in which case it is told again.
// A device that already had everything when it was sent a Notify resumes
// pushes with one Sync that comes back empty.
//
// answer (the SyncBatch) is queued under the same lock, so no push of the
// conversation can slip in between the answer and the end of pull mode: a
// message offered after the device got its answer is pushed, one offered
// before it is in the answer or announced by a new Notify.
func (s *Session) SyncDone(conversationID string, reached int64, hasMore bool, answer *starlingv1.StreamResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if answer != nil {
		s.enqueue(item{frame: answer})
	}
	c := s.convs[conversationID]
	if c == nil {
		c = s.conv(conversationID)
	}
	if reached > 0 {
		s.update(c, func() { c.base = max(c.base, reached) })
	}
	if !c.pull || hasMore {
		return
	}
	if c.latest > c.top() {
		// Messages came while the device was syncing and its Sync did not
		// reach them: keep it pulling.
		s.enqueue(item{frame: notifyFrame(conversationID, c.latest, c.acked)})
		return
	}
	c.pull = false
}

// SentOwn records that the device itself sent seq and queues ack, its
// SendAck (nil: none), so the next push of the conversation follows on
// without a gap.
// Only a contiguous seq moves the state: if earlier messages are still on
// their way, they must not be mistaken for duplicates.
func (s *Session) SentOwn(conversationID string, seq int64, ack *starlingv1.StreamResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The SendAck is queued under the lock that records the send: a push
	// of the next seq cannot reach the device before it.
	if ack != nil {
		defer s.enqueue(item{frame: ack})
	}
	c, known := s.convs[conversationID]
	if !known {
		if s.hub.cfg.OffersMayBeLost && seq > 1 {
			// Whether the device holds the messages before its own is
			// unknown (see Config.OffersMayBeLost): the next offer of
			// the conversation is announced rather than pushed.
			return
		}
		c = s.conv(conversationID)
		c.base, c.acked = seq, seq-1
		return
	}
	if !c.pull && seq == c.top()+1 {
		s.update(c, func() { c.base = seq })
	}
}

func notifyFrame(conv string, latest, delivered int64) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Notify{Notify: &starlingv1.Notify{
		ConversationId: conv, LatestSeq: latest, DeliveredSeq: delivered,
	}}}
}
