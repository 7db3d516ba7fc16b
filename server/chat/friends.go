package chat

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starling-im/starling/client/textsafe"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/storage"
)

// Bounds of the FriendService.
const (
	MaxFriendMessageRunes = 200
	DefaultFriendPageSize = 50
	MaxFriendPageSize     = 200
	MaxPresenceUsers      = 100
)

// other checks the user id a caller names in a friend call. Errors:
// BadUserID, SelfFriend.
func other(caller auth.Identity, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(id))
	}
	if id == caller.UserID {
		return apierr.SelfFriend
	}
	return nil
}

// friendErr maps what a Friends method refused to the client's error.
func friendErr(op string, err error, notFound *apierr.Error) error {
	switch {
	case errors.Is(err, storage.ErrBlocked):
		return fmt.Errorf("%w: %s", apierr.Blocked, op)
	case errors.Is(err, storage.ErrAlreadyFriends):
		return fmt.Errorf("%w: %s", apierr.AlreadyFriends, op)
	case errors.Is(err, storage.ErrAlreadyExists):
		return fmt.Errorf("%w: %s", apierr.RequestPending, op)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s: %w", notFound, op, err)
	}
	if _, ok := errors.AsType[*apierr.Error](err); ok {
		return err
	}
	return apierr.FromStorage(op, err)
}

// SendFriendRequest asks to.
func (s *Service) SendFriendRequest(ctx context.Context, caller auth.Identity, to, message string) (*starlingv1.FriendRequest, error) {
	if err := other(caller, to); err != nil {
		return nil, err
	}
	if !utf8.ValidString(message) || utf8.RuneCountInString(message) > MaxFriendMessageRunes || textsafe.ContainsUnsafe(message) {
		return nil, apierr.BadFriendMessage
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	fr := &starlingv1.FriendRequest{FromUserId: caller.UserID, ToUserId: to, Message: message, CreateTime: timestamppb.New(now)}
	ev := func() *starlingv1.Event {
		return &starlingv1.Event{Kind: &starlingv1.Event_FriendRequested{FriendRequested: fr}}
	}
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, []eventFor{{caller.UserID, ev()}, {to, ev()}},
		func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
			return s.store.CreateFriendRequest(ctx, storage.FriendRequest{FromID: caller.UserID, ToID: to, Message: message, CreatedAt: now}, msgs)
		})
	if err != nil {
		return nil, friendErr("chat: friend request", err, apierr.UserNotFound)
	}
	return fr, nil
}

// pairEvents is the same FriendPair event for both users.
func pairEvents(from, to string, kind func(*starlingv1.FriendPair) *starlingv1.Event) []eventFor {
	mk := func() *starlingv1.Event { return kind(&starlingv1.FriendPair{FromUserId: from, ToUserId: to}) }
	return []eventFor{{from, mk()}, {to, mk()}}
}

// AcceptFriendRequest accepts from's request to the caller.
func (s *Service) AcceptFriendRequest(ctx context.Context, caller auth.Identity, from string) error {
	if err := other(caller, from); err != nil {
		return err
	}
	defer s.social.relationChanged(ctx, caller.UserID, from)
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, pairEvents(from, caller.UserID, func(p *starlingv1.FriendPair) *starlingv1.Event {
		return &starlingv1.Event{Kind: &starlingv1.Event_FriendRequestAccepted{FriendRequestAccepted: p}}
	}), func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
		return s.store.AcceptFriendRequest(ctx, from, caller.UserID, time.Now(), msgs)
	})
	if err != nil {
		return friendErr("chat: accept friend request", err, apierr.NoFriendRequest)
	}
	return nil
}

// DeclineFriendRequest declines from's request to the caller.
func (s *Service) DeclineFriendRequest(ctx context.Context, caller auth.Identity, from string) error {
	if err := other(caller, from); err != nil {
		return err
	}
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, pairEvents(from, caller.UserID, func(p *starlingv1.FriendPair) *starlingv1.Event {
		return &starlingv1.Event{Kind: &starlingv1.Event_FriendRequestDeclined{FriendRequestDeclined: p}}
	}), func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
		return s.store.DeleteFriendRequest(ctx, from, caller.UserID, msgs)
	})
	if err != nil {
		return friendErr("chat: decline friend request", err, apierr.NoFriendRequest)
	}
	return nil
}

// CancelFriendRequest withdraws the caller's request to to.
func (s *Service) CancelFriendRequest(ctx context.Context, caller auth.Identity, to string) error {
	if err := other(caller, to); err != nil {
		return err
	}
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, pairEvents(caller.UserID, to, func(p *starlingv1.FriendPair) *starlingv1.Event {
		return &starlingv1.Event{Kind: &starlingv1.Event_FriendRequestCanceled{FriendRequestCanceled: p}}
	}), func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
		return s.store.DeleteFriendRequest(ctx, caller.UserID, to, msgs)
	})
	if err != nil {
		return friendErr("chat: cancel friend request", err, apierr.NoFriendRequest)
	}
	return nil
}

// RemoveFriend ends the caller's friendship with friend.
func (s *Service) RemoveFriend(ctx context.Context, caller auth.Identity, friend string) error {
	if err := other(caller, friend); err != nil {
		return err
	}
	defer s.social.relationChanged(ctx, caller.UserID, friend)
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, pairEvents(caller.UserID, friend, func(p *starlingv1.FriendPair) *starlingv1.Event {
		return &starlingv1.Event{Kind: &starlingv1.Event_FriendRemoved{FriendRemoved: p}}
	}), func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
		return s.store.RemoveFriend(ctx, caller.UserID, friend, msgs)
	})
	if err != nil {
		return friendErr("chat: remove friend", err, apierr.NotAFriend)
	}
	return nil
}

// BlockUser blocks user. Blocking twice is not an error and stores no
// second event. The blocked user is told nothing.
func (s *Service) BlockUser(ctx context.Context, caller auth.Identity, user string) error {
	if err := other(caller, user); err != nil {
		return err
	}
	// Forgotten even on error: an ambiguous commit may have blocked.
	defer s.social.relationChanged(ctx, caller.UserID, user)
	ev := &starlingv1.Event{Kind: &starlingv1.Event_UserBlocked{UserBlocked: &starlingv1.BlockChange{UserId: user}}}
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, []eventFor{{caller.UserID, ev}},
		func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
			return s.store.Block(ctx, caller.UserID, user, time.Now(), msgs)
		})
	if errors.Is(err, storage.ErrAlreadyExists) {
		return nil
	}
	if err != nil {
		return friendErr("chat: block", err, apierr.UserNotFound)
	}
	return nil
}

// UnblockUser lifts the caller's block of user; lifting none is not an
// error and stores no event.
func (s *Service) UnblockUser(ctx context.Context, caller auth.Identity, user string) error {
	if err := other(caller, user); err != nil {
		return err
	}
	defer s.social.relationChanged(ctx, caller.UserID, user)
	ev := &starlingv1.Event{Kind: &starlingv1.Event_UserUnblocked{UserUnblocked: &starlingv1.BlockChange{UserId: user}}}
	err := s.social.change(ctx, caller.UserID, caller.DeviceID, []eventFor{{caller.UserID, ev}},
		func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
			return s.store.Unblock(ctx, caller.UserID, user, msgs)
		})
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return friendErr("chat: unblock", err, apierr.UserNotFound)
	}
	return nil
}

// pageSize checks a page_size.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0 || n > MaxFriendPageSize:
		return 0, fmt.Errorf("%w: %d, want 0-%d", apierr.BadPageSize, n, MaxFriendPageSize)
	case n == 0:
		return DefaultFriendPageSize, nil
	}
	return int(n), nil
}

// Page tokens are opaque to clients: base64 (URL alphabet) of where the
// page ended, "<user id>" for lists by id, "<unix ms>.<user id>" for
// requests.
func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeToken(tok string) (string, error) {
	if len(tok) > 4*maxIDBytes {
		return "", fmt.Errorf("%w: %d bytes", apierr.BadPageToken, len(tok))
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", fmt.Errorf("%w: %v", apierr.BadPageToken, err)
	}
	return string(b), nil
}

// idToken decodes a token of a list by user id ("" for the first page).
func idToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	id, err := decodeToken(tok)
	if err != nil {
		return "", err
	}
	if !validID(id) {
		return "", apierr.BadPageToken
	}
	return id, nil
}

// ListFriends returns one page of the caller's friends with their status.
func (s *Service) ListFriends(ctx context.Context, caller auth.Identity, size int32, token string) ([]*starlingv1.Friend, string, error) {
	n, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after, err := idToken(token)
	if err != nil {
		return nil, "", err
	}
	fs, err := s.store.ListFriends(ctx, caller.UserID, after, n+1)
	if err != nil {
		return nil, "", apierr.FromStorage("chat: list friends", err)
	}
	next := ""
	if len(fs) > n {
		fs = fs[:n]
		next = encodeToken(fs[n-1].User.ID)
	}
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.User.ID
	}
	online := s.social.online(ctx, ids)
	out := make([]*starlingv1.Friend, len(fs))
	for i, f := range fs {
		out[i] = &starlingv1.Friend{User: UserProto(f.User), Since: timestamppb.New(f.Since), Status: status(online[f.User.ID])}
	}
	return out, next, nil
}

// ListFriendRequests returns one page of the caller's pending requests.
func (s *Service) ListFriendRequests(ctx context.Context, caller auth.Identity, dir starlingv1.FriendRequestDirection, size int32, token string) ([]*starlingv1.FriendRequest, string, error) {
	var incoming bool
	switch dir {
	case starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_INCOMING:
		incoming = true
	case starlingv1.FriendRequestDirection_FRIEND_REQUEST_DIRECTION_OUTGOING:
	default:
		return nil, "", apierr.BadDirection
	}
	n, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	var after storage.RequestCursor
	if token != "" {
		t, err := decodeToken(token)
		if err != nil {
			return nil, "", err
		}
		ms, id, ok := strings.Cut(t, ".")
		at, perr := strconv.ParseInt(ms, 10, 64)
		if !ok || perr != nil || !validID(id) {
			return nil, "", apierr.BadPageToken
		}
		after = storage.RequestCursor{CreatedAt: time.UnixMilli(at), UserID: id}
	}
	rs, err := s.store.ListFriendRequests(ctx, caller.UserID, incoming, after, n+1)
	if err != nil {
		return nil, "", apierr.FromStorage("chat: list friend requests", err)
	}
	next := ""
	if len(rs) > n {
		rs = rs[:n]
		last := rs[n-1]
		next = encodeToken(strconv.FormatInt(last.CreatedAt.UnixMilli(), 10) + "." + last.User.ID)
	}
	out := make([]*starlingv1.FriendRequest, len(rs))
	for i, r := range rs {
		out[i] = &starlingv1.FriendRequest{FromUserId: r.FromID, ToUserId: r.ToID, Message: r.Message, CreateTime: timestamppb.New(r.CreatedAt), User: UserProto(r.User)}
	}
	return out, next, nil
}

// ListBlocked returns one page of the users the caller blocks.
func (s *Service) ListBlocked(ctx context.Context, caller auth.Identity, size int32, token string) ([]*starlingv1.User, string, error) {
	n, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after, err := idToken(token)
	if err != nil {
		return nil, "", err
	}
	us, err := s.store.ListBlocked(ctx, caller.UserID, after, n+1)
	if err != nil {
		return nil, "", apierr.FromStorage("chat: list blocked", err)
	}
	next := ""
	if len(us) > n {
		us = us[:n]
		next = encodeToken(us[n-1].ID)
	}
	out := make([]*starlingv1.User, len(us))
	for i, u := range us {
		out[i] = UserProto(u)
	}
	return out, next, nil
}
