package main

import (
	"context"
	"strings"

	"github.com/starling-im/starling/client"
)

var groupCommands = map[string]command{
	"create": cmdGroupCreate,
	"add":    cmdGroupAdd,
	"leave":  cmdGroupLeave,
	"show":   cmdGroupShow,
}

func cmdGroup(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		return usageErrorf("group: create, add, leave or show (see 'starling help')")
	}
	cmd, ok := groupCommands[args[0]]
	if !ok {
		return usageErrorf("group: unknown command %q (create, add, leave or show)", args[0])
	}
	return cmd(ctx, a, args[1:])
}

func cmdGroupCreate(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group create")
	asJSON := fs.Bool("json", false, "print the group as JSON")
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
	g, err := cl.CreateGroup(ctx, pos[0], members...)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"group_id": g.GetGroupId(), "conversation_id": g.GetConversationId(),
			"name": g.GetName(), "member_count": g.GetMemberCount(),
		})
	}
	return say(a.stdout, "created group %s \"%s\" with %d members\n", g.GetGroupId(), g.GetName(), g.GetMemberCount())
}

func cmdGroupAdd(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("group add"), args, 2, -1)
	if err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	ids, err := userIDs(ctx, cl, pos[1:])
	if err != nil {
		return err
	}
	added, err := cl.AddMembers(ctx, pos[0], ids...)
	if err != nil {
		return err
	}
	if len(added) == 0 {
		return say(a.stdout, "no one added: all were members already\n")
	}
	return say(a.stdout, "added to %s: %s\n", pos[0], names(ctx, newPrinter(a.stdout, cl, c, false), added))
}

func cmdGroupLeave(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("group leave"), args, 1, 1)
	if err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.LeaveGroup(ctx, pos[0]); err != nil {
		return err
	}
	return say(a.stdout, "left group %s\n", pos[0])
}

func cmdGroupShow(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group show")
	asJSON := fs.Bool("json", false, "print the group as JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	g, members, err := cl.GetGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	p := newPrinter(a.stdout, cl, c, *asJSON)
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"group_id": g.GetGroupId(), "conversation_id": g.GetConversationId(), "name": g.GetName(),
			"owner_id": g.GetOwnerId(), "member_ids": members, "create_time": g.GetCreateTime().AsTime(),
		})
	}
	return say(a.stdout, "group %s \"%s\" (%s)\nowner: %s\nmembers (%d): %s\n",
		g.GetGroupId(), g.GetName(), client.GroupConversationID(g.GetGroupId()),
		p.name(ctx, g.GetOwnerId()), len(members), names(ctx, p, members))
}

func names(ctx context.Context, p *printer, ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = p.name(ctx, id)
	}
	return strings.Join(out, ", ")
}
