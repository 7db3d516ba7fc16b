package main

import (
	"context"
	"strings"
	"time"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

var friendCommands = map[string]command{
	"list":     cmdFriendsList,
	"requests": cmdFriendsRequests,
	"request":  cmdFriendsRequest,
	"accept":   friendCall("friends accept", "accepted the request of %s: you are friends now\n", (*client.Client).AcceptFriendRequest),
	"decline":  friendCall("friends decline", "declined the request of %s\n", (*client.Client).DeclineFriendRequest),
	"cancel":   friendCall("friends cancel", "withdrew your request to %s\n", (*client.Client).CancelFriendRequest),
	"remove":   friendCall("friends remove", "%s is no longer your friend\n", (*client.Client).RemoveFriend),
}

func cmdFriends(ctx context.Context, a *app, args []string) error {
	// `friends` and `friends --json` are `friends list`.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		return cmdFriendsList(ctx, a, args)
	}
	return subcommand("friends", friendCommands, args, func(cmd command, rest []string) error { return cmd(ctx, a, rest) })
}

// friendCall is a command that names one user and calls one method.
func friendCall(name, done string, call func(*client.Client, context.Context, string) error) command {
	return func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags(name), args, 1, 1)
		if err != nil {
			return err
		}
		_, cl, err := a.loggedIn()
		if err != nil {
			return err
		}
		defer cl.Close()
		id, err := userID(ctx, cl, pos[0])
		if err != nil {
			return err
		}
		if err := call(cl, ctx, id); err != nil {
			return err
		}
		return say(a.stdout, done, pos[0])
	}
}

func cmdFriendsRequest(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("friends request"), args, 1, -1)
	if err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	id, err := userID(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	if _, err := cl.SendFriendRequest(ctx, id, strings.Join(pos[1:], " ")); err != nil {
		return err
	}
	return say(a.stdout, "asked %s to be friends\n", pos[0])
}

// maxListed bounds what one list command prints (pages of 200).
const maxListed = 10000

func cmdFriendsList(ctx context.Context, a *app, args []string) error {
	fs := newFlags("friends list")
	asJSON := fs.Bool("json", false, "one JSON object per friend")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, n := "", 0
	for n < maxListed {
		fs, next, err := cl.ListFriends(ctx, 200, tok)
		if err != nil {
			return err
		}
		for _, f := range fs {
			n++
			online := f.GetStatus() == starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE
			if *asJSON {
				if err := writeJSON(a.stdout, map[string]any{"user_id": f.GetUser().GetUserId(), "username": f.GetUser().GetUsername(), "online": online, "since": f.GetSince().AsTime()}); err != nil {
					return err
				}
				continue
			}
			state := "offline"
			if online {
				state = "online"
			}
			if err := say(a.stdout, "%s\t%s\tsince %s\n", f.GetUser().GetUsername(), state, f.GetSince().AsTime().Local().Format(time.DateOnly)); err != nil {
				return err
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	if n == 0 && !*asJSON {
		return say(a.stdout, "no friends yet\n")
	}
	return nil
}

func cmdFriendsRequests(ctx context.Context, a *app, args []string) error {
	fs := newFlags("friends requests")
	outgoing := fs.Bool("outgoing", false, "the requests you sent (default: those sent to you)")
	asJSON := fs.Bool("json", false, "one JSON object per request")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, n := "", 0
	for n < maxListed {
		rs, next, err := cl.ListFriendRequests(ctx, !*outgoing, 200, tok)
		if err != nil {
			return err
		}
		for _, r := range rs {
			n++
			if *asJSON {
				if err := writeJSON(a.stdout, map[string]any{"from_user_id": r.GetFromUserId(), "to_user_id": r.GetToUserId(), "username": r.GetUser().GetUsername(), "message": r.GetMessage(), "time": r.GetCreateTime().AsTime()}); err != nil {
					return err
				}
				continue
			}
			dir := "from"
			if *outgoing {
				dir = "to"
			}
			if err := say(a.stdout, "%s %s %s: %s\n", r.GetCreateTime().AsTime().Local().Format(time.DateTime), dir, r.GetUser().GetUsername(), r.GetMessage()); err != nil {
				return err
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	if n == 0 && !*asJSON {
		return say(a.stdout, "no pending requests\n")
	}
	return nil
}

func cmdBlock(ctx context.Context, a *app, args []string) error {
	if len(args) > 0 && args[0] == "list" {
		return cmdBlockList(ctx, a, args[1:])
	}
	return friendCall("block", "blocked %s\n", (*client.Client).BlockUser)(ctx, a, args)
}

func cmdUnblock(ctx context.Context, a *app, args []string) error {
	return friendCall("unblock", "unblocked %s\n", (*client.Client).UnblockUser)(ctx, a, args)
}

func cmdBlockList(ctx context.Context, a *app, args []string) error {
	fs := newFlags("block list")
	asJSON := fs.Bool("json", false, "one JSON object per user")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	_, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	tok, n := "", 0
	for n < maxListed {
		us, next, err := cl.ListBlockedUsers(ctx, 200, tok)
		if err != nil {
			return err
		}
		for _, u := range us {
			n++
			if *asJSON {
				err = writeJSON(a.stdout, map[string]any{"user_id": u.GetUserId(), "username": u.GetUsername()})
			} else {
				err = say(a.stdout, "%s\n", u.GetUsername())
			}
			if err != nil {
				return err
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	if n == 0 && !*asJSON {
		return say(a.stdout, "you block no one\n")
	}
	return nil
}

// event prints one event of the user's stream (or a friend's presence).
func (p *printer) event(ctx context.Context, ev *starlingv1.Event) error {
	if g := ev.GetGroupChanged(); g != nil {
		if ev.GetSeq() == 0 {
			// A member's ephemeral copy of a change: the group's system
			// message, printed as a message, already says it.
			return nil
		}
		return p.groupEvent(ctx, ev, g)
	}
	what, who := describeEvent(ev)
	if p.json {
		return writeJSON(p.out, map[string]any{
			"event": what, "seq": ev.GetSeq(), "actor_id": ev.GetActorId(), "actor": p.name(ctx, ev.GetActorId()),
			"user_id": who, "user": p.name(ctx, who), "message": ev.GetFriendRequested().GetMessage(),
			"server_time": ev.GetServerTime().AsTime(),
		})
	}
	return say(p.out, "%s [event #%d] %s\n", ev.GetServerTime().AsTime().Local().Format(time.DateTime), ev.GetSeq(), p.eventSentence(ctx, ev))
}

// eventSentence says what an event tells in a sentence with usernames
// that reads the same on both users' screens: "alice asked bob to be
// friends: it's alice", not who it is "about" from one side.
func (p *printer) eventSentence(ctx context.Context, ev *starlingv1.Event) string {
	pair := func(fp *starlingv1.FriendPair) (string, string) {
		return p.name(ctx, fp.GetFromUserId()), p.name(ctx, fp.GetToUserId())
	}
	switch k := ev.GetKind().(type) {
	case *starlingv1.Event_FriendRequested:
		from, to := p.name(ctx, k.FriendRequested.GetFromUserId()), p.name(ctx, k.FriendRequested.GetToUserId())
		if m := k.FriendRequested.GetMessage(); m != "" {
			return from + " asked " + to + " to be friends: " + m
		}
		return from + " asked " + to + " to be friends"
	case *starlingv1.Event_FriendRequestAccepted:
		from, to := pair(k.FriendRequestAccepted)
		return to + " accepted " + from + "'s friend request"
	case *starlingv1.Event_FriendRequestDeclined:
		from, to := pair(k.FriendRequestDeclined)
		return to + " declined " + from + "'s friend request"
	case *starlingv1.Event_FriendRequestCanceled:
		from, to := pair(k.FriendRequestCanceled)
		return from + " withdrew the friend request to " + to
	case *starlingv1.Event_FriendRemoved:
		from, to := pair(k.FriendRemoved)
		return from + " removed " + to + " from friends"
	case *starlingv1.Event_UserBlocked:
		return "you blocked " + p.name(ctx, k.UserBlocked.GetUserId())
	case *starlingv1.Event_UserUnblocked:
		return "you unblocked " + p.name(ctx, k.UserUnblocked.GetUserId())
	case *starlingv1.Event_PresenceChanged:
		what, who := describeEvent(ev)
		return p.name(ctx, who) + " is " + what
	}
	return "an event this CLI does not know (see --json)"
}

// groupEvent prints a group change that started or ended the user's
// membership, in the style of the other events: "alice added bob
// (#Team #2)", the group by name and the change's seq in it.
func (p *printer) groupEvent(ctx context.Context, ev *starlingv1.Event, g *starlingv1.GroupEvent) error {
	text := p.groupChangeText(ctx, g.GetChange())
	if p.json {
		return writeJSON(p.out, map[string]any{
			"event": "group", "seq": ev.GetSeq(), "actor_id": ev.GetActorId(), "actor": p.name(ctx, ev.GetActorId()),
			"group_id": g.GetGroupId(), "group": g.GetGroupName(), "conversation_id": g.GetConversationId(),
			"group_seq": g.GetSeq(), "kind": g.GetChange().GetKind().String(), "text": text,
			"server_time": ev.GetServerTime().AsTime(),
		})
	}
	return say(p.out, "%s [event #%d] %s (#%s #%d)\n", ev.GetServerTime().AsTime().Local().Format(time.DateTime), ev.GetSeq(),
		text, g.GetGroupName(), g.GetSeq())
}

// describeEvent names an event's kind and the user it is about (the other
// side, as the reader of the event sees it, where there is one).
func describeEvent(ev *starlingv1.Event) (string, string) {
	otherOf := func(from, to string) string {
		if ev.GetActorId() == from {
			return to
		}
		return from
	}
	switch k := ev.GetKind().(type) {
	case *starlingv1.Event_FriendRequested:
		return "friend request", otherOf(k.FriendRequested.GetFromUserId(), k.FriendRequested.GetToUserId())
	case *starlingv1.Event_FriendRequestAccepted:
		return "friend request accepted", otherOf(k.FriendRequestAccepted.GetFromUserId(), k.FriendRequestAccepted.GetToUserId())
	case *starlingv1.Event_FriendRequestDeclined:
		return "friend request declined", otherOf(k.FriendRequestDeclined.GetFromUserId(), k.FriendRequestDeclined.GetToUserId())
	case *starlingv1.Event_FriendRequestCanceled:
		return "friend request withdrawn", otherOf(k.FriendRequestCanceled.GetFromUserId(), k.FriendRequestCanceled.GetToUserId())
	case *starlingv1.Event_FriendRemoved:
		return "friend removed", otherOf(k.FriendRemoved.GetFromUserId(), k.FriendRemoved.GetToUserId())
	case *starlingv1.Event_UserBlocked:
		return "blocked", k.UserBlocked.GetUserId()
	case *starlingv1.Event_UserUnblocked:
		return "unblocked", k.UserUnblocked.GetUserId()
	case *starlingv1.Event_PresenceChanged:
		if k.PresenceChanged.GetStatus() == starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
			return "online", k.PresenceChanged.GetUserId()
		}
		return "offline", k.PresenceChanged.GetUserId()
	}
	return "event", ""
}
