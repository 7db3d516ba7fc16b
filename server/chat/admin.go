package chat

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
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

// MemberSpec is one member a backend wants in a group: Role is the role
// to have; GROUP_ROLE_UNSPECIFIED keeps the role a member has (member
// when new); GROUP_ROLE_OWNER moves the ownership to the user.
type MemberSpec struct {
	UserID string
	Role   starlingv1.GroupRole
}

// MembersOutcome is what SetMembers changed.
type MembersOutcome struct {
	Added, Removed, RoleChanged []string
	Group                       *starlingv1.Group // after the changes
}

// SetMembers makes a group's active members exactly want plus its owner,
// with want's roles, for a backend: no caller's membership or role is
// checked. It goes through the same path as a user's group change
// (changeGroup: one ChangeGroup transaction and one system message per
// kind of change, actor SystemUserID), in this order: removals (not of the
// owner), additions, an ownership transfer and the removal of the old
// owner if unlisted, roles to admin, roles to member. Each step
// decides against the group as its own transaction sees it, so a step
// with nothing to change records nothing (a repeated call records
// nothing at all). Errors: BadConversationID, BadUserID, TooManyMembers,
// BadGroupRole, OwnerRoleFixed, GroupNotFound, MemberNotFound, GroupFull,
// GroupDisbanded, Unavailable.
func (s *Service) SetMembers(ctx context.Context, groupID string, want []MemberSpec) (MembersOutcome, error) {
	var out MembersOutcome
	if err := checkGroupID(groupID); err != nil {
		return out, err
	}
	roles, newOwner, err := s.memberSpecs(want)
	if err != nil {
		return out, err
	}
	g, err := s.store.GetGroup(ctx, groupID)
	if errors.Is(err, storage.ErrNotFound) {
		return out, fmt.Errorf("%w: %q", apierr.GroupNotFound, groupID)
	} else if err != nil {
		return out, apierr.FromStorage("chat: get group", err)
	}
	if r, listed := roles[g.OwnerID]; listed && r != starlingv1.GroupRole_GROUP_ROLE_UNSPECIFIED &&
		r != starlingv1.GroupRole_GROUP_ROLE_OWNER && newOwner == "" {
		return out, fmt.Errorf("%w: %q is the owner; list another member as GROUP_ROLE_OWNER", apierr.OwnerRoleFixed, g.OwnerID)
	}
	users := slices.Sorted(maps.Keys(roles))
	steps := []memberStep{
		{all: true, decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return removeUnlisted(st, roles)
		}},
		{targets: users, decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return addChange(systemActor(st), SystemUserID, users)
		}},
	}
	if newOwner != "" {
		// The old owner stayed through the removals; unlisted, it goes
		// after the transfer, so a second call finds nothing to change.
		steps = append(steps, memberStep{targets: []string{newOwner}, all: true, decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return ownerChange(st, newOwner)
		}}, steps[0])
	}
	for _, role := range []starlingv1.GroupRole{starlingv1.GroupRole_GROUP_ROLE_ADMIN, starlingv1.GroupRole_GROUP_ROLE_MEMBER} {
		steps = append(steps, memberStep{targets: users, decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return rolesChange(st, roles, role)
		}})
	}
	for _, step := range steps {
		res, err := s.changeGroup(ctx, groupOp{actor: SystemUserID, group: groupID, targets: step.targets, allMembers: step.all, everyone: step.all, decide: step.decide})
		if errors.Is(err, apierr.GroupNotFound) && out.Group != nil {
			// The group was there a step ago: a member is no user.
			err = fmt.Errorf("%w: %w", apierr.MemberNotFound, err)
		}
		if err != nil {
			return out, err
		}
		out.Group = res.Group
		if res.Change == nil {
			continue
		}
		switch res.Change.GetKind() {
		case starlingv1.GroupChange_KIND_MEMBER_KICKED:
			out.Removed = append(out.Removed, res.Change.GetTargetIds()...)
		case starlingv1.GroupChange_KIND_MEMBERS_ADDED:
			out.Added = res.Change.GetTargetIds()
		case starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED:
			out.RoleChanged = append(out.RoleChanged, res.Change.GetTargetIds()...)
			out.RoleChanged = append(out.RoleChanged, res.PreviousOwner)
		default:
			out.RoleChanged = append(out.RoleChanged, res.Change.GetTargetIds()...)
		}
	}
	return out, nil
}

// memberStep is one change of SetMembers.
type memberStep struct {
	targets []string // whose roles decide needs
	// all: decide needs every active member's role, and may end the
	// membership of users it does not name (their event streams too).
	all    bool
	decide func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error)
}

// ownerChange makes newOwner the owner and the old owner an admin, unless
// newOwner owns the group already.
func ownerChange(st storage.GroupState, newOwner string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := live(st); err != nil || st.Group.OwnerID == newOwner {
		return storage.GroupEdit{}, nil, err
	}
	if _, err := target(st, newOwner); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	return storage.GroupEdit{Roles: map[string]storage.GroupRole{newOwner: storage.RoleOwner, st.Group.OwnerID: storage.RoleAdmin}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED,
		TargetIds: []string{newOwner},
		Role:      starlingv1.GroupRole_GROUP_ROLE_OWNER,
	}, nil
}

// memberSpecs checks a backend's member list: valid, unique ids, known
// roles, at most one owner. It returns each user's role and the user
// listed as owner ("" for none).
func (s *Service) memberSpecs(want []MemberSpec) (map[string]starlingv1.GroupRole, string, error) {
	if len(want) > s.cfg.MaxGroupMembers {
		return nil, "", fmt.Errorf("%w: %d, limit %d", apierr.TooManyMembers, len(want), s.cfg.MaxGroupMembers)
	}
	roles := make(map[string]starlingv1.GroupRole, len(want))
	owner := ""
	for _, m := range want {
		if !validID(m.UserID) || m.UserID == SystemUserID {
			return nil, "", fmt.Errorf("%w: %q", apierr.BadUserID, m.UserID)
		}
		if _, dup := roles[m.UserID]; dup {
			return nil, "", fmt.Errorf("%w: %q is listed twice", apierr.BadUserID, m.UserID)
		}
		switch m.Role {
		case starlingv1.GroupRole_GROUP_ROLE_UNSPECIFIED, starlingv1.GroupRole_GROUP_ROLE_MEMBER, starlingv1.GroupRole_GROUP_ROLE_ADMIN:
		case starlingv1.GroupRole_GROUP_ROLE_OWNER:
			if owner != "" {
				return nil, "", fmt.Errorf("%w: two owners (%q, %q)", apierr.BadGroupRole, owner, m.UserID)
			}
			owner = m.UserID
		default:
			return nil, "", fmt.Errorf("%w: %d", apierr.BadGroupRole, m.Role)
		}
		roles[m.UserID] = m.Role
	}
	return roles, owner, nil
}

// systemActor is st as the rules see a backend's change: SystemUserID is
// an owner of every live group (the rules still refuse what nobody may
// do, such as removing the owner).
func systemActor(st storage.GroupState) storage.GroupState {
	roles := maps.Clone(st.Roles)
	if roles == nil {
		roles = map[string]storage.GroupRole{}
	}
	roles[SystemUserID] = storage.RoleOwner
	st.Roles = roles
	return st
}

// removeUnlisted removes the active members missing from roles, but the
// owner (st holds every active member: GroupTx.AllMembers).
func removeUnlisted(st storage.GroupState, roles map[string]starlingv1.GroupRole) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := live(st); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	var remove []string
	for u := range st.Roles {
		if _, listed := roles[u]; !listed && u != st.Group.OwnerID {
			remove = append(remove, u)
		}
	}
	if len(remove) == 0 {
		return storage.GroupEdit{}, nil, nil
	}
	slices.Sort(remove)
	return storage.GroupEdit{Remove: remove}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_MEMBER_KICKED,
		TargetIds: remove,
	}, nil
}

// rolesChange gives role to the active members roles lists with it, who
// have another (never the owner: its role moves only by a transfer).
func rolesChange(st storage.GroupState, roles map[string]starlingv1.GroupRole, role starlingv1.GroupRole) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := live(st); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	to := storage.RoleMember
	if role == starlingv1.GroupRole_GROUP_ROLE_ADMIN {
		to = storage.RoleAdmin
	}
	edit := storage.GroupEdit{Roles: map[string]storage.GroupRole{}}
	var targets []string
	for u, want := range roles {
		if r, member := st.Roles[u]; want == role && member && r != storage.RoleOwner && r != to {
			edit.Roles[u] = to
			targets = append(targets, u)
		}
	}
	if len(targets) == 0 {
		return storage.GroupEdit{}, nil, nil
	}
	slices.Sort(targets)
	return edit, &starlingv1.GroupChange{Kind: starlingv1.GroupChange_KIND_ROLE_CHANGED, TargetIds: targets, Role: role}, nil
}
