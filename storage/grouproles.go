package storage

import "slices"

// GroupRole is a member's role in a group. The owner is the group's
// OwnerID (one per group by construction); memberships store whether the
// others are admins.
type GroupRole int

// Group roles, in ascending power.
const (
	RoleMember GroupRole = iota
	RoleAdmin
	RoleOwner
)

// JoinPolicy says who may join a group without being added. Stored as
// this value: the zero value is the default of groups made before roles.
type JoinPolicy int

// Join policies.
const (
	JoinInviteOnly JoinPolicy = iota // only users added by a member join
	JoinOpen                         // anyone who knows the id may join
)

// AddPolicy says who may add members. Stored as this value; the zero value
// is how every group behaved before roles.
type AddPolicy int

// Add policies.
const (
	AddByMembers AddPolicy = iota // any member may add
	AddByAdmins                   // admins and the owner only
)

// GroupMember is one active member with their role.
type GroupMember struct {
	UserID string
	Role   GroupRole
	// JoinedSeq is where the current membership period starts.
	JoinedSeq int64
}

// UserGroup is a group a user is a member of, with the user's role.
type UserGroup struct {
	Group Group // with MemberCount
	Role  GroupRole
}

// GroupTx is one change to a group, made in one transaction with the
// system message that records it. The decision is taken inside the
// transaction (Decide), so rules like "only admins kick" hold against
// concurrent changes: a role or membership changed by another transaction
// is seen, or the two conflict and one is retried.
type GroupTx struct {
	GroupID string
	// Create, if not nil, creates the group first (its ID must be
	// GroupID), with its conversation at membership epoch 1 and Members
	// (the owner among them) joining at seq 0; Create.OwnerID is the owner.
	Create  *Group
	Members []string
	// Users are those whose current roles Decide needs (the actor, the
	// targets).
	Users []string
	// AllMembers gives Decide the roles of every active member besides
	// Users' (a backend setting the whole member list).
	AllMembers bool
	// MaxMembers bounds the active members after the change (<= 0: no
	// bound).
	MaxMembers int
	// Decide sees the group as it is in the transaction and says what to
	// change; an error aborts the transaction and is returned. It may run
	// more than once (the transaction is retried on conflicts), so it must
	// only compute.
	Decide func(GroupState) (GroupEdit, error)
	// Events, if not nil, is called in the transaction once the system
	// message has its seq, with the users whose membership the change
	// starts or ends (MembershipChanged), and returns the events to store
	// for them: messages of their event streams (EventsConversationID,
	// Members set to the stream's user), appended in the SAME transaction,
	// so the change and its events are committed together or not at all.
	// Like Decide it may run more than once and must only compute.
	Events func(seq int64, users []string) ([]NewMessage, error)
}

// GroupState is what Decide sees.
type GroupState struct {
	Group Group // with MemberCount
	// Roles of the GroupTx's Users that are active members (absent: not a
	// member now); with AllMembers, of every active member.
	Roles map[string]GroupRole
}

// GroupEdit is what one change does. It is applied in this order: info,
// roles, adds (joining at the latest seq, so they read the message), the
// message, then removals and disbanding (ending at the message's seq, so
// those removed read it last).
type GroupEdit struct {
	// Info, if not nil, replaces the name, description, avatar URL and
	// policies.
	Info *Group
	// Roles sets active members' roles. RoleOwner makes the user the
	// owner; the old owner must be given RoleAdmin or RoleMember in the
	// same edit.
	Roles map[string]GroupRole
	// Add makes users (not active members now) members with RoleMember.
	Add []string
	// Remove ends active members' periods at the message's seq.
	Remove []string
	// Disband ends every active period at the message's seq and marks the
	// group disbanded.
	Disband bool
	// Message is the system message recording the change (its seq is
	// assigned here). nil: there is nothing to change; nothing is written.
	Message *NewMessage
}

// GroupTxResult is the outcome of ChangeGroup.
type GroupTxResult struct {
	// Group after the change, with MemberCount.
	Group Group
	// Message is the stored system message (zero when the edit had none).
	Message AppendResult
	// Changed is false when Decide returned no message: nothing was
	// written.
	Changed bool
	// Events are the stored events (GroupTx.Events), in the order Events
	// returned them.
	Events []AppendResult
}

// MembershipChanged is who a committed edit starts or ends the membership
// of, sorted and without repeats: the first members of a created group,
// the users added, the users removed, and on disbanding every member
// active before it (disbanded, which the backend reads in the
// transaction).
func MembershipChanged(gt GroupTx, edit GroupEdit, disbanded []string) []string {
	var users []string
	if gt.Create != nil {
		users = append(users, gt.Members...)
	}
	users = append(users, edit.Add...)
	users = append(users, edit.Remove...)
	users = append(users, disbanded...)
	slices.Sort(users)
	return slices.Compact(users)
}

// MemberRole is the role of an active member of g whose membership row says
// admin or not: the owner is g.OwnerID, whatever the row says.
func MemberRole(g Group, user string, stored GroupRole) GroupRole {
	switch {
	case user == g.OwnerID:
		return RoleOwner
	case stored == RoleAdmin:
		return RoleAdmin
	}
	return RoleMember
}
