package storage

import (
	"context"
	"math"
	"time"
)

// ReadCursor is one user's place in one conversation: every message up to
// ReadSeq is read, every message up to DeliveredSeq reached one of the
// user's devices. Both only move forward.
type ReadCursor struct {
	UserID         string
	ConversationID string
	ReadSeq        int64
	DeliveredSeq   int64
}

// DeviceSeen records when a device's last stream ended.
type DeviceSeen struct {
	UserID   string
	DeviceID string
	At       time.Time
}

// MutedForever is the MutedUntil of a conversation muted until unmuted.
var MutedForever = time.UnixMilli(math.MaxInt64)

// UnreadScan bounds how many of the newest messages after a read cursor
// the inbox looks at to leave out the user's own: older unread messages
// are counted without looking at their sender, so a conversation far
// behind costs one bounded range read.
const UnreadScan = 1000

// InboxQuery asks for one page of a user's inbox.
type InboxQuery struct {
	UserID   string
	DeviceID string // for ConversationState.DeliveredSeq
	// Limit is the page size; 0 lists everything.
	Limit int
	// After, when its ConversationID is set, is the last entry of the
	// previous page: the page starts after it in inbox order.
	After InboxPosition
}

// InboxPosition is a place in inbox order: UpdatedAt descending, then
// ConversationID ascending.
type InboxPosition struct {
	UpdatedAt      time.Time // millisecond precision, as stored
	ConversationID string
}

// InboxEntry is one conversation of a user's inbox.
type InboxEntry struct {
	ConversationState
	// ReadSeq is the user's read cursor, 0 if none.
	ReadSeq int64
	// Unread counts the messages after max(ReadSeq, the current period's
	// joined seq) up to LatestSeq sent by others (see UnreadScan).
	Unread int64
	// MutedUntil is zero when not muted, MutedForever, or a time (which
	// may have passed: the caller compares it with its clock).
	MutedUntil time.Time
	// Last is the message with seq LatestSeq, nil when LatestSeq is 0.
	Last *Message
	// For groups: the group's name and current member count.
	GroupName   string
	MemberCount int
	// For one-to-one conversations: the other user's cursor; 0 while a
	// block stands between the two (either of them made it), so a block
	// hides read state as it hides receipts.
	PeerReadSeq      int64
	PeerDeliveredSeq int64
	// ChangedAt is the newest of UpdatedAt, the user's read state change
	// (read cursor, mute) and, one-to-one, the other user's cursor change
	// (not across a block).
	ChangedAt time.Time
}

// Position is the entry's place in inbox order.
func (e InboxEntry) Position() InboxPosition {
	return InboxPosition{UpdatedAt: e.UpdatedAt, ConversationID: e.ConversationID}
}

// ReadState stores read cursors, mutes and when devices were last seen:
// what the inbox and receipts are made of.
type ReadState interface {
	// AdvanceReadCursors moves each (user, conversation) read and
	// delivered position to max(current, given), in one transaction, and
	// stamps at as the row's change time when either moved. Keys must be
	// unique within a call. Callers batch (the server writes every few
	// hundred milliseconds) and check membership and bounds before.
	AdvanceReadCursors(ctx context.Context, cursors []ReadCursor, at time.Time) error
	// SetMute sets the user's mute of a conversation: until (MutedForever
	// for ever), or the zero time to unmute.
	SetMute(ctx context.Context, userID, conversationID string, until, at time.Time) error
	// Inbox returns one page of the user's one-to-one and group
	// conversations (current or former member), newest activity first.
	Inbox(ctx context.Context, q InboxQuery) ([]InboxEntry, error)
	// UnreadTotal is the sum of Unread over the user's whole inbox, read
	// without the rest of each entry (an offline push's badge).
	UnreadTotal(ctx context.Context, userID string) (int64, error)
	// ReadCursorOf returns the user's cursor in a conversation (zero
	// positions if none).
	ReadCursorOf(ctx context.Context, userID, conversationID string) (ReadCursor, error)
	// MutedUntil returns the user's mute of a conversation: zero when not
	// muted, MutedForever, or a time (which may have passed).
	MutedUntil(ctx context.Context, userID, conversationID string) (time.Time, error)
	// ReadBy counts the users other than exclude whose read cursor in the
	// conversation is at or past seq and who may read seq (a membership
	// period contains it), and returns up to limit of them.
	ReadBy(ctx context.Context, conversationID string, seq int64, exclude string, limit int) (count int, users []string, err error)
	// LastSeen returns when the device's last stream ended (zero: never).
	LastSeen(ctx context.Context, userID, deviceID string) (time.Time, error)
	// MarkSeen records when devices' streams ended, in one transaction; a
	// device's time only moves forward.
	MarkSeen(ctx context.Context, seen []DeviceSeen) error
}
