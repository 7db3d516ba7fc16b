package client

import (
	"context"
	"fmt"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Friends, blocks and presence (starling.v1.FriendService). Every change
// reaches the devices it concerns as an Event; a Session opened
// WithEvents delivers them on Session.Events.

func (c *Client) friends() starlingv1.FriendServiceClient {
	return starlingv1.NewFriendServiceClient(c.conn)
}

// SendFriendRequest asks userID to be friends, with an optional note (at
// most 200 characters).
func (c *Client) SendFriendRequest(ctx context.Context, userID, message string) (*starlingv1.FriendRequest, error) {
	resp, err := c.friends().SendFriendRequest(ctx, &starlingv1.SendFriendRequestRequest{UserId: userID, Message: message})
	if err != nil {
		return nil, fmt.Errorf("friend request to %q: %w", userID, err)
	}
	return resp.GetRequest(), nil
}

// AcceptFriendRequest accepts the pending request from userID.
func (c *Client) AcceptFriendRequest(ctx context.Context, userID string) error {
	if _, err := c.friends().AcceptFriendRequest(ctx, &starlingv1.AcceptFriendRequestRequest{UserId: userID}); err != nil {
		return fmt.Errorf("accept friend request of %q: %w", userID, err)
	}
	return nil
}

// DeclineFriendRequest declines the pending request from userID.
func (c *Client) DeclineFriendRequest(ctx context.Context, userID string) error {
	if _, err := c.friends().DeclineFriendRequest(ctx, &starlingv1.DeclineFriendRequestRequest{UserId: userID}); err != nil {
		return fmt.Errorf("decline friend request of %q: %w", userID, err)
	}
	return nil
}

// CancelFriendRequest withdraws the caller's pending request to userID.
func (c *Client) CancelFriendRequest(ctx context.Context, userID string) error {
	if _, err := c.friends().CancelFriendRequest(ctx, &starlingv1.CancelFriendRequestRequest{UserId: userID}); err != nil {
		return fmt.Errorf("cancel friend request to %q: %w", userID, err)
	}
	return nil
}

// RemoveFriend ends the friendship with userID.
func (c *Client) RemoveFriend(ctx context.Context, userID string) error {
	if _, err := c.friends().RemoveFriend(ctx, &starlingv1.RemoveFriendRequest{UserId: userID}); err != nil {
		return fmt.Errorf("remove friend %q: %w", userID, err)
	}
	return nil
}

// BlockUser blocks userID: no one-to-one messages, friend requests or
// presence either way until UnblockUser.
func (c *Client) BlockUser(ctx context.Context, userID string) error {
	if _, err := c.friends().BlockUser(ctx, &starlingv1.BlockUserRequest{UserId: userID}); err != nil {
		return fmt.Errorf("block %q: %w", userID, err)
	}
	return nil
}

// UnblockUser lifts the caller's block of userID.
func (c *Client) UnblockUser(ctx context.Context, userID string) error {
	if _, err := c.friends().UnblockUser(ctx, &starlingv1.UnblockUserRequest{UserId: userID}); err != nil {
		return fmt.Errorf("unblock %q: %w", userID, err)
	}
	return nil
}

// ListFriends returns one page of the caller's friends (pageSize 0: the
// server's default) and the token of the next page ("" after the last).
func (c *Client) ListFriends(ctx context.Context, pageSize int32, pageToken string) ([]*starlingv1.Friend, string, error) {
	resp, err := c.friends().ListFriends(ctx, &starlingv1.ListFriendsRequest{PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("list friends: %w", err)
	}
	return resp.GetFriends(), resp.GetNextPageToken(), nil
}

// ListFriendRequests returns one page of the caller's pending requests,
// incoming or outgoing, newest first.
func (c *Client) ListFriendRequests(ctx context.Context, incoming bool, pageSize int32, pageToken string) ([]*starlingv1.FriendRequest, string, error) {
	dir := starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_OUTGOING
	if incoming {
		dir = starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_INCOMING
	}
	resp, err := c.friends().ListFriendRequests(ctx, &starlingv1.ListFriendRequestsRequest{Direction: dir, PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("list friend requests: %w", err)
	}
	return resp.GetRequests(), resp.GetNextPageToken(), nil
}

// ListBlockedUsers returns one page of the users the caller blocks.
func (c *Client) ListBlockedUsers(ctx context.Context, pageSize int32, pageToken string) ([]*starlingv1.User, string, error) {
	resp, err := c.friends().ListBlockedUsers(ctx, &starlingv1.ListBlockedUsersRequest{PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("list blocked users: %w", err)
	}
	return resp.GetUsers(), resp.GetNextPageToken(), nil
}

// GetPresence asks whether users (at most 100) are online; users the
// caller may not see come back PRESENCE_STATUS_HIDDEN.
func (c *Client) GetPresence(ctx context.Context, userIDs ...string) ([]*starlingv1.UserPresence, error) {
	resp, err := c.friends().GetPresence(ctx, &starlingv1.GetPresenceRequest{UserIds: userIDs})
	if err != nil {
		return nil, fmt.Errorf("get presence: %w", err)
	}
	return resp.GetPresences(), nil
}
