package chat

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starling-im/starling/client/grouptext"
	"github.com/starling-im/starling/client/textsafe"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// Bounds of a group's info.
const (
	maxGroupName        = 64  // characters
	maxGroupDescription = 512 // characters
	maxAvatarURL        = 512 // bytes
)

// Paging of member and group lists.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// GroupOutcome is what a group change did.
type GroupOutcome struct {
	Group *starlingv1.Group // the group after the change
	// Seq of the system message recording the change; 0 when there was
	// nothing to change (nothing was recorded).
	Seq int64
	// Added: for AddMembers, the users that were not members before.
	Added []string
	// Change is what the system message records (nil: nothing changed).
	Change *starlingv1.GroupChange
	// PreviousOwner is the owner before the change.
	PreviousOwner string
}

// groupOp is one group change: who makes it, whose roles the decision
// needs, and the decision (groupchange.go), taken inside the transaction.
type groupOp struct {
	actor   string
	group   string
	targets []string
	create  *storage.Group // CreateGroup: the group to create
	members []string       // CreateGroup: its first members
	// allMembers: decide needs every active member's role (SetMembers).
	allMembers bool
	// everyone: the change may end every member's membership (disband), so
	// it may store events for users it does not name.
	everyone bool
	// decide returns the edit and the GroupChange recording it; a nil
	// GroupChange means there is nothing to change.
	decide func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error)
}

// changeGroup runs op on the group's send shard (groupops.go) and waits
// for its commit and the fan-out of its system message.
func (s *Service) changeGroup(ctx context.Context, op groupOp) (GroupOutcome, error) {
	var (
		out      GroupOutcome
		decided  bool
		change   *starlingv1.GroupChange
		name     string // the group's name after the change
		evUsers  []string
		contents []*starlingv1.Content
	)
	done := make(chan SendResult, 1)
	p := &pending{
		msg:     storage.NewMessage{ConversationID: storage.GroupConversationID(op.group)},
		groupID: op.group,
		arrived: time.Now(),
		span:    noSpan,
		done:    func(r SendResult) { done <- r },
	}
	p.change = func(ctx context.Context, msg storage.NewMessage) (storage.AppendResult, *starlingv1.Content, error) {
		var content *starlingv1.Content
		// The events are committed and offered under their users' stream
		// locks, as the friend changes' are (events.go: streamLocks).
		unlock := s.lockGroupStreams(op)
		defer unlock()
		res, err := s.store.ChangeGroup(ctx, storage.GroupTx{
			GroupID:    op.group,
			Create:     op.create,
			Members:    op.members,
			Users:      append([]string{op.actor}, op.targets...),
			AllMembers: op.allMembers,
			MaxMembers: s.cfg.MaxGroupMembers,
			Decide: func(st storage.GroupState) (storage.GroupEdit, error) {
				decided, content, change = true, nil, nil
				out.PreviousOwner = st.Group.OwnerID
				edit, ch, err := op.decide(st)
				if err != nil || ch == nil {
					return storage.GroupEdit{}, err
				}
				ch.ActorId = op.actor
				var enc []byte
				if content, enc, err = systemContent(ch); err != nil {
					return storage.GroupEdit{}, err
				}
				m := msg
				m.Content = enc
				edit.Message = &m
				change, name = ch, st.Group.Name
				if ch.GetInfo() != nil {
					name = ch.GetInfo().GetName()
				}
				return edit, nil
			},
			Events: func(seq int64, users []string) ([]storage.NewMessage, error) {
				var msgs []storage.NewMessage
				var err error
				evUsers = users
				msgs, contents, err = s.social.eventMessages(op.actor, "", groupEvents(op.group, name, change, seq, users))
				return msgs, err
			},
		})
		if err != nil || res.Changed {
			// Forget even on error: an ambiguous commit may have changed
			// the members. Other nodes forget too: a removed member must
			// not send through their caches.
			s.members.forget(op.group)
			s.router.GroupChanged(ctx, op.group)
		}
		switch {
		case err != nil && !decided && errors.Is(err, storage.ErrNotFound):
			return storage.AppendResult{}, nil, fmt.Errorf("%w: %q: %w", apierr.GroupNotFound, op.group, err)
		case err != nil:
			return storage.AppendResult{}, nil, groupErr("chat: change group", err)
		}
		out.Group = groupProto(res.Group)
		if res.Changed {
			out.Seq = res.Message.Message.Seq
			out.Change = change
			if change.GetKind() == starlingv1.GroupChange_KIND_MEMBERS_ADDED {
				out.Added = change.GetTargetIds()
			}
			s.groupChanged(op.group, change, res.Message.Message.Seq)
			s.social.deliverEvents(ctx, evUsers, contents, res.Events)
			seq, stored := res.Message.Message.Seq, evUsers
			ev := groupEvent(op.group, name, change, seq)
			p.fannedOut = func(ctx context.Context, members []string) {
				s.tellMembers(ctx, ev, members, stored)
			}
		}
		return res.Message, content, nil
	}
	if err := s.pipe.submit(ctx, p); err != nil {
		return GroupOutcome{}, err
	}
	// The pipeline answers everything it accepted, promptly: no ctx here,
	// so a caller that gave up does not leave the outcome unread.
	r := <-done
	if r.Err != nil {
		return GroupOutcome{}, r.Err
	}
	return out, nil
}

// groupChanged is called once per committed group change, on the group's
// shard, after the commit and before the fan-out of its system message
// (and of its events): the one place to hang what else a change should
// cause.
func (s *Service) groupChanged(group string, change *starlingv1.GroupChange, seq int64) {
	s.log.Debug("group changed", "group", group, "kind", change.GetKind().String(), "actor", change.GetActorId(), "seq", seq)
}

// lockGroupStreams locks the event streams op may store events in: those
// of the users it names (actor, targets, first members), or all of them
// for a change that reaches every member.
func (s *Service) lockGroupStreams(op groupOp) func() {
	if op.everyone {
		return s.social.streams.lockAll()
	}
	users := make([]string, 0, 1+len(op.targets)+len(op.members))
	users = append(append(append(users, op.actor), op.targets...), op.members...)
	return s.social.streams.lock(users...)
}

// groupEvents are the stored events of a committed change at seq, for the
// users whose membership it starts or ends (storage.MembershipChanged):
// who gets which event and why is the contract of GroupEvent
// (event.proto). The change of a MEMBERS_ADDED event names only its user:
// the system message lists everyone, and a copy of the whole list per
// added user would grow with the square of the group.
func groupEvents(group, name string, change *starlingv1.GroupChange, seq int64, users []string) []eventFor {
	out := make([]eventFor, len(users))
	for i, u := range users {
		ev := groupEvent(group, name, change, seq)
		if change.GetKind() == starlingv1.GroupChange_KIND_MEMBERS_ADDED {
			ch := proto.CloneOf(change)
			ch.TargetIds = []string{u}
			ev.GetGroupChanged().Change = ch
		}
		out[i] = eventFor{u, ev}
	}
	return out
}

func groupEvent(group, name string, change *starlingv1.GroupChange, seq int64) *starlingv1.Event {
	return &starlingv1.Event{ActorId: change.GetActorId(), Kind: &starlingv1.Event_GroupChanged{GroupChanged: &starlingv1.GroupEvent{
		GroupId:        group,
		ConversationId: storage.GroupConversationID(group),
		Seq:            seq,
		Change:         change,
		GroupName:      name,
	}}}
}

// tellMembers sends ev, ephemeral, to the online devices of the members a
// change's system message was fanned out to, except the users it stored
// an event for (they have it, and offline too). So every member hears of
// every change as an Event, without a stored event per member: a rename
// of a group of 10,000 would otherwise write 10,000 rows; a member
// offline at the time reads the change as the system message.
func (s *Service) tellMembers(ctx context.Context, ev *starlingv1.Event, members, stored []string) {
	skip := make(map[string]bool, len(stored))
	for _, u := range stored {
		skip[u] = true
	}
	to := make([]string, 0, len(members))
	for _, u := range members {
		if !skip[u] {
			to = append(to, u)
		}
	}
	if len(to) == 0 {
		return
	}
	c, err := eventwire.Content(ev)
	if err != nil {
		s.log.Error("group event: encode", "err", err)
		return
	}
	m := &starlingv1.Message{ConversationId: eventwire.EphemeralConversation, SenderId: eventSender, Content: c, ServerTime: timestamppb.Now()}
	s.router.Deliver(ctx, to, bus.DeviceKey{}, m)
}

// GroupChangeType is the content type of a group's system messages: their
// sender_id is "", and their data an encoded starling.v1.GroupChange.
const GroupChangeType = "starling.group_change"

// systemContent is the content of the system message recording ch, and
// its encoding.
func systemContent(ch *starlingv1.GroupChange) (*starlingv1.Content, []byte, error) {
	data, err := proto.Marshal(ch)
	if err != nil {
		return nil, nil, fmt.Errorf("chat: encode group change: %w", err)
	}
	// The text is for clients that do not read GroupChange: user ids, not
	// names (names change; clients say it with names, as the CLI does).
	c := &starlingv1.Content{Type: GroupChangeType, Text: grouptext.Describe(ch, func(id string) string { return id }), Data: data}
	enc, err := proto.Marshal(c)
	if err != nil {
		return nil, nil, fmt.Errorf("chat: encode group change: %w", err)
	}
	return c, enc, nil
}

func groupProto(g storage.Group) *starlingv1.Group {
	return &starlingv1.Group{
		GroupId:        g.ID,
		ConversationId: storage.GroupConversationID(g.ID),
		Name:           g.Name,
		OwnerId:        g.OwnerID,
		CreateTime:     timestamppb.New(g.CreatedAt),
		MemberCount:    int32(g.MemberCount),
		Description:    g.Description,
		AvatarUrl:      g.AvatarURL,
		JoinPolicy:     joinPolicyProto(g.JoinPolicy),
		AddPolicy:      addPolicyProto(g.AddPolicy),
		Disbanded:      g.Disbanded,
	}
}

// GroupSettings is the info of a new group, or the changes of UpdateGroup
// (nil: unchanged; policies UNSPECIFIED: unchanged).
type GroupSettings struct {
	Name        *string
	Description *string
	AvatarURL   *string
	JoinPolicy  starlingv1.JoinPolicy
	AddPolicy   starlingv1.AddPolicy
}

// apply checks the settings and applies them to g. Errors: BadGroupName,
// BadGroupDescription, BadAvatarURL, BadGroupPolicy.
func (gs GroupSettings) apply(g *storage.Group) error {
	if gs.Name != nil {
		name := strings.TrimSpace(*gs.Name)
		if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxGroupName || textsafe.ContainsUnsafe(name) {
			// Every member sees the name: no control or bidi characters.
			return apierr.BadGroupName
		}
		g.Name = name
	}
	if gs.Description != nil {
		d := strings.TrimSpace(*gs.Description)
		if !utf8.ValidString(d) || utf8.RuneCountInString(d) > maxGroupDescription || textsafe.ContainsUnsafe(strings.ReplaceAll(d, "\n", " ")) {
			return apierr.BadGroupDescription
		}
		g.Description = d
	}
	if gs.AvatarURL != nil {
		if err := checkAvatarURL(*gs.AvatarURL); err != nil {
			return err
		}
		g.AvatarURL = *gs.AvatarURL
	}
	switch gs.JoinPolicy {
	case starlingv1.JoinPolicy_JOIN_POLICY_UNSPECIFIED:
	case starlingv1.JoinPolicy_JOIN_POLICY_INVITE_ONLY:
		g.JoinPolicy = storage.JoinInviteOnly
	case starlingv1.JoinPolicy_JOIN_POLICY_OPEN:
		g.JoinPolicy = storage.JoinOpen
	default:
		return fmt.Errorf("%w: join_policy %d", apierr.BadGroupPolicy, gs.JoinPolicy)
	}
	switch gs.AddPolicy {
	case starlingv1.AddPolicy_ADD_POLICY_UNSPECIFIED:
	case starlingv1.AddPolicy_ADD_POLICY_MEMBERS:
		g.AddPolicy = storage.AddByMembers
	case starlingv1.AddPolicy_ADD_POLICY_ADMINS:
		g.AddPolicy = storage.AddByAdmins
	default:
		return fmt.Errorf("%w: add_policy %d", apierr.BadGroupPolicy, gs.AddPolicy)
	}
	return nil
}

func checkAvatarURL(raw string) error {
	if raw == "" {
		return nil
	}
	if len(raw) > maxAvatarURL || textsafe.ContainsUnsafe(raw) {
		return apierr.BadAvatarURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return apierr.BadAvatarURL
	}
	return nil
}

func joinPolicyProto(p storage.JoinPolicy) starlingv1.JoinPolicy {
	if p == storage.JoinOpen {
		return starlingv1.JoinPolicy_JOIN_POLICY_OPEN
	}
	return starlingv1.JoinPolicy_JOIN_POLICY_INVITE_ONLY
}

func addPolicyProto(p storage.AddPolicy) starlingv1.AddPolicy {
	if p == storage.AddByAdmins {
		return starlingv1.AddPolicy_ADD_POLICY_ADMINS
	}
	return starlingv1.AddPolicy_ADD_POLICY_MEMBERS
}

func roleProto(r storage.GroupRole) starlingv1.GroupRole {
	switch r {
	case storage.RoleOwner:
		return starlingv1.GroupRole_GROUP_ROLE_OWNER
	case storage.RoleAdmin:
		return starlingv1.GroupRole_GROUP_ROLE_ADMIN
	}
	return starlingv1.GroupRole_GROUP_ROLE_MEMBER
}

// CreateGroup creates a group owned by owner with owner and memberIDs; its
// conversation starts with the CREATED system message at seq 1.
func (s *Service) CreateGroup(ctx context.Context, owner string, info GroupSettings, memberIDs []string) (GroupOutcome, error) {
	if info.Name == nil {
		return GroupOutcome{}, apierr.BadGroupName
	}
	g := storage.Group{ID: idgen.Random("g"), OwnerID: owner, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := info.apply(&g); err != nil {
		return GroupOutcome{}, err
	}
	members, err := s.memberList(memberIDs)
	if err != nil {
		return GroupOutcome{}, err
	}
	members = slices.DeleteFunc(members, func(u string) bool { return u == owner })
	if len(members)+1 > s.cfg.MaxGroupMembers {
		return GroupOutcome{}, fmt.Errorf("%w: %d, limit %d", apierr.TooManyMembers, len(members)+1, s.cfg.MaxGroupMembers)
	}
	out, err := s.changeGroup(ctx, groupOp{
		actor: owner, group: g.ID, create: &g, members: append([]string{owner}, members...),
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return createdChange(st)
		},
	})
	if errors.Is(err, apierr.GroupNotFound) {
		// Nothing to find when creating: a member is no user.
		return GroupOutcome{}, fmt.Errorf("%w: %w", apierr.MemberNotFound, err)
	}
	return out, err
}

// UpdateGroup changes a group's info (admins).
func (s *Service) UpdateGroup(ctx context.Context, caller, groupID string, info GroupSettings) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	if err := info.apply(&storage.Group{}); err != nil { // checked before any read
		return GroupOutcome{}, err
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID,
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return infoChange(st, caller, info)
		}})
}

// AddMembers adds users to a group: admins may, and any member when the
// group's add policy allows it.
func (s *Service) AddMembers(ctx context.Context, caller, groupID string, userIDs []string) (GroupOutcome, error) {
	users, err := s.memberList(userIDs)
	if err != nil {
		return GroupOutcome{}, err
	}
	if len(users) == 0 {
		return GroupOutcome{}, apierr.MembersRequired
	}
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID, targets: users,
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return addChange(st, caller, users)
		}})
}

// JoinGroup makes the caller a member of an open group.
func (s *Service) JoinGroup(ctx context.Context, caller, groupID string) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID,
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return joinChange(st, caller)
		}})
}

// KickMember removes another member from a group.
func (s *Service) KickMember(ctx context.Context, caller, groupID, userID string) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	if !validID(userID) {
		return GroupOutcome{}, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(userID))
	}
	if userID == caller {
		return GroupOutcome{}, apierr.KickSelf
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID, targets: []string{userID},
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return kickChange(st, caller, userID)
		}})
}

// LeaveGroup removes the caller from a group. The owner cannot leave.
func (s *Service) LeaveGroup(ctx context.Context, caller, groupID string) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID,
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return leaveChange(st, caller)
		}})
}

// SetMemberRole makes a member an admin or an admin a member (the owner).
func (s *Service) SetMemberRole(ctx context.Context, caller, groupID, userID string, role starlingv1.GroupRole) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	if !validID(userID) {
		return GroupOutcome{}, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(userID))
	}
	var r storage.GroupRole
	switch role {
	case starlingv1.GroupRole_GROUP_ROLE_ADMIN:
		r = storage.RoleAdmin
	case starlingv1.GroupRole_GROUP_ROLE_MEMBER:
		r = storage.RoleMember
	default:
		return GroupOutcome{}, fmt.Errorf("%w: %d", apierr.BadGroupRole, role)
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID, targets: []string{userID},
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return roleChange(st, caller, userID, r)
		}})
}

// TransferOwnership makes another member the owner; the caller becomes an
// admin.
func (s *Service) TransferOwnership(ctx context.Context, caller, groupID, userID string) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	if !validID(userID) {
		return GroupOutcome{}, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(userID))
	}
	if userID == caller {
		return GroupOutcome{}, apierr.TransferToSelf
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID, targets: []string{userID},
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return transferChange(st, caller, userID)
		}})
}

// DisbandGroup ends a group (the owner).
func (s *Service) DisbandGroup(ctx context.Context, caller, groupID string) (GroupOutcome, error) {
	if err := checkGroupID(groupID); err != nil {
		return GroupOutcome{}, err
	}
	return s.changeGroup(ctx, groupOp{actor: caller, group: groupID, everyone: true,
		decide: func(st storage.GroupState) (storage.GroupEdit, *starlingv1.GroupChange, error) {
			return disbandChange(st, caller)
		}})
}

// ForgetGroup drops what this node cached of a group's members, after a
// change made on another node (bus.Handler.GroupChanged). The bus carries
// changes of a pair of users' relation (a block, a friendship) the same
// way, under a key no group id can take (relationKey).
func (s *Service) ForgetGroup(groupID string) {
	if p, ok := parseRelationKey(groupID); ok {
		s.social.relations.forget(p[0], p[1])
		return
	}
	s.members.forget(groupID)
}

// GetGroup returns a group and its members to one of its members.
func (s *Service) GetGroup(ctx context.Context, caller, groupID string) (*starlingv1.Group, []string, error) {
	if err := s.members.requireActive(ctx, groupID, caller); err != nil {
		return nil, nil, err
	}
	g, err := s.store.GetGroup(ctx, groupID)
	if err != nil {
		return nil, nil, groupErr("chat: get group", err)
	}
	set, err := s.store.ListMembers(ctx, groupID)
	if err != nil {
		return nil, nil, groupErr("chat: list members", err)
	}
	g.MemberCount = len(set.Members)
	return groupProto(g), set.Members, nil
}

// ListGroupMembers returns one page of a group's members with their roles
// to one of its members, and the token of the next page ("" at the end).
func (s *Service) ListGroupMembers(ctx context.Context, caller, groupID string, pageSize int32, pageToken string) ([]*starlingv1.GroupMember, string, error) {
	n, after, err := page(pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	if err := s.members.requireActive(ctx, groupID, caller); err != nil {
		return nil, "", err
	}
	ms, err := s.store.ListGroupMembers(ctx, groupID, after, n+1)
	if err != nil {
		return nil, "", groupErr("chat: list group members", err)
	}
	next := ""
	if len(ms) > n {
		ms = ms[:n]
		next = encodeToken(ms[n-1].UserID)
	}
	out := make([]*starlingv1.GroupMember, len(ms))
	for i, m := range ms {
		out[i] = &starlingv1.GroupMember{UserId: m.UserID, Role: roleProto(m.Role), JoinedSeq: m.JoinedSeq}
	}
	return out, next, nil
}

// ListMyGroups returns one page of the groups the caller is a member of,
// and the token of the next page ("" at the end).
func (s *Service) ListMyGroups(ctx context.Context, caller string, pageSize int32, pageToken string) ([]*starlingv1.MyGroup, string, error) {
	n, after, err := page(pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	gs, err := s.store.ListUserGroups(ctx, caller, after, n+1)
	if err != nil {
		return nil, "", apierr.FromStorage("chat: list my groups", err)
	}
	next := ""
	if len(gs) > n {
		gs = gs[:n]
		next = encodeToken(gs[n-1].Group.ID)
	}
	out := make([]*starlingv1.MyGroup, len(gs))
	for i, g := range gs {
		out[i] = &starlingv1.MyGroup{Group: groupProto(g.Group), Role: roleProto(g.Role)}
	}
	return out, next, nil
}

// page checks a page size and token. A token is opaque to clients, the
// last id of the page before (user or group id) in the encoding of the
// friend lists' tokens (friends.go: idToken); any id a client could make
// up is merely a place in the order.
func page(size int32, token string) (int, string, error) {
	after, err := idToken(token)
	switch {
	case size < 0 || size > MaxPageSize:
		return 0, "", fmt.Errorf("%w: %d, want 0-%d", apierr.BadPageSize, size, MaxPageSize)
	case err != nil:
		return 0, "", err
	case size == 0:
		return DefaultPageSize, after, nil
	}
	return int(size), after, nil
}

func checkGroupID(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: group id of %d bytes", apierr.BadConversationID, len(id))
	}
	return nil
}

// memberList checks and de-duplicates user ids given by a client.
func (s *Service) memberList(ids []string) ([]string, error) {
	if len(ids) > s.cfg.MaxGroupMembers {
		return nil, fmt.Errorf("%w: %d, limit %d", apierr.TooManyMembers, len(ids), s.cfg.MaxGroupMembers)
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !validID(id) {
			return nil, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(id))
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

func groupErr(op string, err error) error {
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		return err // a decision's refusal
	case errors.Is(err, storage.ErrGroupFull):
		return fmt.Errorf("%w: %s: %w", apierr.GroupFull, op, err)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s: %w", apierr.MemberNotFound, op, err)
	}
	return apierr.FromStorage(op, err)
}
