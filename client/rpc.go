package client

import (
	"context"
	"fmt"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// The wrappers below add context to errors but keep the gRPC status:
// status.Code(err) and status.Convert(err) work on what they return.

// Register creates a user. displayName may be empty.
func (c *Client) Register(ctx context.Context, username, password, displayName string) (*starlingv1.User, error) {
	resp, err := c.auth.Register(ctx, &starlingv1.RegisterRequest{
		Username:    username,
		Password:    password,
		DisplayName: displayName,
	})
	if err != nil {
		return nil, fmt.Errorf("register %q: %w", username, err)
	}
	return resp.GetUser(), nil
}

// Login gets a token for one device of a user and, on success, makes the
// client use it for every later call and Session.
func (c *Client) Login(ctx context.Context, username, password, deviceID string) (*starlingv1.LoginResponse, error) {
	resp, err := c.auth.Login(ctx, &starlingv1.LoginRequest{
		Username: username,
		Password: password,
		DeviceId: deviceID,
	})
	if err != nil {
		return nil, fmt.Errorf("login %q: %w", username, err)
	}
	c.SetToken(resp.GetToken())
	return resp, nil
}

// Logout revokes the client's token (the server closes that device's open
// stream, whose Session then ends with ErrLoggedOut) and forgets it.
func (c *Client) Logout(ctx context.Context) error {
	if _, err := c.auth.Logout(ctx, &starlingv1.LogoutRequest{}); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	c.SetToken("")
	return nil
}

// GetUser finds a user by id.
func (c *Client) GetUser(ctx context.Context, userID string) (*starlingv1.User, error) {
	resp, err := c.users.GetUser(ctx, &starlingv1.GetUserRequest{
		Key: &starlingv1.GetUserRequest_UserId{UserId: userID},
	})
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", userID, err)
	}
	return resp.GetUser(), nil
}

// GetUserByName finds a user by username.
func (c *Client) GetUserByName(ctx context.Context, username string) (*starlingv1.User, error) {
	resp, err := c.users.GetUser(ctx, &starlingv1.GetUserRequest{
		Key: &starlingv1.GetUserRequest_Username{Username: username},
	})
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", username, err)
	}
	return resp.GetUser(), nil
}

// GetHistory returns one page of a conversation: messages with seq below
// beforeSeq (0: from the newest), at most limit (0: the server's default),
// in ascending seq order, and whether older ones remain.
func (c *Client) GetHistory(ctx context.Context, conversationID string, beforeSeq int64, limit int32) (*starlingv1.GetHistoryResponse, error) {
	resp, err := c.chat.GetHistory(ctx, &starlingv1.GetHistoryRequest{
		ConversationId: conversationID,
		BeforeSeq:      beforeSeq,
		Limit:          limit,
	})
	if err != nil {
		return nil, fmt.Errorf("history of %q: %w", conversationID, err)
	}
	return resp, nil
}

// ListConversations lists the caller's conversations, newest activity
// first, with each one's latest seq and this device's delivered cursor
// (the cheap listing; Inbox has unread counts and last messages).
func (c *Client) ListConversations(ctx context.Context) ([]*starlingv1.ConversationState, error) {
	resp, err := c.chat.ListConversations(ctx, &starlingv1.ListConversationsRequest{StatesOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return resp.GetConversations(), nil
}
