package gateway

import (
	"context"
	"log/slog"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/chat"
)

// FriendServer serves starling.v1.FriendService.
type FriendServer struct {
	starlingv1.UnimplementedFriendServiceServer
	Chat *chat.Service
	Log  *slog.Logger
}

// SendFriendRequest asks another user to be friends.
func (s *FriendServer) SendFriendRequest(ctx context.Context, req *starlingv1.SendFriendRequestRequest) (*starlingv1.SendFriendRequestResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	fr, err := s.Chat.SendFriendRequest(ctx, id, req.GetUserId(), req.GetMessage())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.SendFriendRequestResponse{Request: fr}, nil
}

// AcceptFriendRequest accepts a pending request.
func (s *FriendServer) AcceptFriendRequest(ctx context.Context, req *starlingv1.AcceptFriendRequestRequest) (*starlingv1.AcceptFriendRequestResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.AcceptFriendRequest, &starlingv1.AcceptFriendRequestResponse{})
}

// DeclineFriendRequest declines a pending request.
func (s *FriendServer) DeclineFriendRequest(ctx context.Context, req *starlingv1.DeclineFriendRequestRequest) (*starlingv1.DeclineFriendRequestResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.DeclineFriendRequest, &starlingv1.DeclineFriendRequestResponse{})
}

// CancelFriendRequest withdraws the caller's request.
func (s *FriendServer) CancelFriendRequest(ctx context.Context, req *starlingv1.CancelFriendRequestRequest) (*starlingv1.CancelFriendRequestResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.CancelFriendRequest, &starlingv1.CancelFriendRequestResponse{})
}

// RemoveFriend ends a friendship.
func (s *FriendServer) RemoveFriend(ctx context.Context, req *starlingv1.RemoveFriendRequest) (*starlingv1.RemoveFriendResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.RemoveFriend, &starlingv1.RemoveFriendResponse{})
}

// BlockUser blocks a user.
func (s *FriendServer) BlockUser(ctx context.Context, req *starlingv1.BlockUserRequest) (*starlingv1.BlockUserResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.BlockUser, &starlingv1.BlockUserResponse{})
}

// UnblockUser lifts a block.
func (s *FriendServer) UnblockUser(ctx context.Context, req *starlingv1.UnblockUserRequest) (*starlingv1.UnblockUserResponse, error) {
	return answer(ctx, s.Log, req.GetUserId(), s.Chat.UnblockUser, &starlingv1.UnblockUserResponse{})
}

// answer runs a call that names one other user and answers nothing else.
func answer[R any](ctx context.Context, log *slog.Logger, user string, call func(context.Context, auth.Identity, string) error, resp *R) (*R, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(log, err)
	}
	if err := call(ctx, id, user); err != nil {
		return nil, toError(log, err)
	}
	return resp, nil
}

// ListFriends pages through the caller's friends.
func (s *FriendServer) ListFriends(ctx context.Context, req *starlingv1.ListFriendsRequest) (*starlingv1.ListFriendsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	fs, next, err := s.Chat.ListFriends(ctx, id, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.ListFriendsResponse{Friends: fs, NextPageToken: next}, nil
}

// ListFriendRequests pages through the caller's pending requests.
func (s *FriendServer) ListFriendRequests(ctx context.Context, req *starlingv1.ListFriendRequestsRequest) (*starlingv1.ListFriendRequestsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	rs, next, err := s.Chat.ListFriendRequests(ctx, id, req.GetDirection(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.ListFriendRequestsResponse{Requests: rs, NextPageToken: next}, nil
}

// ListBlockedUsers pages through the users the caller blocks.
func (s *FriendServer) ListBlockedUsers(ctx context.Context, req *starlingv1.ListBlockedUsersRequest) (*starlingv1.ListBlockedUsersResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	us, next, err := s.Chat.ListBlocked(ctx, id, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.ListBlockedUsersResponse{Users: us, NextPageToken: next}, nil
}

// GetPresence tells whether users are online.
func (s *FriendServer) GetPresence(ctx context.Context, req *starlingv1.GetPresenceRequest) (*starlingv1.GetPresenceResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	ps, err := s.Chat.GetPresence(ctx, id, req.GetUserIds())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.GetPresenceResponse{Presences: ps}, nil
}
