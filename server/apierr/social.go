package apierr

import "google.golang.org/grpc/codes"

// Friends, blocks, events and presence (FriendService; the block and
// dm-policy checks of a one-to-one Send).
var (
	// Blocked: one of the two users blocks the other. The same text
	// whichever blocked whom, so the refusal does not say who.
	Blocked = def(codes.PermissionDenied, "a block between you and this user forbids this")
	// NotFriends: the server runs with --dm-policy friends and the two
	// users are not friends.
	NotFriends = def(codes.PermissionDenied, "only friends may message each other on this server")
	// SelfFriend: a friend request, block or removal naming the caller.
	SelfFriend = def(codes.InvalidArgument, "you cannot do this to yourself")
	// BadFriendMessage: a friend request's note is too long or unsafe.
	BadFriendMessage = def(codes.InvalidArgument, "message must be valid UTF-8 of at most 200 characters, without control or bidirectional-formatting characters")
	// BadPageSize: page_size out of range.
	BadPageSize = def(codes.InvalidArgument, "page_size is out of range")
	// BadPageToken: page_token is not one this server gave.
	BadPageToken = def(codes.InvalidArgument, "page_token is not valid")
	// BadDirection: ListFriendRequests without a direction.
	BadDirection = def(codes.InvalidArgument, "direction must be INCOMING or OUTGOING")
	// BadPresenceList: GetPresence with no ids or too many.
	BadPresenceList = def(codes.InvalidArgument, "user_ids must hold 1-100 ids")
	// EventStreamHistory: GetHistory of an event stream (Sync reads it).
	EventStreamHistory = def(codes.InvalidArgument, "event streams are read with Sync, not GetHistory")
	// AlreadyFriends: a request to a friend.
	AlreadyFriends = def(codes.AlreadyExists, "you are already friends")
	// RequestPending: a request between the two users is pending already
	// (in either direction).
	RequestPending = def(codes.AlreadyExists, "a friend request between you and this user is already pending")
	// NoFriendRequest: no such pending request.
	NoFriendRequest = def(codes.NotFound, "no such pending friend request")
	// NotAFriend: RemoveFriend of someone who is not a friend.
	NotAFriend = def(codes.NotFound, "this user is not your friend")
)
