package storage

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the Friends methods.
var (
	// ErrBlocked: one of the two users blocks the other.
	ErrBlocked = errors.New("blocked")
	// ErrAlreadyFriends: the two users are friends already.
	ErrAlreadyFriends = errors.New("already friends")
)

// FriendRequest is a pending request from FromID to ToID.
type FriendRequest struct {
	FromID    string
	ToID      string
	Message   string
	CreatedAt time.Time
	// User is the other side as a list shows it (the asker of an incoming
	// request, the one asked of an outgoing one); filled in by
	// ListFriendRequests only.
	User User
}

// Friend is one of a user's friends.
type Friend struct {
	User  User
	Since time.Time
}

// Relation is what binds users A and B (GetRelation(a, b)).
type Relation struct {
	Friends   bool
	ABlocksB  bool
	BBlocksA  bool
	RequestAB bool // A asked B, pending
	RequestBA bool // B asked A, pending
}

// Blocked reports whether either user blocks the other.
func (r Relation) Blocked() bool { return r.ABlocksB || r.BBlocksA }

// RequestCursor is where a page of friend requests continues: after the
// request of UserID (the other side) made at CreatedAt, newest first. The
// zero cursor starts at the newest.
type RequestCursor struct {
	CreatedAt time.Time
	UserID    string
}

// Friends stores friendships, pending friend requests and blocks.
//
// Every change takes the events that describe it (messages of the users'
// event streams, EventsConversationID, with Members set to the stream's
// user) and stores them in the SAME transaction, as AppendMessages would:
// the change and its events are committed together, or neither is. It
// returns their AppendResults (seqs) in input order. On any error nothing
// is stored.
type Friends interface {
	// CreateFriendRequest stores r. ErrNotFound if r.ToID is not a user;
	// ErrBlocked if either user blocks the other; ErrAlreadyFriends;
	// ErrAlreadyExists if a request between the two is pending, in either
	// direction.
	CreateFriendRequest(ctx context.Context, r FriendRequest, events []NewMessage) ([]AppendResult, error)
	// AcceptFriendRequest deletes the request from → to and makes the two
	// friends since at. ErrNotFound if no such request is pending;
	// ErrBlocked if either user blocks the other.
	AcceptFriendRequest(ctx context.Context, from, to string, at time.Time, events []NewMessage) ([]AppendResult, error)
	// DeleteFriendRequest deletes the pending request from → to (declined
	// or withdrawn). ErrNotFound if there is none.
	DeleteFriendRequest(ctx context.Context, from, to string, events []NewMessage) ([]AppendResult, error)
	// RemoveFriend ends the friendship of a and b. ErrNotFound if they are
	// not friends.
	RemoveFriend(ctx context.Context, a, b string, events []NewMessage) ([]AppendResult, error)
	// Block records that blocker blocks blocked since at. ErrNotFound if
	// blocked is not a user; ErrAlreadyExists if the block exists.
	Block(ctx context.Context, blocker, blocked string, at time.Time, events []NewMessage) ([]AppendResult, error)
	// Unblock lifts blocker's block of blocked. ErrNotFound if there is
	// none.
	Unblock(ctx context.Context, blocker, blocked string, events []NewMessage) ([]AppendResult, error)
	// GetRelation reads what binds a and b, in one consistent read.
	GetRelation(ctx context.Context, a, b string) (Relation, error)
	// ListFriends returns the user's friends with ids after afterID, by
	// id, at most limit.
	ListFriends(ctx context.Context, userID, afterID string, limit int) ([]Friend, error)
	// ListFriendRequests returns the user's pending requests, incoming (to
	// the user) or outgoing, newest first (ties by the other user's id,
	// descending), after the cursor, at most limit, with User filled in.
	ListFriendRequests(ctx context.Context, userID string, incoming bool, after RequestCursor, limit int) ([]FriendRequest, error)
	// ListBlocked returns the users the user blocks with ids after
	// afterID, by id, at most limit.
	ListBlocked(ctx context.Context, userID, afterID string, limit int) ([]User, error)
	// FriendIDs returns the ids of the user's friends with no block
	// between them either way (those who see the user's presence), in no
	// order.
	FriendIDs(ctx context.Context, userID string) ([]string, error)
	// VisibleUsers returns those of candidates (distinct ids) that viewer
	// may see the presence of: friends of viewer, and users who share a
	// group with viewer (both active members), unless either blocks the
	// other. In no particular order.
	VisibleUsers(ctx context.Context, viewer string, candidates []string) ([]string, error)
}
