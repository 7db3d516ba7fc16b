package client

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// CreateGroup creates a group owned by the caller, with the caller and
// memberIDs as members (invite only; any member may add others).
func (c *Client) CreateGroup(ctx context.Context, name string, memberIDs ...string) (*starlingv1.Group, error) {
	return c.CreateGroupWith(ctx, &starlingv1.CreateGroupRequest{Name: name, MemberIds: memberIDs})
}

// CreateGroupWith creates a group with everything CreateGroupRequest can
// say: description, avatar URL, join and add policies.
func (c *Client) CreateGroupWith(ctx context.Context, req *starlingv1.CreateGroupRequest) (*starlingv1.Group, error) {
	resp, err := c.groups.CreateGroup(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create group %q: %w", req.GetName(), err)
	}
	return resp.GetGroup(), nil
}

// AddMembers adds users to a group and returns those that were not members
// before.
func (c *Client) AddMembers(ctx context.Context, groupID string, userIDs ...string) ([]string, error) {
	resp, err := c.groups.AddMembers(ctx, &starlingv1.AddMembersRequest{GroupId: groupID, UserIds: userIDs})
	if err != nil {
		return nil, fmt.Errorf("add members to group %q: %w", groupID, err)
	}
	return resp.GetAddedUserIds(), nil
}

// LeaveGroup removes the caller from a group (the owner must transfer
// ownership first).
func (c *Client) LeaveGroup(ctx context.Context, groupID string) error {
	if _, err := c.groups.LeaveGroup(ctx, &starlingv1.LeaveGroupRequest{GroupId: groupID}); err != nil {
		return fmt.Errorf("leave group %q: %w", groupID, err)
	}
	return nil
}

// GetGroup returns a group and its current members' user ids.
func (c *Client) GetGroup(ctx context.Context, groupID string) (*starlingv1.Group, []string, error) {
	resp, err := c.groups.GetGroup(ctx, &starlingv1.GetGroupRequest{GroupId: groupID})
	if err != nil {
		return nil, nil, fmt.Errorf("get group %q: %w", groupID, err)
	}
	return resp.GetGroup(), resp.GetMemberIds(), nil
}

// UpdateGroup changes a group's info (admins): the fields set in req.
func (c *Client) UpdateGroup(ctx context.Context, req *starlingv1.UpdateGroupRequest) (*starlingv1.Group, error) {
	resp, err := c.groups.UpdateGroup(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("update group %q: %w", req.GetGroupId(), err)
	}
	return resp.GetGroup(), nil
}

// JoinGroup makes the caller a member of an open group.
func (c *Client) JoinGroup(ctx context.Context, groupID string) (*starlingv1.Group, error) {
	resp, err := c.groups.JoinGroup(ctx, &starlingv1.JoinGroupRequest{GroupId: groupID})
	if err != nil {
		return nil, fmt.Errorf("join group %q: %w", groupID, err)
	}
	return resp.GetGroup(), nil
}

// KickMember removes a member from a group (admins; the owner for admins).
func (c *Client) KickMember(ctx context.Context, groupID, userID string) error {
	if _, err := c.groups.KickMember(ctx, &starlingv1.KickMemberRequest{GroupId: groupID, UserId: userID}); err != nil {
		return fmt.Errorf("kick %q from group %q: %w", userID, groupID, err)
	}
	return nil
}

// SetMemberRole makes a member an admin (GROUP_ROLE_ADMIN) or an admin a
// member (GROUP_ROLE_MEMBER); the owner only.
func (c *Client) SetMemberRole(ctx context.Context, groupID, userID string, role starlingv1.GroupRole) error {
	if _, err := c.groups.SetMemberRole(ctx, &starlingv1.SetMemberRoleRequest{GroupId: groupID, UserId: userID, Role: role}); err != nil {
		return fmt.Errorf("set the role of %q in group %q: %w", userID, groupID, err)
	}
	return nil
}

// TransferOwnership makes another member the owner; the caller becomes an
// admin.
func (c *Client) TransferOwnership(ctx context.Context, groupID, userID string) error {
	if _, err := c.groups.TransferOwnership(ctx, &starlingv1.TransferOwnershipRequest{GroupId: groupID, UserId: userID}); err != nil {
		return fmt.Errorf("transfer group %q to %q: %w", groupID, userID, err)
	}
	return nil
}

// DisbandGroup ends a group (the owner only).
func (c *Client) DisbandGroup(ctx context.Context, groupID string) error {
	if _, err := c.groups.DisbandGroup(ctx, &starlingv1.DisbandGroupRequest{GroupId: groupID}); err != nil {
		return fmt.Errorf("disband group %q: %w", groupID, err)
	}
	return nil
}

// ListGroupMembers returns one page of a group's members with their roles,
// by user id, and the token of the next page ("" after the last). A
// pageSize of 0 asks for the server's default.
func (c *Client) ListGroupMembers(ctx context.Context, groupID string, pageSize int32, pageToken string) ([]*starlingv1.GroupMember, string, error) {
	resp, err := c.groups.ListGroupMembers(ctx, &starlingv1.ListGroupMembersRequest{GroupId: groupID, PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("list members of group %q: %w", groupID, err)
	}
	return resp.GetMembers(), resp.GetNextPageToken(), nil
}

// ListMyGroups returns one page of the caller's groups with the caller's
// role, by group id, and the token of the next page ("" after the last).
func (c *Client) ListMyGroups(ctx context.Context, pageSize int32, pageToken string) ([]*starlingv1.MyGroup, string, error) {
	resp, err := c.groups.ListMyGroups(ctx, &starlingv1.ListMyGroupsRequest{PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("list my groups: %w", err)
	}
	return resp.GetGroups(), resp.GetNextPageToken(), nil
}

// GroupChangeType is the content type of a group's system messages.
const GroupChangeType = "starling.group_change"

// GroupChangeOf returns the change a group's system message records, and
// false for any other message. A system message has sender_id "" (no user
// has it) and content of GroupChangeType, which the server refuses from
// clients; so a message that passes is the server's.
func GroupChangeOf(m *starlingv1.Message) (*starlingv1.GroupChange, bool) {
	if m.GetSenderId() != "" || m.GetContent().GetType() != GroupChangeType {
		return nil, false
	}
	ch := new(starlingv1.GroupChange)
	if err := proto.Unmarshal(m.GetContent().GetData(), ch); err != nil {
		return nil, false
	}
	return ch, true
}
