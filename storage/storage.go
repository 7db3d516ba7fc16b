package storage

import (
	"context"
	"errors"
	"math"
	"time"
)

// Sentinel errors. Backends wrap them (fmt.Errorf("…: %w", ErrNotFound)) so
// callers test with errors.Is; the gRPC edge maps them to status codes.
var (
	// ErrNotFound: the user, session, group or membership does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a unique value (username, id) is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrGroupFull: adding members would pass the group's size limit.
	ErrGroupFull = errors.New("group is full")
	// ErrAmbiguousCommit: the connection failed while a transaction was
	// committing, so it may or may not have been stored. The caller cannot
	// tell which: it reports a retryable error (gRPC Unavailable), and the
	// client's resend with the same client_msg_id is absorbed by dedup.
	ErrAmbiguousCommit = errors.New("commit outcome unknown")
	// ErrUnavailable: the database could not be reached or did not answer
	// in time (connection refused or lost before a commit was sent, server
	// shutting down or restarting, failover, a deadline passed). Nothing
	// was written; the same call may succeed if tried again.
	ErrUnavailable = errors.New("database unavailable")
	// ErrNoNodeNumber: every node number (0..MaxNodeNumber) is leased.
	ErrNoNodeNumber = errors.New("no free node number")
)

// HasSentinel tells whether err already wraps one of this package's
// sentinel errors, so a backend that maps driver errors inside a
// transaction and again at a method's end wraps only once.
func HasSentinel(err error) bool {
	for _, target := range []error{ErrNotFound, ErrAlreadyExists, ErrGroupFull, ErrUnavailable, ErrAmbiguousCommit, ErrNoNodeNumber, ErrBlocked, ErrAlreadyFriends} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Store is everything the server keeps in the database.
type Store interface {
	Users
	Sessions
	Groups
	Messages
	Cursors
	ReadState
	NodeLeases
	Friends
	Admin
	// Close releases the database. Calls after Close fail.
	Close() error
}

// User is an account.
type User struct {
	ID           string
	Username     string
	DisplayName  string
	PasswordHash []byte
	CreatedAt    time.Time
}

// Users stores accounts.
type Users interface {
	// CreateUser stores u. ErrAlreadyExists if its ID or Username is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns the user with this id, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByUsername returns the user with this username, or ErrNotFound.
	GetUserByUsername(ctx context.Context, username string) (User, error)
}

// Session is one device's login: the token names it, and revoking it makes
// the token stop working before it expires.
type Session struct {
	ID        string
	UserID    string
	DeviceID  string
	CreatedAt time.Time
	ExpiresAt time.Time
	Revoked   bool
}

// Sessions stores logins.
type Sessions interface {
	// CreateSession stores s. ErrAlreadyExists if its ID is taken.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the session with this id, or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, error)
	// RevokeSession marks the session revoked; revoking twice is not an
	// error. ErrNotFound if there is no such session.
	RevokeSession(ctx context.Context, id string) error
	// DeleteSessions deletes at most limit sessions that expired before
	// expiredBefore (ExpiresAt < expiredBefore) or are revoked, and
	// returns how many it deleted; a caller that wants all of them gone
	// calls again until fewer than limit were deleted. Live sessions are
	// kept. A token whose session is gone is refused (auth treats a
	// missing session as an invalid token), so deleting a revoked session
	// before its token expires does not make the token valid again.
	// limit must be positive.
	DeleteSessions(ctx context.Context, expiredBefore time.Time, limit int) (int, error)
}

// Group is a group chat. Its conversation id is GroupConversationID(ID).
type Group struct {
	ID          string
	Name        string
	OwnerID     string
	CreatedAt   time.Time
	MemberCount int // current members; filled in by GetGroup
	Description string
	AvatarURL   string
	JoinPolicy  JoinPolicy
	AddPolicy   AddPolicy
	// Disbanded: the owner ended the group; it has no active members.
	Disbanded bool
}

// OpenSeq is the LeftSeq of a membership period that has not ended, and
// the upper bound to pass for "no upper bound". It is a seq no message
// reaches, so "left at seq 0" (left before the first message) can never
// be mistaken for "never left".
const OpenSeq int64 = math.MaxInt64

// Period is one span of a user's membership in a conversation: the user may
// read the messages with JoinedSeq < seq <= LeftSeq. LeftSeq is OpenSeq
// while the membership is active.
type Period struct {
	JoinedSeq int64
	LeftSeq   int64
}

// Active reports whether the period has not ended.
func (p Period) Active() bool { return p.LeftSeq == OpenSeq }

// Contains reports whether the message with this seq falls in the period.
func (p Period) Contains(seq int64) bool { return p.JoinedSeq < seq && seq <= p.LeftSeq }

// Membership is a user's place in a conversation: every period in which
// they were a member. For one-to-one conversations both users have one
// period (0, OpenSeq), created with the first message. A group member who
// leaves and is added again has one period per stay; each stays readable.
type Membership struct {
	ConversationID string
	UserID         string
	// Periods in ascending order, not overlapping (a period may start at
	// the seq where the previous one ended). Only the last can be active.
	// Never empty.
	Periods []Period
}

// Active reports whether the user is a member now.
func (m Membership) Active() bool {
	return len(m.Periods) > 0 && m.Periods[len(m.Periods)-1].Active()
}

// Contains reports whether the user may read the message with this seq.
func (m Membership) Contains(seq int64) bool {
	for _, p := range m.Periods {
		if p.Contains(seq) {
			return true
		}
	}
	return false
}

// MemberSet is a group's active members as of one membership epoch.
//
// Every change of a group's membership (create, add, leave) increments the
// group conversation's epoch in the same transaction, and AppendMessages
// reports the epoch each message was stored under. A message stored under
// epoch E goes to exactly the members of the MemberSet with Epoch E: they
// joined before it was stored and had not left. So a MemberSet read once
// serves the fan-out of every later message with the same epoch, on any
// node, and is known stale the moment a message reports a newer one.
type MemberSet struct {
	Epoch   int64
	Members []string // in no particular order
}

// Groups stores groups and their members.
type Groups interface {
	// CreateGroup stores g with the given members (the owner among them),
	// all joining at seq 0, and sets the membership epoch to 1.
	// ErrAlreadyExists if g.ID is taken; ErrNotFound if a member is not a
	// user; ErrGroupFull if len(memberIDs) > maxMembers.
	CreateGroup(ctx context.Context, g Group, memberIDs []string, maxMembers int) error
	// GetGroup returns the group with its MemberCount, or ErrNotFound.
	GetGroup(ctx context.Context, id string) (Group, error)
	// AddMembers makes the users active members, joining at the group's
	// current latest seq, and returns those that were not active before
	// (a user who had left starts a new period; the old one stays
	// readable). Users already active are left alone. When anyone was
	// added, the epoch is incremented in the same transaction.
	// ErrNotFound if the group or a user does not exist; ErrGroupFull if
	// the group would have more than maxMembers; then nothing changes.
	AddMembers(ctx context.Context, groupID string, userIDs []string, maxMembers int) (added []string, err error)
	// LeaveGroup ends the user's current period at the group's current
	// latest seq and increments the epoch, in one transaction. ErrNotFound
	// if the group does not exist or the user is not an active member.
	LeaveGroup(ctx context.Context, groupID, userID string) error
	// ListMembers returns the group's active members with the epoch they
	// belong to, read consistently (one statement or one transaction).
	// ErrNotFound if the group does not exist.
	ListMembers(ctx context.Context, groupID string) (MemberSet, error)
	// MembersAt returns the users who may read the group's message with
	// this seq: those with a period containing it (active or ended), in no
	// particular order. ErrNotFound if the group does not exist.
	MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error)
	// GetMembership returns the user's membership in a conversation (c2c or
	// group, active or not, every period), or ErrNotFound.
	GetMembership(ctx context.Context, conversationID, userID string) (Membership, error)
	// ChangeGroup makes one change to a group and stores its system
	// message, in ONE transaction (see GroupTx). It returns Decide's error
	// as it is (wrapped) when Decide refuses; ErrNotFound if the group does
	// not exist (or, when creating, a member is not a user), or a user to
	// add is not a user; ErrAlreadyExists if the group to create exists;
	// ErrGroupFull past tx.MaxMembers. On error nothing changes.
	ChangeGroup(ctx context.Context, tx GroupTx) (GroupTxResult, error)
	// ListGroupMembers returns the group's active members with their
	// roles, user ids above afterUserID, ascending, at most limit of them.
	// ErrNotFound if the group does not exist.
	ListGroupMembers(ctx context.Context, groupID, afterUserID string, limit int) ([]GroupMember, error)
	// ListUserGroups returns the groups the user is an active member of,
	// group ids above afterGroupID, ascending, at most limit of them, each
	// with its MemberCount and the user's role.
	ListUserGroups(ctx context.Context, userID, afterGroupID string, limit int) ([]UserGroup, error)
}

// NewMessage is a message to store. The caller assigns MsgID and CreatedAt;
// the store assigns Seq.
type NewMessage struct {
	ConversationID string
	MsgID          int64
	SenderID       string
	SenderDeviceID string
	ClientMsgID    string
	Content        []byte // encoded starling.v1.Content; opaque here
	CreatedAt      time.Time
	// Members are the users who must hold a Membership once the message is
	// stored. For one-to-one conversations: both users (a membership is
	// created, at JoinedSeq 0, if missing). Empty for groups, whose
	// memberships the Groups methods manage.
	Members []string
}

// Message is a stored message.
type Message struct {
	ConversationID string
	Seq            int64
	MsgID          int64
	SenderID       string
	SenderDeviceID string
	ClientMsgID    string
	Content        []byte
	CreatedAt      time.Time
}

// AppendResult is the outcome of storing one NewMessage.
type AppendResult struct {
	// The stored message: the new one, or, when Duplicate, the message first
	// stored under the same (SenderID, ClientMsgID).
	Message Message
	// Duplicate is true when nothing new was stored.
	Duplicate bool
	// MemberEpoch is, for a new message of a group conversation, the
	// group's membership epoch when it was stored (see MemberSet); 0
	// otherwise.
	MemberEpoch int64
}

// Messages stores conversations' messages.
type Messages interface {
	// AppendMessages stores msgs in ONE transaction and returns one result
	// per input, in input order. Messages of the same conversation get
	// consecutive seqs in input order. A message whose (SenderID,
	// ClientMsgID) was stored before — earlier, or earlier in this batch —
	// is not stored again: its result is the first copy with Duplicate set.
	// When it returns nil, everything is durable; on error nothing is
	// stored. Empty ClientMsgID is not allowed.
	AppendMessages(ctx context.Context, msgs []NewMessage) ([]AppendResult, error)
	// ListMessages returns messages of the conversation with
	// afterSeq < seq <= uptoSeq, ascending, at most limit of them. Pass
	// OpenSeq for no upper bound; uptoSeq <= afterSeq returns nothing.
	ListMessages(ctx context.Context, conversationID string, afterSeq, uptoSeq int64, limit int) ([]Message, error)
	// ListMessagesBefore returns the newest messages with
	// afterSeq < seq < beforeSeq, at most limit of them, ascending. Pass
	// OpenSeq for no upper bound.
	ListMessagesBefore(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]Message, error)
	// LatestSeq returns the conversation's newest seq, 0 if it has none.
	LatestSeq(ctx context.Context, conversationID string) (int64, error)
}

// DeviceCursor is how far one device has acknowledged one conversation.
type DeviceCursor struct {
	UserID         string
	DeviceID       string
	ConversationID string
	DeliveredSeq   int64
}

// ConversationState is one conversation as one device sees it.
type ConversationState struct {
	ConversationID string
	// LatestSeq is the newest seq the user may see: the conversation's
	// latest while a member, else min(latest, the last period's LeftSeq).
	LatestSeq    int64
	DeliveredSeq int64 // the device's cursor, 0 if none
	// JoinedSeq is the JoinedSeq of the user's first period: nothing at or
	// below it is readable. (Later periods may leave gaps above it; Sync
	// skips them.)
	JoinedSeq int64
	UpdatedAt time.Time // when the newest message was stored
}

// Cursors stores per-device delivery cursors.
type Cursors interface {
	// AdvanceCursors moves each cursor to max(current, DeliveredSeq), in one
	// transaction. Cursors never move back. Callers bound the batch (the
	// hub writes at most a few hundred per call), since the transaction
	// holds SQLite's single writer.
	AdvanceCursors(ctx context.Context, cursors []DeviceCursor) error
	// ListConversations returns every conversation the user is or was a
	// member of, with the device's cursor, newest activity first. With
	// onlyBehind, only those whose LatestSeq > max(DeliveredSeq, JoinedSeq).
	ListConversations(ctx context.Context, userID, deviceID string, onlyBehind bool) ([]ConversationState, error)
}

// MaxNodeNumber is the largest node number a lease hands out: message ids
// have 10 bits of node (server/idgen.MaxNode).
const MaxNodeNumber = 1023

// NodeLeaseGrace is how long a lapsed lease stays unusable before another
// holder may take its number. The old holder stops making ids at the
// deadline its own (monotonic) clock gives it, which falls before the
// database's expires_at; but the ids it made carry ITS wall-clock
// milliseconds, and a new holder whose wall clock lags could make the same
// milliseconds again. The grace covers that skew between nodes' clocks
// (and the offset between CockroachDB nodes): 30 s is far beyond what NTP
// leaves.
const NodeLeaseGrace = 30 * time.Second

// LeaseRequest asks for a node number.
type LeaseRequest struct {
	// Holder names the lease's owner, unique per process start: only it
	// may renew or release the lease.
	Holder string
	// Node is the holder's node id (host name), for people reading
	// ListNodeLeases.
	Node string
	// TTL is how long the lease lasts unless renewed (at least 1 ms).
	TTL time.Duration
	// Grace is how long past its expiry a lapsed lease of another holder
	// stays untouchable: NodeLeaseGrace, shorter only in tests.
	Grace time.Duration
}

// Lease is one node number held by one holder until ExpiresAt.
type Lease struct {
	Number     int
	Holder     string
	Node       string
	AcquiredAt time.Time
	// ExpiresAt is by the database's clock (PostgreSQL/CockroachDB now();
	// SQLite, on one host, the process clock), so nodes' clocks do not
	// decide who holds what.
	ExpiresAt time.Time
	// Remaining is ExpiresAt minus the database's clock when the lease
	// was read or written; zero or less once it lapsed.
	Remaining time.Duration
}

// Live reports whether the lease had not lapsed when it was read.
func (l Lease) Live() bool { return l.Remaining > 0 }

// NodeLeases hands out node numbers (the node bits of message ids), one
// holder per number at a time. A number is free when no lease has it, or
// its lease expired more than the request's Grace ago.
type NodeLeases interface {
	// AcquireNodeLease leases the smallest free number (0..MaxNodeNumber)
	// to req.Holder for req.TTL. ErrNoNodeNumber when none is free.
	// Concurrent calls never get the same number.
	AcquireNodeLease(ctx context.Context, req LeaseRequest) (Lease, error)
	// RenewNodeLease extends the lease to ttl from now (the database's
	// now) if lease.Holder still holds lease.Number, even if it lapsed
	// meanwhile: no one else took it, so no one else made ids with it.
	// ErrNotFound when another holder took the number.
	RenewNodeLease(ctx context.Context, lease Lease, ttl time.Duration) (Lease, error)
	// ReleaseNodeLease ends the lease now: it is no longer live, and its
	// number is free once the grace has passed (the ids made under it may
	// carry times up to now by the holder's clock). The holder must not
	// renew it afterwards. ErrNotFound when another holder took it.
	ReleaseNodeLease(ctx context.Context, lease Lease) error
	// ListNodeLeases returns every lease, lapsed or live, by number.
	ListNodeLeases(ctx context.Context) ([]Lease, error)
}
