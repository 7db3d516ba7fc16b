package chat

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// The rules of group changes, one function per operation: each sees the
// group as it is inside the change's transaction (storage.GroupState) and
// returns the edit to make and the GroupChange that records it (the
// payload of the system message), or the refusal. A nil GroupChange means
// there is nothing to change. The actor is set by the caller.
//
// Who may do what (proto/starling/v1/group.proto, GroupService):
// admins and the owner update info, add (members too under
// ADD_POLICY_MEMBERS) and kick members; only the owner kicks admins, sets
// roles, transfers ownership and disbands; nobody kicks the owner, and
// the owner does not leave.

// live refuses changes to a disbanded group.
func live(st storage.GroupState) error {
	if st.Group.Disbanded {
		return fmt.Errorf("%w: %s", apierr.GroupDisbanded, st.Group.ID)
	}
	return nil
}

// actorRole is the role of the actor, who must be an active member of a
// live group. Errors: GroupDisbanded, NotMember.
func actorRole(st storage.GroupState, actor string) (storage.GroupRole, error) {
	if err := live(st); err != nil {
		return 0, err
	}
	r, ok := st.Roles[actor]
	if !ok {
		return 0, apierr.NotMember
	}
	return r, nil
}

// atLeast refuses an actor below min (NotMember, NotGroupAdmin,
// NotGroupOwner, GroupDisbanded).
func atLeast(st storage.GroupState, actor string, min storage.GroupRole) error {
	r, err := actorRole(st, actor)
	switch {
	case err != nil:
		return err
	case r >= min:
		return nil
	case min == storage.RoleOwner:
		return apierr.NotGroupOwner
	}
	return apierr.NotGroupAdmin
}

// target returns the role of a user a change is made to, who must be an
// active member. Error: TargetNotMember.
func target(st storage.GroupState, user string) (storage.GroupRole, error) {
	r, ok := st.Roles[user]
	if !ok {
		return 0, fmt.Errorf("%w: %q", apierr.TargetNotMember, user)
	}
	return r, nil
}

func infoOf(g storage.Group) *starlingv1.GroupInfo {
	return &starlingv1.GroupInfo{
		Name:        g.Name,
		Description: g.Description,
		AvatarUrl:   g.AvatarURL,
		JoinPolicy:  joinPolicyProto(g.JoinPolicy),
		AddPolicy:   addPolicyProto(g.AddPolicy),
	}
}

// createdChange records the creation: the first message of every group
// (seq 1; the first members join at seq 0, so they read it). It names no
// members: a group may start with thousands, and the member list has them.
func createdChange(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	return storage.GroupEdit{}, &starlingv1.GroupChange{
		Kind: starlingv1.GroupChange_KIND_CREATED,
		Info: infoOf(st.Group),
	}, nil
}

func infoChange(st storage.GroupState, actor string, info GroupSettings) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := atLeast(st, actor, storage.RoleAdmin); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	g := st.Group
	if err := info.apply(&g); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	if proto.Equal(infoOf(g), infoOf(st.Group)) {
		return storage.GroupEdit{}, nil, nil // nothing changes
	}
	return storage.GroupEdit{Info: &g}, &starlingv1.GroupChange{
		Kind: starlingv1.GroupChange_KIND_INFO_UPDATED,
		Info: infoOf(g),
	}, nil
}

func addChange(st storage.GroupState, actor string, users []string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	min := storage.RoleMember
	if st.Group.AddPolicy == storage.AddByAdmins {
		min = storage.RoleAdmin
	}
	if err := atLeast(st, actor, min); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	var add []string
	for _, u := range users {
		if _, member := st.Roles[u]; !member {
			add = append(add, u)
		}
	}
	if len(add) == 0 {
		return storage.GroupEdit{}, nil, nil // everyone is a member already
	}
	return storage.GroupEdit{Add: add}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_MEMBERS_ADDED,
		TargetIds: add,
	}, nil
}

func joinChange(st storage.GroupState, actor string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := live(st); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	if _, member := st.Roles[actor]; member {
		return storage.GroupEdit{}, nil, apierr.AlreadyMember
	}
	if st.Group.JoinPolicy != storage.JoinOpen {
		return storage.GroupEdit{}, nil, apierr.GroupInviteOnly
	}
	return storage.GroupEdit{Add: []string{actor}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_MEMBER_JOINED,
		TargetIds: []string{actor},
	}, nil
}

func kickChange(st storage.GroupState, actor, user string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := atLeast(st, actor, storage.RoleAdmin); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	r, err := target(st, user)
	switch {
	case err != nil:
		return storage.GroupEdit{}, nil, err
	case r == storage.RoleOwner:
		return storage.GroupEdit{}, nil, apierr.KickOwner
	case r == storage.RoleAdmin && st.Roles[actor] != storage.RoleOwner:
		return storage.GroupEdit{}, nil, fmt.Errorf("%w: kicking an admin", apierr.NotGroupOwner)
	}
	return storage.GroupEdit{Remove: []string{user}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_MEMBER_KICKED,
		TargetIds: []string{user},
	}, nil
}

func leaveChange(st storage.GroupState, actor string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	r, err := actorRole(st, actor)
	switch {
	case err != nil:
		return storage.GroupEdit{}, nil, err
	case r == storage.RoleOwner:
		return storage.GroupEdit{}, nil, apierr.OwnerCannotLeave
	}
	return storage.GroupEdit{Remove: []string{actor}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_MEMBER_LEFT,
		TargetIds: []string{actor},
	}, nil
}

func roleChange(st storage.GroupState, actor, user string, role storage.GroupRole) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := atLeast(st, actor, storage.RoleOwner); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	r, err := target(st, user)
	switch {
	case err != nil:
		return storage.GroupEdit{}, nil, err
	case r == storage.RoleOwner:
		return storage.GroupEdit{}, nil, apierr.OwnerRoleFixed
	case r == role:
		return storage.GroupEdit{}, nil, nil // has it already
	}
	return storage.GroupEdit{Roles: map[string]storage.GroupRole{user: role}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_ROLE_CHANGED,
		TargetIds: []string{user},
		Role:      roleProto(role),
	}, nil
}

func transferChange(st storage.GroupState, actor, user string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := atLeast(st, actor, storage.RoleOwner); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	if _, err := target(st, user); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	return storage.GroupEdit{Roles: map[string]storage.GroupRole{user: storage.RoleOwner, actor: storage.RoleAdmin}}, &starlingv1.GroupChange{
		Kind:      starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED,
		TargetIds: []string{user},
		Role:      starlingv1.GroupRole_GROUP_ROLE_OWNER,
	}, nil
}

func disbandChange(st storage.GroupState, actor string) (storage.GroupEdit, *starlingv1.GroupChange, error) {
	if err := atLeast(st, actor, storage.RoleOwner); err != nil {
		return storage.GroupEdit{}, nil, err
	}
	return storage.GroupEdit{Disband: true}, &starlingv1.GroupChange{
		Kind: starlingv1.GroupChange_KIND_DISBANDED,
	}, nil
}
