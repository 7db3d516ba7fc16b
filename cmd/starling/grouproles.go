package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/starling-im/starling/client"
	"github.com/starling-im/starling/client/grouptext"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// roleName is how the CLI names a group role.
func roleName(r starlingv1.GroupRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "GROUP_ROLE_"))
}

func joinPolicyName(p starlingv1.JoinPolicy) string {
	if p == starlingv1.JoinPolicy_JOIN_POLICY_OPEN {
		return "open"
	}
	return "invite only"
}

func addPolicyName(p starlingv1.AddPolicy) string {
	if p == starlingv1.AddPolicy_ADD_POLICY_ADMINS {
		return "admins"
	}
	return "any member"
}

// onMember runs a command of the form "<group> <username>": it resolves
// both, calls do with the group and user ids, and prints done (formatted
// with the username and the group's name). failed (formatted alike) says
// what failed.
func onMember(ctx context.Context, a *app, name string, args []string, do func(cl *client.Client, group, user string) error, done, failed string) error {
	pos, err := parse(newFlags(name), args, 2, 2)
	if err != nil {
		return err
	}
	_, cl, g, err := a.inGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	user, err := userID(ctx, cl, pos[1])
	if err != nil {
		return err
	}
	if err := do(cl, g.groupID, user); err != nil {
		return reword(err, fmt.Sprintf(failed, pos[1], g))
	}
	return say(a.stdout, done, pos[1], g)
}

func cmdGroupInfo(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group info")
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
	g, _, err := cl.GetGroup(ctx, t.groupID)
	if err != nil {
		return reword(err, "group "+t.String())
	}
	role := starlingv1.GroupRole_GROUP_ROLE_MEMBER
	err = allPages(func(token string) ([]*starlingv1.GroupMember, string, error) {
		return cl.ListGroupMembers(ctx, t.groupID, 0, token)
	}, func(m *starlingv1.GroupMember) error {
		if m.GetUserId() == c.UserID {
			role = m.GetRole()
		}
		return nil
	})
	if err != nil {
		return reword(err, "members of "+t.String())
	}
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"group_id": g.GetGroupId(), "conversation_id": g.GetConversationId(), "name": g.GetName(),
			"description": g.GetDescription(), "avatar_url": g.GetAvatarUrl(), "owner_id": g.GetOwnerId(),
			"member_count": g.GetMemberCount(), "join_policy": joinPolicyName(g.GetJoinPolicy()),
			"add_policy": addPolicyName(g.GetAddPolicy()), "my_role": roleName(role), "create_time": g.GetCreateTime().AsTime(),
		})
	}
	p := newPrinter(a.stdout, cl, c, false)
	// The id, as group show prints it.
	return say(a.stdout, "group #%s (%s)\ndescription: %s\navatar: %s\nowner: %s\nmembers: %d\njoin: %s; who adds: %s\nyour role: %s\n",
		g.GetName(), g.GetGroupId(), g.GetDescription(), g.GetAvatarUrl(),
		p.name(ctx, g.GetOwnerId()), g.GetMemberCount(), joinPolicyName(g.GetJoinPolicy()), addPolicyName(g.GetAddPolicy()), roleName(role))
}

func cmdGroupUpdate(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group update")
	var set = map[string]*string{}
	for _, f := range []string{"name", "description", "avatar", "join", "add"} {
		set[f] = nil
		fs.Func(f, "new "+f, func(v string) error { set[f] = &v; return nil })
	}
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	req := &starlingv1.UpdateGroupRequest{Name: set["name"], Description: set["description"], AvatarUrl: set["avatar"]}
	if j := set["join"]; j != nil {
		switch *j {
		case "open":
			req.JoinPolicy = starlingv1.JoinPolicy_JOIN_POLICY_OPEN
		case "invite":
			req.JoinPolicy = starlingv1.JoinPolicy_JOIN_POLICY_INVITE_ONLY
		default:
			return usageErrorf("group update: --join is open or invite (see 'starling group update --help')")
		}
	}
	if ad := set["add"]; ad != nil {
		switch *ad {
		case "members":
			req.AddPolicy = starlingv1.AddPolicy_ADD_POLICY_MEMBERS
		case "admins":
			req.AddPolicy = starlingv1.AddPolicy_ADD_POLICY_ADMINS
		default:
			return usageErrorf("group update: --add is members or admins (see 'starling group update --help')")
		}
	}
	_, cl, t, err := a.inGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	req.GroupId = t.groupID
	g, err := cl.UpdateGroup(ctx, req)
	if err != nil {
		return reword(err, "update "+t.String())
	}
	if g.GetName() != t.name {
		return say(a.stdout, "updated group %s, now #%s\n", t, g.GetName())
	}
	return say(a.stdout, "updated group %s\n", t)
}

func cmdGroupJoin(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("group join"), args, 1, 1)
	if err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	g, err := cl.JoinGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	return say(a.stdout, "joined group #%s\n", g.GetName())
}

func cmdGroupKick(ctx context.Context, a *app, args []string) error {
	return onMember(ctx, a, "group kick", args, func(cl *client.Client, group, user string) error {
		return cl.KickMember(ctx, group, user)
	}, "removed %s from %s\n", "kick %s from %s")
}

func cmdGroupRole(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("group role"), args, 3, 3)
	if err != nil {
		return err
	}
	var role starlingv1.GroupRole
	var as string // "<username> is now <as> of #<group>"
	switch pos[2] {
	case "admin":
		role, as = starlingv1.GroupRole_GROUP_ROLE_ADMIN, "an admin"
	case "member":
		role, as = starlingv1.GroupRole_GROUP_ROLE_MEMBER, "a member"
	default:
		return usageErrorf("group role: the role is admin or member, not %q (see 'starling group role --help')", pos[2])
	}
	return onMember(ctx, a, "group role", pos[:2], func(cl *client.Client, group, user string) error {
		return cl.SetMemberRole(ctx, group, user, role)
	}, "%s is now "+as+" of %s\n", "make %s "+as+" of %s")
}

func cmdGroupTransfer(ctx context.Context, a *app, args []string) error {
	return onMember(ctx, a, "group transfer", args, func(cl *client.Client, group, user string) error {
		return cl.TransferOwnership(ctx, group, user)
	}, "%s now owns %s; you are an admin\n", "give %[2]s to %[1]s")
}

func cmdGroupMembers(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group members")
	asJSON := fs.Bool("json", false, "print one JSON object per member")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, cl, g, err := a.inGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	p := newPrinter(a.stdout, cl, c, *asJSON)
	return allPages(func(token string) ([]*starlingv1.GroupMember, string, error) {
		ms, next, err := cl.ListGroupMembers(ctx, g.groupID, 0, token)
		return ms, next, reword(err, "members of "+g.String())
	}, func(m *starlingv1.GroupMember) error {
		if *asJSON {
			return writeJSON(a.stdout, map[string]any{"user_id": m.GetUserId(), "username": p.name(ctx, m.GetUserId()), "role": roleName(m.GetRole()), "joined_seq": m.GetJoinedSeq()})
		}
		return say(a.stdout, "%s\t%s\n", p.name(ctx, m.GetUserId()), roleName(m.GetRole()))
	})
}

func cmdGroupList(ctx context.Context, a *app, args []string) error {
	fs := newFlags("group list")
	asJSON := fs.Bool("json", false, "print one JSON object per group (with its id)")
	verbose := fs.Bool("v", false, "also print each group's id")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	return allPages(func(token string) ([]*starlingv1.MyGroup, string, error) {
		return cl.ListMyGroups(ctx, 0, token)
	}, func(mg *starlingv1.MyGroup) error {
		g := mg.GetGroup()
		if *asJSON {
			return writeJSON(a.stdout, map[string]any{"group_id": g.GetGroupId(), "name": g.GetName(), "member_count": g.GetMemberCount(), "role": roleName(mg.GetRole())})
		}
		return say(a.stdout, "%-24s %-11s  %s%s\n", "#"+g.GetName(), count(g.GetMemberCount(), "member"), roleName(mg.GetRole()), idSuffix(*verbose, g.GetGroupId()))
	})
}

// groupChangeText says what a group's system message records, with
// usernames: "alice added bob, carol".
func (p *printer) groupChangeText(ctx context.Context, ch *starlingv1.GroupChange) string {
	return grouptext.Describe(ch, func(id string) string { return p.name(ctx, id) })
}

// allPages calls each for every item of every page fetch returns, from the
// first page ("" token) to the last (an empty next token).
func allPages[T any](fetch func(token string) ([]T, string, error), each func(T) error) error {
	for token := ""; ; {
		page, next, err := fetch(token)
		if err != nil {
			return err
		}
		for _, item := range page {
			if err := each(item); err != nil {
				return err
			}
		}
		if token = next; token == "" {
			return nil
		}
	}
}
