package client

import (
	"maps"
	"slices"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// convState is what the loop knows about one conversation.
//
// The invariant behind exactly-once, in-order delivery (docs/design.md,
// delivery invariant 3): every message with seq <= last has been handed to
// the app, in order, and nothing after last has. A message is handed over
// only when its seq is last+1, or when a SyncBatch vouches that nothing
// visible lies between last and it.
type convState struct {
	id        string
	known     bool                          // last is meaningful (from the store, the server, or a first push)
	last      int64                         // highest seq handed to the outbox
	delivered int64                         // highest seq the app has received
	saved     int64                         // highest seq written to the StateStore
	acked     int64                         // highest seq PushAcked on the current stream
	reack     bool                          // send a PushAck even if delivered == acked
	target    int64                         // highest seq known to exist
	held      map[int64]*starlingv1.Message // arrived early (after a gap), waiting for last to catch up
	syncing   bool                          // a Sync for it is in flight
	again     bool                          // a Notify came while it was: Sync once more after it
	// The next Sync starts at syncFrom instead of last when set (see
	// onNotify); pulledAt is the latest_seq such a Sync was made for.
	syncFrom    int64
	hasSyncFrom bool
	pulledAt    int64
	syncFails   int // Syncs refused Unavailable in a row, for the retry's backoff
}

// start places a conversation the session knew nothing about.
func (cs *convState) start(last int64) {
	cs.known = true
	cs.last, cs.delivered, cs.saved, cs.acked = last, last, last, last
}

// conv returns the state of a conversation, loading it from the store the
// first time.
func (s *Session) conv(id string) *convState {
	if cs, ok := s.loop.convs[id]; ok {
		return cs
	}
	cs := &convState{id: id, held: make(map[int64]*starlingv1.Message)}
	s.loop.convs[id] = cs
	last, ok, err := s.cfg.store.Load(s.ctx, id)
	switch {
	case err != nil:
		// Treated as unknown: the server's cursor for this device then
		// says where to start, which at worst repeats messages.
		s.log.Error("loading state", "conversation", id, "err", err)
	case ok:
		cs.start(last)
	}
	return cs
}

// accept takes one message from a Push, a SendAck or a SyncBatch
// (fromSync) and delivers, drops or holds it.
func (s *Session) accept(m *starlingv1.Message, fromSync bool) {
	cs := s.conv(m.GetConversationId())
	if !cs.known {
		if s.loop.initConn != 0 {
			// Right after (re)connect a push can overtake the Notify or
			// list entry that says where this conversation starts; wait
			// for the list rather than guess and skip a backlog.
			cs.held[m.GetSeq()] = m
			return
		}
		// A conversation that appeared while connected (a new chat, a
		// group just joined): its first message is where it starts.
		cs.start(m.GetSeq() - 1)
	}
	seq := m.GetSeq()
	switch {
	case seq <= cs.last:
		// Duplicate (a resent push, or one also in a sync): drop it but
		// ack again, so the server's window moves.
		cs.reack = true
		s.loop.dirty[cs.id] = struct{}{}
	case seq == cs.last+1 || fromSync:
		// A SyncBatch holds every visible message after the Sync's
		// after_seq <= last, so a jump inside one is not a gap: the seqs
		// skipped are ones this user may not see (before joining a group).
		s.deliver(cs, m)
		s.drain(cs)
	default:
		cs.held[seq] = m
		cs.target = max(cs.target, seq)
		s.log.Debug("gap", "conversation", cs.id, "last", cs.last, "seq", seq)
		s.startSync(cs)
		// A lost push rarely comes alone: check every conversation.
		s.startList()
	}
}

func (s *Session) deliver(cs *convState, m *starlingv1.Message) {
	cs.last = m.GetSeq()
	delete(cs.held, m.GetSeq())
	s.out.push(m)
}

// drain delivers held messages that have become next in line and drops
// those that are no longer needed.
func (s *Session) drain(cs *convState) {
	for seq := range cs.held {
		if seq <= cs.last {
			delete(cs.held, seq)
		}
	}
	for {
		m, ok := cs.held[cs.last+1]
		if !ok {
			return
		}
		s.deliver(cs, m)
	}
}

// settle brings a known conversation up to date after news about it: held
// messages go out if they can, and a Sync starts if anything is missing.
func (s *Session) settle(cs *convState) {
	s.drain(cs)
	if len(cs.held) > 0 {
		cs.target = max(cs.target, slices.Max(slices.Collect(maps.Keys(cs.held))))
	}
	if cs.last < cs.target {
		s.startSync(cs)
	}
}

// startSync asks for the messages after last, one batch at a time.
func (s *Session) startSync(cs *convState) {
	if cs.syncing || !cs.known || s.loop.cur == nil {
		return // reconnect brings Notifies and a list that restart it
	}
	if s.out.len() >= s.loop.outboxHW {
		// The app is not keeping up: pull more only once it has read,
		// so memory stays bounded (collectDelivered resumes it).
		s.loop.parked[cs.id] = struct{}{}
		return
	}
	after := cs.last
	if cs.hasSyncFrom {
		after = min(after, cs.syncFrom)
		cs.hasSyncFrom = false
	}
	ref := s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{
		ConversationId: cs.id,
		AfterSeq:       after,
		Limit:          s.cfg.syncLimit,
	}}})
	cs.syncing = true
	s.loop.syncRefs[ref] = cs.id
}

func (s *Session) onSyncBatch(ref uint64, b *starlingv1.SyncBatch) {
	id, ok := s.loop.syncRefs[ref]
	if !ok {
		return // not ours on this stream
	}
	delete(s.loop.syncRefs, ref)
	cs := s.loop.convs[id]
	cs.syncing, cs.syncFails = false, 0
	cs.target = max(cs.target, b.GetLatestSeq())
	for _, m := range b.GetMessages() {
		if m.GetConversationId() == id {
			s.accept(m, true)
		}
	}
	for _, ev := range b.GetEvents() { // the user's event stream
		if ev.GetConversationId() == id && ev.GetSeq() > 0 {
			s.accept(eventMessage(ev), true)
		}
	}
	s.drain(cs)
	// An empty batch makes no progress; stop rather than spin, and let the
	// next Notify or list try again, unless a Notify came while this Sync
	// was in flight: the batch may predate it, so one more Sync follows.
	again := cs.again
	cs.again = false
	if again || len(b.GetMessages())+len(b.GetEvents()) > 0 && (b.GetHasMore() || cs.last < cs.target) {
		s.startSync(cs)
	}
}

func (s *Session) onNotify(n *starlingv1.Notify) {
	cs := s.conv(n.GetConversationId())
	if !cs.known {
		// Nothing local: start where this device's server cursor is.
		cs.start(n.GetDeliveredSeq())
	}
	s.serverCursor(cs, n.GetDeliveredSeq())
	cs.target = max(cs.target, n.GetLatestSeq())
	if latest := n.GetLatestSeq(); cs.last >= latest && n.GetDeliveredSeq() < latest && !cs.syncing && cs.pulledAt != latest {
		// We already have everything (the acks of an earlier session were
		// lost), but the server stops pushing a conversation after a Notify
		// until this stream has synced to its end. One Sync after our last
		// seq comes back empty and resumes pushes; the re-sent PushAck then
		// moves the server's cursor. Once per latest_seq, so it cannot loop.
		cs.syncFrom, cs.hasSyncFrom, cs.pulledAt = cs.last, true, latest
		s.startSync(cs)
	} else if cs.syncing {
		cs.again = true
	}
	s.settle(cs)
}

// serverCursor notes the server's delivered cursor for this device: if it
// is behind what the app has received (an ack lost with a stream, or state
// restored from the store), ack again.
func (s *Session) serverCursor(cs *convState, delivered int64) {
	if delivered < cs.delivered {
		cs.acked = min(cs.acked, delivered)
		s.loop.dirty[cs.id] = struct{}{}
	}
}

func (s *Session) onList(ev listEvent) {
	s.loop.listing = false
	if ev.err != nil {
		s.log.Warn("resync: listing conversations", "err", ev.err)
	}
	for _, st := range ev.convs {
		cs := s.conv(st.GetConversationId())
		if !cs.known {
			cs.start(st.GetDeliveredSeq())
		}
		s.serverCursor(cs, st.GetDeliveredSeq())
		cs.target = max(cs.target, st.GetLatestSeq())
		s.settle(cs)
	}
	if s.loop.initConn != 0 && s.loop.cur != nil && ev.connID == s.loop.initConn {
		// The first list after connecting is back. Conversations still
		// unknown are newer than it: each starts at its first message.
		s.loop.initConn = 0
		for _, cs := range s.loop.convs {
			if !cs.known && len(cs.held) > 0 {
				cs.start(slices.Min(slices.Collect(maps.Keys(cs.held))) - 1)
				s.settle(cs)
			}
		}
	} else if s.loop.initConn != 0 {
		s.loop.again = true // this list predates the stream; ask again
	}
	if s.loop.again {
		s.loop.again = false
		s.startList()
	}
}

// collectDelivered takes what the app has received from the outbox and
// resumes syncs that waited for it.
func (s *Session) collectDelivered() {
	for id, seq := range s.out.takeDelivered() {
		if cs := s.loop.convs[id]; cs != nil && seq > cs.delivered {
			cs.delivered = seq
			s.loop.dirty[id] = struct{}{}
		}
	}
	if len(s.loop.parked) > 0 && s.out.len() < s.loop.outboxHW/2 {
		for id := range s.loop.parked {
			delete(s.loop.parked, id)
			if cs := s.loop.convs[id]; cs.last < cs.target || len(cs.held) > 0 {
				s.settle(cs)
			}
		}
	}
}

// flushAcks saves and acknowledges what the app has received. PushAck is
// cumulative, so one per conversation covers everything up to delivered.
func (s *Session) flushAcks() {
	for id := range s.loop.dirty {
		cs := s.loop.convs[id]
		if cs.delivered > cs.saved {
			// Saved before acking: if the process dies in between, the
			// server resends and the store drops the duplicate — never the
			// other way round, which would lose the message.
			if err := s.cfg.store.Save(s.ctx, id, cs.delivered); err != nil {
				s.log.Error("saving state", "conversation", id, "err", err)
				continue // keep it dirty, try again later
			}
			cs.saved = cs.delivered
		}
		if s.loop.cur == nil {
			continue // acked after reconnect
		}
		if cs.delivered > 0 && (cs.delivered > cs.acked || cs.reack) {
			s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{
				ConversationId: id,
				Seq:            cs.delivered,
			}}})
			cs.acked = cs.delivered
		}
		cs.reack = false
		delete(s.loop.dirty, id)
	}
}
