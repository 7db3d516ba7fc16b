package gateway

import (
	"context"
	"log/slog"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/chat"
)

// GroupServer serves starling.v1.GroupService.
type GroupServer struct {
	starlingv1.UnimplementedGroupServiceServer
	Chat *chat.Service
	Log  *slog.Logger
}

// groupCall runs one group RPC for the authenticated caller and maps its
// error to a status.
func groupCall[T any](ctx context.Context, log *slog.Logger, call func(caller string) (T, error)) (T, error) {
	id, err := identity(ctx)
	if err != nil {
		var zero T
		return zero, toError(log, err)
	}
	out, err := call(id.UserID)
	if err != nil {
		var zero T
		return zero, toError(log, err)
	}
	return out, nil
}

// CreateGroup creates a group owned by the caller.
func (s *GroupServer) CreateGroup(ctx context.Context, req *starlingv1.CreateGroupRequest) (*starlingv1.CreateGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.CreateGroupResponse, error) {
		name, desc, avatar := req.GetName(), req.GetDescription(), req.GetAvatarUrl()
		out, err := s.Chat.CreateGroup(ctx, caller, chat.GroupSettings{
			Name: &name, Description: &desc, AvatarURL: &avatar,
			JoinPolicy: req.GetJoinPolicy(), AddPolicy: req.GetAddPolicy(),
		}, req.GetMemberIds())
		return &starlingv1.CreateGroupResponse{Group: out.Group}, err
	})
}

// AddMembers adds users to a group.
func (s *GroupServer) AddMembers(ctx context.Context, req *starlingv1.AddMembersRequest) (*starlingv1.AddMembersResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.AddMembersResponse, error) {
		out, err := s.Chat.AddMembers(ctx, caller, req.GetGroupId(), req.GetUserIds())
		return &starlingv1.AddMembersResponse{AddedUserIds: out.Added, ChangeSeq: out.Seq}, err
	})
}

// LeaveGroup removes the caller from a group.
func (s *GroupServer) LeaveGroup(ctx context.Context, req *starlingv1.LeaveGroupRequest) (*starlingv1.LeaveGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.LeaveGroupResponse, error) {
		out, err := s.Chat.LeaveGroup(ctx, caller, req.GetGroupId())
		return &starlingv1.LeaveGroupResponse{ChangeSeq: out.Seq}, err
	})
}

// GetGroup returns a group and its members.
func (s *GroupServer) GetGroup(ctx context.Context, req *starlingv1.GetGroupRequest) (*starlingv1.GetGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.GetGroupResponse, error) {
		g, members, err := s.Chat.GetGroup(ctx, caller, req.GetGroupId())
		return &starlingv1.GetGroupResponse{Group: g, MemberIds: members}, err
	})
}

// UpdateGroup changes a group's info.
func (s *GroupServer) UpdateGroup(ctx context.Context, req *starlingv1.UpdateGroupRequest) (*starlingv1.UpdateGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.UpdateGroupResponse, error) {
		out, err := s.Chat.UpdateGroup(ctx, caller, req.GetGroupId(), chat.GroupSettings{
			Name: req.Name, Description: req.Description, AvatarURL: req.AvatarUrl,
			JoinPolicy: req.GetJoinPolicy(), AddPolicy: req.GetAddPolicy(),
		})
		return &starlingv1.UpdateGroupResponse{Group: out.Group, ChangeSeq: out.Seq}, err
	})
}

// JoinGroup joins an open group.
func (s *GroupServer) JoinGroup(ctx context.Context, req *starlingv1.JoinGroupRequest) (*starlingv1.JoinGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.JoinGroupResponse, error) {
		out, err := s.Chat.JoinGroup(ctx, caller, req.GetGroupId())
		return &starlingv1.JoinGroupResponse{Group: out.Group, ChangeSeq: out.Seq}, err
	})
}

// KickMember removes a member.
func (s *GroupServer) KickMember(ctx context.Context, req *starlingv1.KickMemberRequest) (*starlingv1.KickMemberResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.KickMemberResponse, error) {
		out, err := s.Chat.KickMember(ctx, caller, req.GetGroupId(), req.GetUserId())
		return &starlingv1.KickMemberResponse{ChangeSeq: out.Seq}, err
	})
}

// SetMemberRole changes a member's role.
func (s *GroupServer) SetMemberRole(ctx context.Context, req *starlingv1.SetMemberRoleRequest) (*starlingv1.SetMemberRoleResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.SetMemberRoleResponse, error) {
		out, err := s.Chat.SetMemberRole(ctx, caller, req.GetGroupId(), req.GetUserId(), req.GetRole())
		return &starlingv1.SetMemberRoleResponse{ChangeSeq: out.Seq}, err
	})
}

// TransferOwnership hands the group to another member.
func (s *GroupServer) TransferOwnership(ctx context.Context, req *starlingv1.TransferOwnershipRequest) (*starlingv1.TransferOwnershipResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.TransferOwnershipResponse, error) {
		out, err := s.Chat.TransferOwnership(ctx, caller, req.GetGroupId(), req.GetUserId())
		return &starlingv1.TransferOwnershipResponse{ChangeSeq: out.Seq}, err
	})
}

// DisbandGroup ends a group.
func (s *GroupServer) DisbandGroup(ctx context.Context, req *starlingv1.DisbandGroupRequest) (*starlingv1.DisbandGroupResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.DisbandGroupResponse, error) {
		out, err := s.Chat.DisbandGroup(ctx, caller, req.GetGroupId())
		return &starlingv1.DisbandGroupResponse{ChangeSeq: out.Seq}, err
	})
}

// ListGroupMembers returns one page of members.
func (s *GroupServer) ListGroupMembers(ctx context.Context, req *starlingv1.ListGroupMembersRequest) (*starlingv1.ListGroupMembersResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.ListGroupMembersResponse, error) {
		ms, next, err := s.Chat.ListGroupMembers(ctx, caller, req.GetGroupId(), req.GetPageSize(), req.GetPageToken())
		return &starlingv1.ListGroupMembersResponse{Members: ms, NextPageToken: next}, err
	})
}

// ListMyGroups returns one page of the caller's groups.
func (s *GroupServer) ListMyGroups(ctx context.Context, req *starlingv1.ListMyGroupsRequest) (*starlingv1.ListMyGroupsResponse, error) {
	return groupCall(ctx, s.Log, func(caller string) (*starlingv1.ListMyGroupsResponse, error) {
		gs, next, err := s.Chat.ListMyGroups(ctx, caller, req.GetPageSize(), req.GetPageToken())
		return &starlingv1.ListMyGroupsResponse{Groups: gs, NextPageToken: next}, err
	})
}
