package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// SystemUserID is the sender of a backend's system messages and notices
// (AdminService). Its username, "~system", is one Register never accepts.
const SystemUserID = "system"

// EnsureSystemUser creates the system sender if it does not exist yet.
func (s *Service) EnsureSystemUser(ctx context.Context) error {
	err := s.store.CreateUser(ctx, storage.User{ID: SystemUserID, Username: "~system", DisplayName: "System", CreatedAt: time.Now().UTC()})
	if err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return apierr.FromStorage("chat: create the system user", err)
	}
	return nil
}

// isSystemSend reports whether req is a backend's send as the system
// sender.
func isSystemSend(req SendRequest) bool { return req.Trusted && req.From.UserID == SystemUserID }

// requireSender checks that a group send's sender may send to the group:
// an active member, or the system sender of a trusted (backend) send.
func (s *Service) requireSender(ctx context.Context, req SendRequest) error {
	if isSystemSend(req) {
		if !validID(req.ToGroup) {
			return fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(req.ToGroup))
		}
		if _, err := s.store.GetGroup(ctx, req.ToGroup); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("%w: %q", apierr.GroupNotFound, req.ToGroup)
			}
			return apierr.FromStorage("chat: look up group", err)
		}
		return nil
	}
	return s.members.requireActive(ctx, req.ToGroup, req.From.UserID)
}

// SetMembers makes the group's active members exactly userIDs plus its
// owner, for a backend (no caller's membership is checked), and returns
// who was added and who removed. Errors: BadUserID, TooManyMembers,
// MemberNotFound, GroupFull, Unavailable.
func (s *Service) SetMembers(ctx context.Context, groupID string, userIDs []string) (added, removed []string, err error) {
	want, err := s.memberList(userIDs)
	if err != nil {
		return nil, nil, err
	}
	g, err := s.store.GetGroup(ctx, groupID)
	if err != nil {
		return nil, nil, groupErr("chat: get group", err)
	}
	if !slices.Contains(want, g.OwnerID) {
		want = append(want, g.OwnerID)
	}
	set, err := s.store.ListMembers(ctx, groupID)
	if err != nil {
		return nil, nil, groupErr("chat: list members", err)
	}
	// Whatever happens below, every node forgets what it cached.
	defer func() {
		s.members.forget(groupID)
		s.router.GroupChanged(ctx, groupID)
	}()
	for _, m := range set.Members {
		if slices.Contains(want, m) {
			continue
		}
		if err := s.store.LeaveGroup(ctx, groupID, m); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, removed, groupErr("chat: remove member", err)
		}
		removed = append(removed, m)
	}
	// Removed first, so that the group fits its bound in between.
	added, err = s.store.AddMembers(ctx, groupID, want, s.cfg.MaxGroupMembers)
	if err != nil {
		return nil, removed, groupErr("chat: add members", err)
	}
	return added, removed, nil
}
