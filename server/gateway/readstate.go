package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/storage"
)

// ReadTracker keeps read and delivered positions and writes them behind
// (readstate.Tracker).
type ReadTracker interface {
	Read(user, conv string, seq int64, origin bus.DeviceKey)
	Delivered(user, conv string, seq int64)
	Seen(user, device string, at time.Time)
	Flush(ctx context.Context) error
}

// Signaler hands a frame to the online devices of users on any node
// (bus.Router).
type Signaler interface {
	Signal(ctx context.Context, users []string, except bus.DeviceKey, f *starlingv1.StreamResponse)
}

// Typing limits per device: one relayed a second, bursts of 3.
const (
	typingRate  rate.Limit = 1
	typingBurst            = 3
)

// Welcome's inbox summary.
const (
	// maxChanged bounds InboxSummary.changed.
	maxChanged = 100
	// changedSlack widens "changed since the device's previous stream
	// ended" backwards: a move is stamped when its flush starts and may
	// commit a little later, and nodes' clocks differ. What changed in
	// the slack before the previous stream ended may be reported again
	// (the same positions: applied with max, harmless).
	changedSlack = 5 * time.Second
)

// handleMarkRead moves the user's read cursor. A seq this stream knows to
// exist in the conversation needs no database read; others are checked.
func (s *ChatServer) handleMarkRead(ctx context.Context, sess *hub.Session, id auth.Identity, ref uint64, m *starlingv1.MarkRead) {
	conv, seq := m.GetConversationId(), m.GetSeq()
	if seq < 1 {
		s.refuse(sess, ref, fmt.Errorf("%w: %d", apierr.BadReadSeq, seq))
		return
	}
	if known := sess.Known(conv); seq > known {
		if err := s.Chat.CheckRead(ctx, id.UserID, conv, seq); err != nil {
			s.refuse(sess, ref, err)
			return
		}
	}
	s.Reads.Read(id.UserID, conv, seq, sess.Key())
}

// handleTyping relays a Typing frame to the conversation's other members'
// online devices; lim is the stream's limiter, made at its first Typing.
func (s *ChatServer) handleTyping(ctx context.Context, sess *hub.Session, id auth.Identity, ref uint64, m *starlingv1.Typing, lim **rate.Limiter) {
	if *lim == nil {
		*lim = rate.NewLimiter(typingRate, typingBurst)
	}
	if !(*lim).Allow() {
		s.refuse(sess, ref, apierr.TypingTooFast)
		return
	}
	conv := m.GetConversationId()
	if sess.Known(conv) == 0 {
		if err := s.Chat.CheckMember(ctx, id.UserID, conv); err != nil {
			s.refuse(sess, ref, err)
			return
		}
	}
	peers, err := s.Chat.Peers(ctx, id.UserID, conv)
	if err != nil {
		s.refuse(sess, ref, err)
		return
	}
	f := &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Typing{Typing: &starlingv1.TypingNotice{
		ConversationId: conv, UserId: id.UserID, DeviceId: id.DeviceID,
	}}}
	s.Signals.Signal(ctx, peers, sess.Key(), f)
}

// welcomeInbox fills the Welcome's inbox summary and returns the Receipt
// frames to send after it: one per one-to-one conversation that changed
// while the device was away, with the other user's positions.
func (s *ChatServer) welcomeInbox(ctx context.Context, id auth.Identity, w *starlingv1.Welcome) ([]*starlingv1.StreamResponse, error) {
	s.readsFirst(ctx, s.Log)
	seen, err := s.Chat.LastSeen(ctx, id.UserID, id.DeviceID)
	if err != nil {
		return nil, err
	}
	entries, err := s.Chat.InboxEntries(ctx, storage.InboxQuery{UserID: id.UserID, DeviceID: id.DeviceID})
	if err != nil {
		return nil, err
	}
	sum := &starlingv1.InboxSummary{SeenBefore: !seen.IsZero()}
	since := seen.Add(-changedSlack)
	var changed []storage.InboxEntry
	for _, e := range entries {
		sum.TotalUnread += e.Unread
		if seen.IsZero() || e.ChangedAt.After(since) {
			changed = append(changed, e)
		}
	}
	if len(changed) > maxChanged {
		changed, sum.MoreChanged = changed[:maxChanged], true
	}
	out, fit, err := s.Chat.ConversationProtos(changed, time.Now())
	if err != nil {
		return nil, err
	}
	if fit < len(changed) {
		sum.MoreChanged = true
	}
	sum.Changed = out
	w.Inbox = sum
	var receipts []*starlingv1.StreamResponse
	for _, e := range changed[:fit] {
		if e.PeerReadSeq == 0 && e.PeerDeliveredSeq == 0 {
			continue
		}
		p, err := storage.ParseConversationID(e.ConversationID)
		if err != nil || p.Kind != storage.KindC2C {
			continue
		}
		peer := p.Users[0]
		if peer == id.UserID {
			peer = p.Users[1]
		}
		receipts = append(receipts, &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Receipt{Receipt: &starlingv1.Receipt{
			ConversationId: e.ConversationID, UserId: peer, DeliveredSeq: e.PeerDeliveredSeq, ReadSeq: e.PeerReadSeq,
		}}})
	}
	return receipts, nil
}

// streamEnded records when the device's stream ended: the next Welcome
// reports what changed since.
func (s *ChatServer) streamEnded(id auth.Identity) {
	s.Reads.Seen(id.UserID, id.DeviceID, time.Now())
}

// readsFirst writes this node's pending moves before a read of read
// state, so a client sees what it (or anyone on this node) just marked
// read; moves made on other nodes show within their flush interval.
// Nothing pending costs nothing.
func (s *ChatServer) readsFirst(ctx context.Context, log *slog.Logger) {
	if err := s.Reads.Flush(ctx); err != nil {
		log.Warn("read state: flush before a read failed", "err", err)
	}
}

// ListConversations lists one page of the caller's inbox.
func (s *ChatServer) ListConversations(ctx context.Context, req *starlingv1.ListConversationsRequest) (*starlingv1.ListConversationsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	if req.GetStatesOnly() {
		return s.conversationStates(ctx, id, req)
	}
	s.readsFirst(ctx, s.Log)
	list, next, err := s.Chat.Inbox(ctx, id.UserID, id.DeviceID, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.ListConversationsResponse{Conversations: list, NextPageToken: next}, nil
}

// conversationStates is ListConversations with states_only: the delivery
// fields of every conversation, as before the inbox existed.
func (s *ChatServer) conversationStates(ctx context.Context, id auth.Identity, req *starlingv1.ListConversationsRequest) (*starlingv1.ListConversationsResponse, error) {
	if req.GetPageSize() != 0 || req.GetPageToken() != "" {
		return nil, toError(s.Log, fmt.Errorf("%w: states_only lists everything", apierr.BadPageSize))
	}
	cs, err := s.Chat.Conversations(ctx, id.UserID, id.DeviceID, false)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	out := make([]*starlingv1.ConversationState, len(cs))
	for i, c := range cs {
		out[i] = &starlingv1.ConversationState{ConversationId: c.ConversationID, LatestSeq: c.LatestSeq, DeliveredSeq: c.DeliveredSeq, JoinedSeq: c.JoinedSeq}
	}
	return &starlingv1.ListConversationsResponse{Conversations: out}, nil
}

// MarkRead moves the caller's read cursor.
func (s *ChatServer) MarkRead(ctx context.Context, req *starlingv1.MarkReadRequest) (*starlingv1.MarkReadResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	if err := s.Chat.CheckRead(ctx, id.UserID, req.GetConversationId(), req.GetSeq()); err != nil {
		return nil, toError(s.Log, err)
	}
	s.Reads.Read(id.UserID, req.GetConversationId(), req.GetSeq(), bus.DeviceKey{})
	return &starlingv1.MarkReadResponse{}, nil
}

// SetMute mutes or unmutes a conversation for the caller.
func (s *ChatServer) SetMute(ctx context.Context, req *starlingv1.SetMuteRequest) (*starlingv1.SetMuteResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	var until time.Time
	switch {
	case req.GetForever():
		until = storage.MutedForever
	case req.GetMutedUntil() != nil:
		if err := req.GetMutedUntil().CheckValid(); err != nil {
			return nil, toError(s.Log, fmt.Errorf("%w: %v", apierr.BadMuteTime, err))
		}
		until = req.GetMutedUntil().AsTime()
		if !until.After(time.Unix(0, 0)) || until.After(maxMuteTime) {
			return nil, toError(s.Log, fmt.Errorf("%w: %v", apierr.BadMuteTime, until))
		}
	}
	if err := s.Chat.SetMute(ctx, id.UserID, req.GetConversationId(), until); err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.SetMuteResponse{}, nil
}

// maxMuteTime bounds a timed mute (past it, mute for ever).
var maxMuteTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// GetReadReceipts says who read one message.
func (s *ChatServer) GetReadReceipts(ctx context.Context, req *starlingv1.GetReadReceiptsRequest) (*starlingv1.GetReadReceiptsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	s.readsFirst(ctx, s.Log)
	n, users, err := s.Chat.ReadReceipts(ctx, id.UserID, req.GetConversationId(), req.GetSeq(), req.GetLimit())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.GetReadReceiptsResponse{ReadCount: int32(n), ReadBy: users}, nil
}
