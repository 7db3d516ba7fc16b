package chat

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// Inbox and receipt bounds.
const (
	MaxInboxPage        = 1000 // conversations per ListConversations page
	DefaultReadersLimit = 20   // user ids in a GetReadReceipts answer
	MaxReadersLimit     = 100
)

// CheckRead checks a MarkRead: conv is one the user may read and seq is
// from 1 up to the newest seq the user may read there. Errors:
// BadReadSeq, BadConversationID, NotMember, UserNotFound, Unavailable.
func (s *Service) CheckRead(ctx context.Context, user, conv string, seq int64) error {
	if seq < 1 {
		return fmt.Errorf("%w: %d", apierr.BadReadSeq, seq)
	}
	periods, err := s.readable(ctx, conv, user)
	if err != nil {
		return err
	}
	latest, err := s.store.LatestSeq(ctx, conv)
	if err != nil {
		return apierr.FromStorage("chat: latest seq", err)
	}
	if top := visibleTop(periods, latest); seq > top {
		return fmt.Errorf("%w: %d past %d", apierr.BadReadSeq, seq, top)
	}
	return nil
}

// CheckMember checks that user may read conv (for typing and receipts
// reads). Errors: BadConversationID, NotMember, UserNotFound, Unavailable.
func (s *Service) CheckMember(ctx context.Context, user, conv string) error {
	_, err := s.readable(ctx, conv, user)
	return err
}

// Peers returns the users a typing notice of user in conv goes to: the
// other user of a one-to-one conversation, the group's other active
// members. The caller checked the membership.
func (s *Service) Peers(ctx context.Context, user, conv string) ([]string, error) {
	pc, err := storage.ParseConversationID(conv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", apierr.BadConversationID, err)
	}
	if pc.Kind == storage.KindC2C {
		if pc.Users[0] == user {
			return []string{pc.Users[1]}, nil
		}
		return []string{pc.Users[0]}, nil
	}
	ms, err := s.members.load(ctx, pc.GroupID)
	if err != nil {
		return nil, err
	}
	if !ms.has(user) {
		return nil, apierr.NotMember
	}
	out := make([]string, 0, len(ms.members))
	for _, m := range ms.members {
		if m != user {
			out = append(out, m)
		}
	}
	return out, nil
}

// Inbox returns one page of the user's inbox as the device sees it, and
// the token of the next page ("" when this was the last). pageSize 0
// lists everything. A page also stops at MaxResponseBytes encoded (the
// rest follows on the next page).
func (s *Service) Inbox(ctx context.Context, user, device string, pageSize int32, token string) ([]*starlingv1.ConversationState, string, error) {
	if pageSize < 0 || pageSize > MaxInboxPage {
		return nil, "", fmt.Errorf("%w: %d, want 0-%d", apierr.BadPageSize, pageSize, MaxInboxPage)
	}
	after, err := decodePageToken(token)
	if err != nil {
		return nil, "", err
	}
	q := storage.InboxQuery{UserID: user, DeviceID: device, After: after}
	if pageSize > 0 {
		q.Limit = int(pageSize) + 1 // one more says whether a page follows
	}
	list, err := s.InboxEntries(ctx, q)
	if err != nil {
		return nil, "", err
	}
	more := pageSize > 0 && len(list) > int(pageSize)
	if more {
		list = list[:pageSize]
	}
	out, fit, err := s.ConversationProtos(list, time.Now())
	if err != nil {
		return nil, "", err
	}
	if fit < len(list) {
		out, more = out[:fit], true
	}
	next := ""
	if more && len(out) > 0 {
		next = encodePageToken(list[len(out)-1].Position())
	}
	return out, next, nil
}

// LastSeen returns when the device's previous stream ended (zero: never).
func (s *Service) LastSeen(ctx context.Context, user, device string) (time.Time, error) {
	at, err := s.store.LastSeen(ctx, user, device)
	if err != nil {
		return time.Time{}, apierr.FromStorage("chat: last seen", err)
	}
	return at, nil
}

// InboxEntries reads inbox entries as they are stored.
func (s *Service) InboxEntries(ctx context.Context, q storage.InboxQuery) ([]storage.InboxEntry, error) {
	list, err := s.store.Inbox(ctx, q)
	if err != nil {
		return nil, apierr.FromStorage("chat: inbox", err)
	}
	return list, nil
}

// ConversationProtos converts entries, in order, until their encoding
// passes MaxResponseBytes, and says how many fit (at least one).
func (s *Service) ConversationProtos(list []storage.InboxEntry, now time.Time) ([]*starlingv1.ConversationState, int, error) {
	out := make([]*starlingv1.ConversationState, 0, len(list))
	size := 0
	for _, e := range list {
		cs, err := ConversationProto(e, now)
		if err != nil {
			return nil, 0, err
		}
		size += proto.Size(cs) + 4
		if size > s.cfg.MaxResponseBytes && len(out) > 0 {
			break
		}
		out = append(out, cs)
	}
	return out, len(out), nil
}

// The page token is the last entry's place in inbox order. It is not
// secret: a made-up one only moves where the caller's own list starts.
func encodePageToken(p storage.InboxPosition) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.UpdatedAt.UnixMilli(), 10) + "|" + p.ConversationID))
}

func decodePageToken(token string) (storage.InboxPosition, error) {
	if token == "" {
		return storage.InboxPosition{}, nil
	}
	bad := func(why string) (storage.InboxPosition, error) {
		return storage.InboxPosition{}, fmt.Errorf("%w: %s", apierr.BadPageToken, why)
	}
	if len(token) > 4*maxIDBytes {
		return bad(fmt.Sprintf("%d bytes", len(token)))
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return bad("not base64")
	}
	ms, conv, ok := strings.Cut(string(raw), "|")
	if !ok {
		return bad("no separator")
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return bad("bad time")
	}
	if _, err := storage.ParseConversationID(conv); err != nil {
		return bad("bad conversation id")
	}
	return storage.InboxPosition{UpdatedAt: time.UnixMilli(n), ConversationID: conv}, nil
}

// SetMute mutes conv for user until until (storage.MutedForever, or the
// zero time to unmute). Errors: BadConversationID, NotMember, Unavailable.
func (s *Service) SetMute(ctx context.Context, user, conv string, until time.Time) error {
	if err := s.CheckMember(ctx, user, conv); err != nil {
		return err
	}
	if err := s.store.SetMute(ctx, user, conv, until, time.Now()); err != nil {
		return apierr.FromStorage("chat: set mute", err)
	}
	return nil
}

// ReadReceipts says how many users other than the message's sender read
// the message with seq in conv, and up to limit of them. Errors:
// BadConversationID, NotMember, BadReadSeq (no such message), BadLimit,
// Unavailable.
func (s *Service) ReadReceipts(ctx context.Context, user, conv string, seq int64, limit int32) (int, []string, error) {
	if limit < 0 || limit > MaxReadersLimit {
		return 0, nil, fmt.Errorf("%w: %d, want 0-%d", apierr.BadLimit, limit, MaxReadersLimit)
	}
	if limit == 0 {
		limit = DefaultReadersLimit
	}
	periods, err := s.readable(ctx, conv, user)
	if err != nil {
		return 0, nil, err
	}
	ok := false
	for _, p := range periods {
		ok = ok || p.Contains(seq)
	}
	if !ok || seq < 1 {
		return 0, nil, fmt.Errorf("%w: %d outside the caller's periods", apierr.BadReadSeq, seq)
	}
	msgs, err := s.store.ListMessages(ctx, conv, seq-1, seq, 1)
	if err != nil {
		return 0, nil, apierr.FromStorage("chat: read receipts", err)
	}
	if len(msgs) == 0 {
		return 0, nil, fmt.Errorf("%w: no message %d", apierr.BadReadSeq, seq)
	}
	n, users, err := s.store.ReadBy(ctx, conv, seq, msgs[0].SenderID, int(limit))
	if err != nil {
		return 0, nil, apierr.FromStorage("chat: read receipts", err)
	}
	return n, users, nil
}

// ConversationProto is an inbox entry as the API shows it; now decides
// whether a timed mute still holds.
func ConversationProto(e storage.InboxEntry, now time.Time) (*starlingv1.ConversationState, error) {
	cs := &starlingv1.ConversationState{
		ConversationId:   e.ConversationID,
		LatestSeq:        e.LatestSeq,
		DeliveredSeq:     e.DeliveredSeq,
		JoinedSeq:        e.JoinedSeq,
		UnreadCount:      e.Unread,
		ReadSeq:          e.ReadSeq,
		GroupName:        e.GroupName,
		MemberCount:      int32(e.MemberCount),
		PeerReadSeq:      e.PeerReadSeq,
		PeerDeliveredSeq: e.PeerDeliveredSeq,
		UpdatedAt:        timestamppb.New(e.UpdatedAt),
	}
	switch {
	case e.MutedUntil.Equal(storage.MutedForever):
		cs.Muted = true
	case !e.MutedUntil.IsZero() && e.MutedUntil.After(now):
		cs.Muted, cs.MutedUntil = true, timestamppb.New(e.MutedUntil)
	}
	if e.Last != nil {
		m, err := toProto(*e.Last)
		if err != nil {
			return nil, err
		}
		cs.LastMessage = m
	}
	return cs, nil
}
