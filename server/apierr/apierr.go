// Package apierr is the table of every refusal a client can be told about:
// a gRPC code and a fixed message each (as etcd's rpctypes). Domain code
// returns one of them, wrapped with the detail that explains it to an
// operator:
//
//	fmt.Errorf("%w: %d bytes, limit %d", apierr.ContentTooLarge, n, limit)
//
// The gateway finds the *Error in the chain, sends its code and fixed
// message, and logs the rest. Nothing a client sent (a 200 KB id, say) and
// nothing of the database's (driver texts, SQL) reaches a status message.
// An error that wraps no *Error is a bug: the client sees Internal
// "internal error" and the detail goes to the log.
//
// docs/delivery.md lists the table with what a client should do for each;
// TestTableDocumented keeps the two in step.
package apierr

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/storage"
)

// Error is one refusal: the status a client sees.
type Error struct {
	Code    codes.Code
	Message string
}

func (e *Error) Error() string { return e.Message }

func def(code codes.Code, msg string) *Error {
	e := &Error{Code: code, Message: msg}
	all = append(all, e)
	return e
}

var all []*Error

// All returns every entry of the table, for docs and tests.
func All() []*Error { return append([]*Error(nil), all...) }

// InvalidArgument: the request is malformed; sent again unchanged it fails
// again.
var (
	BadClientMsgID    = def(codes.InvalidArgument, "client_msg_id must be 1-64 bytes")
	ContentRequired   = def(codes.InvalidArgument, "content is required")
	ContentTooLarge   = def(codes.InvalidArgument, "content is larger than the server's limit")
	BadRecipient      = def(codes.InvalidArgument, "send to exactly one of user_id or group_id")
	BadConversationID = def(codes.InvalidArgument, "conversation_id is not a valid conversation id")
	BadLimit          = def(codes.InvalidArgument, "limit is out of range")
	BadSeq            = def(codes.InvalidArgument, "seq arguments must not be negative")
	BadPushAck        = def(codes.InvalidArgument, "PushAck needs a conversation_id and a positive seq")
	// BadFrame: no frame set, a frame this server does not know, or bytes
	// that are not a StreamRequest at all (they decode as empty).
	BadFrame        = def(codes.InvalidArgument, "empty, unknown or undecodable frame")
	AlreadyAuthed   = def(codes.InvalidArgument, "the stream is already authenticated")
	BadUserID       = def(codes.InvalidArgument, "not a valid user id")
	UserRequired    = def(codes.InvalidArgument, "user_id or username is required")
	MembersRequired = def(codes.InvalidArgument, "user_ids is empty")
	BadGroupName    = def(codes.InvalidArgument, "group name must be 1-64 characters, without control or bidirectional-formatting characters")
	BadUsername     = def(codes.InvalidArgument, "username must be 3-32 characters of a-z, 0-9, '_', '.', '-'")
	BadPassword     = def(codes.InvalidArgument, "password must be 8-72 bytes")
	BadDisplayName  = def(codes.InvalidArgument, "display name must be valid UTF-8 of at most 64 characters, without control or bidirectional-formatting characters")
	BadDeviceID     = def(codes.InvalidArgument, "device_id must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
	// Groups (server/chat/groups.go).
	BadGroupDescription = def(codes.InvalidArgument, "group description must be at most 512 characters, without control or bidirectional-formatting characters")
	BadAvatarURL        = def(codes.InvalidArgument, "avatar_url must be empty or an http:// or https:// URL of at most 512 bytes")
	BadGroupPolicy      = def(codes.InvalidArgument, "unknown join_policy or add_policy")
	BadGroupRole        = def(codes.InvalidArgument, "role must be GROUP_ROLE_ADMIN or GROUP_ROLE_MEMBER")
	OwnerRoleFixed      = def(codes.InvalidArgument, "the owner's role changes only by transferring ownership")
	KickSelf            = def(codes.InvalidArgument, "cannot kick yourself; leave the group instead")
	TransferToSelf      = def(codes.InvalidArgument, "ownership must be transferred to another member")
	// ReservedContentType: content types starting with "starling." are
	// the server's own (system messages); clients may not send them.
	ReservedContentType = def(codes.InvalidArgument, "content types starting with \"starling.\" are reserved for the server")
	// BadReadSeq: a MarkRead below 1 or past the newest message the user
	// may read in the conversation.
	BadReadSeq  = def(codes.InvalidArgument, "seq must be from 1 up to the newest message you may read")
	BadMuteTime = def(codes.InvalidArgument, "muted_until is not a valid time")
)

// Unauthenticated: log in again (or send a valid Auth frame).
var (
	BadCredentials = def(codes.Unauthenticated, "wrong username or password")
	BadToken       = def(codes.Unauthenticated, "invalid token")
	TokenExpired   = def(codes.Unauthenticated, "token expired")
	TokenRevoked   = def(codes.Unauthenticated, "token was revoked (logged out)")
	DeviceMismatch = def(codes.Unauthenticated, "device_id does not match the token's device")
	AuthRequired   = def(codes.Unauthenticated, "the first frame must be Auth (or send the token in the authorization metadata)")
	AuthTimeout    = def(codes.Unauthenticated, "no Auth frame in time")
	NoToken        = def(codes.Unauthenticated, "no token")
)

// PermissionDenied: the caller may not do this; retrying does not help.
var (
	NotMember = def(codes.PermissionDenied, "not a member of this conversation")
	// NotGroupAdmin: only admins and the owner may (update info, kick,
	// and add when the group's add policy is admins only).
	NotGroupAdmin = def(codes.PermissionDenied, "only the group's admins may do this")
	// NotGroupOwner: only the owner may (kick admins, set roles, transfer
	// ownership, disband).
	NotGroupOwner   = def(codes.PermissionDenied, "only the group's owner may do this")
	KickOwner       = def(codes.PermissionDenied, "nobody can kick the group's owner")
	GroupInviteOnly = def(codes.PermissionDenied, "the group is invite only")
)

// FailedPrecondition: the group is not in a state that allows this.
var (
	// GroupDisbanded: the owner disbanded the group; nothing can be sent
	// to it or changed. Former members still read its history.
	GroupDisbanded = def(codes.FailedPrecondition, "the group was disbanded")
	// OwnerCannotLeave: the owner must transfer ownership (or disband the
	// group) before leaving, so a group always has an owner.
	OwnerCannotLeave = def(codes.FailedPrecondition, "the owner cannot leave; transfer ownership or disband the group first")
)

// NotFound: the named user or group does not exist.
var (
	UserNotFound  = def(codes.NotFound, "no such user")
	GroupNotFound = def(codes.NotFound, "no such group")
	// MemberNotFound: a group or one of the users named does not exist.
	MemberNotFound = def(codes.NotFound, "a group or user does not exist")
	// TargetNotMember: the user named (to kick, promote, make owner) is
	// not a member of the group now.
	TargetNotMember = def(codes.NotFound, "the user is not a member of this group")
)

// AlreadyExists: a unique value is taken.
var (
	UsernameTaken = def(codes.AlreadyExists, "username is taken")
	// ClientMsgIDReused: the sender already used this client_msg_id for a
	// message to another conversation or with other content. Nothing was
	// stored; the client has a bug (it must make a new id per message).
	ClientMsgIDReused = def(codes.AlreadyExists, "client_msg_id was already used for a different message")
	AlreadyMember     = def(codes.AlreadyExists, "already a member of this group")
)

// ResourceExhausted: a bound was reached; slow down or send less.
var (
	RateLimited      = def(codes.ResourceExhausted, "sending too fast")
	TooManyInflight  = def(codes.ResourceExhausted, "too many sends await their SendAck on this stream")
	TooManyDevices   = def(codes.ResourceExhausted, "too many devices of this user are online")
	GroupFull        = def(codes.ResourceExhausted, "the group is full")
	TooManyMembers   = def(codes.ResourceExhausted, "too many members for one group")
	FrameTooLarge    = def(codes.ResourceExhausted, "frame is larger than the server's limit")
	SlowDevice       = def(codes.ResourceExhausted, "the device did not read its stream fast enough")
	ResponseTooLarge = def(codes.ResourceExhausted, "the answer would be too large")
	// TooManyUnauth: the node has too many streams waiting for their Auth
	// frame; retry after a backoff.
	TooManyUnauth = def(codes.ResourceExhausted, "too many streams waiting to authenticate; retry later")
	// TypingTooFast: the device sent Typing frames faster than they are
	// relayed (one a second, bursts of 3); the extra ones were dropped.
	TypingTooFast = def(codes.ResourceExhausted, "typing notices too frequent")
)

// Unavailable: worth a retry, after a backoff. A Send refused so is resent
// with the SAME client_msg_id: if it was stored after all, the resend is
// answered as a duplicate of it.
var (
	// Unavailable: the database is unreachable or slow, or a commit's
	// outcome is unknown (the connection broke during COMMIT).
	Unavailable = def(codes.Unavailable, "temporarily unavailable; retry with the same client_msg_id")
	// StreamUnavailable: the node could not open the stream now (it could
	// not record where the device is); reconnect after a backoff.
	StreamUnavailable = def(codes.Unavailable, "cannot open the stream now; reconnect later")
	// ShuttingDown: this node is draining; reconnect (to another node).
	ShuttingDown = def(codes.Unavailable, "server shutting down; reconnect and retry")
)

// Login and Register limits (server/auth.Limits): ResourceExhausted when
// the caller went past a bound of its own, Unavailable when the node is
// overloaded. Slow down and retry later.
var (
	// LoginRateLimited: too many Login calls from the caller's address.
	LoginRateLimited = def(codes.ResourceExhausted, "too many login attempts; retry later")
	// LoginBackoff: too many failed logins of this username; the next
	// attempt must wait (the wait doubles with each failure, up to a cap;
	// a success resets it).
	LoginBackoff = def(codes.ResourceExhausted, "too many failed logins; retry later")
	// RegisterRateLimited: too many Register calls from the caller's address.
	RegisterRateLimited = def(codes.ResourceExhausted, "too many registrations; retry later")
	// Busy: every password-hashing slot stayed taken for a while (too many
	// logins and registrations at once); retry after a backoff.
	Busy = def(codes.Unavailable, "server busy; retry later")
)

// Internal is what every error outside this table becomes.
var Internal = def(codes.Internal, "internal error")

// FromStorage wraps a database error for the edge, with op as context for
// the log: Unavailable when trying again may succeed (unreachable, slow,
// or an ambiguous commit, which a resend with the same client_msg_id
// settles); as it is otherwise, which the edge reports as Internal unless
// the caller mapped it to something better first.
func FromStorage(op string, err error) error {
	if errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrAmbiguousCommit) {
		return fmt.Errorf("%w: %s: %w", Unavailable, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
