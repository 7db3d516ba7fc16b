package main

import (
	"context"
	"strings"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

var groupCommands = map[string]command{
	"create":   cmdGroupCreate,
	"add":      cmdGroupAdd,
	"leave":    groupCall("group leave", "leave", "left group %s\n", (*client.Client).LeaveGroup),
	"show":     cmdGroupShow,
	"info":     cmdGroupInfo,
	"update":   cmdGroupUpdate,
	"join":     cmdGroupJoin,
	"kick":     cmdGroupKick,
	"role":     cmdGroupRole,
	"transfer": cmdGroupTransfer,
	"disband":  groupCall("group disband", "disband", "disbanded group %s\n", (*client.Client).DisbandGroup),
	"members":  cmdGroupMembers,
	"list":     cmdGroupList,
}

func cmdGroup(ctx context.Context, a *app, args []string) error {
	return subcommand("group", groupCommands, args, func(cmd command, rest []string) error { return cmd(ctx, a, rest) })
}

func cmdGroupCreate(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group create")
	asJSON := fs.Bool("json", false, "print the group as JSON")
	description := fs.String("description", "", "what the group is about")
	avatar := fs.String("avatar", "", "URL of the group's picture")
	open := fs.Bool("open", false, "anyone who knows the group id may join")
	adminsAdd := fs.Bool("admins-add", false, "only admins may add members")
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	members, err := userIDs(ctx, cl, pos[1:])
	if err != nil {
		return err
	}
	req := &starlingv1.CreateGroupRequest{Name: pos[0], MemberIds: members, Description: *description, AvatarUrl: *avatar}
	if *open {
		req.JoinPolicy = starlingv1.JoinPolicy_JOIN_POLICY_OPEN
	}
	if *adminsAdd {
		req.AddPolicy = starlingv1.AddPolicy_ADD_POLICY_ADMINS
	}
	g, err := cl.CreateGroupWith(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"group_id": g.GetGroupId(), "conversation_id": g.GetConversationId(),
			"name": g.GetName(), "member_count": g.GetMemberCount(),
		})
	}
	// The id once: the name is what the other commands take, but a
	// script may want the id, and a name can be shared by two groups.
	return say(a.stdout, "created group #%s (%s) with %s\n", g.GetName(), g.GetGroupId(), count(g.GetMemberCount(), "member"))
}

func cmdGroupAdd(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("group add"), args, 2, -1)
	if err != nil {
		return err
	}
	c, cl, g, err := a.inGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	ids, err := userIDs(ctx, cl, pos[1:])
	if err != nil {
		return err
	}
	added, err := cl.AddMembers(ctx, g.groupID, ids...)
	if err != nil {
		return reword(err, "add to "+g.String())
	}
	if len(added) == 0 {
		return say(a.stdout, "no one added: all were members already\n")
	}
	return say(a.stdout, "added to %s: %s\n", g, names(ctx, newPrinter(a.stdout, cl, c, false), added))
}

// inGroup logs in and resolves the group a command names (its first
// argument); the caller closes the client.
func (a *app) inGroup(ctx context.Context, group string) (*config, *client.Client, target, error) {
	c, cl, err := a.loggedIn()
	if err != nil {
		return nil, nil, target{}, err
	}
	g, err := resolveGroup(ctx, cl, group)
	if err != nil {
		cl.Close()
		return nil, nil, target{}, err
	}
	return c, cl, g, nil
}

// groupCall is a command that takes one group, calls the server with its
// id and prints done with its name: leave, disband. verb says what failed.
func groupCall(name, verb, done string, call func(*client.Client, context.Context, string) error) command {
	return func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags(name), args, 1, 1)
		if err != nil {
			return err
		}
		_, cl, g, err := a.inGroup(ctx, pos[0])
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := call(cl, ctx, g.groupID); err != nil {
			return reword(err, verb+" "+g.String())
		}
		return say(a.stdout, done, g)
	}
}

func cmdGroupShow(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group show")
	asJSON := fs.Bool("json", false, "print the group as JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, cl, t, err := a.inGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	g, members, err := cl.GetGroup(ctx, t.groupID)
	if err != nil {
		return reword(err, "group "+t.String())
	}
	p := newPrinter(a.stdout, cl, c, *asJSON)
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"group_id": g.GetGroupId(), "conversation_id": g.GetConversationId(), "name": g.GetName(),
			"owner_id": g.GetOwnerId(), "member_ids": members, "create_time": g.GetCreateTime().AsTime(),
		})
	}
	// The id, so a person can find it: a name two groups share is
	// refused, and joining an open group takes its id.
	return say(a.stdout, "group #%s (%s)\nowner: %s\nmembers (%d): %s\n",
		g.GetName(), g.GetGroupId(), p.name(ctx, g.GetOwnerId()), len(members), names(ctx, p, members))
}

func names(ctx context.Context, p *printer, ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = p.name(ctx, id)
	}
	return strings.Join(out, ", ")
}
