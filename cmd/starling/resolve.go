package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// userID turns a username into a user id.
func userID(ctx context.Context, cl *client.Client, username string) (string, error) {
	u, err := cl.GetUserByName(ctx, username)
	if status.Code(err) == codes.NotFound {
		return "", fmt.Errorf("no user named %q", username)
	}
	if err != nil {
		return "", err
	}
	return u.GetUserId(), nil
}

func userIDs(ctx context.Context, cl *client.Client, usernames []string) ([]string, error) {
	ids := make([]string, len(usernames))
	for i, n := range usernames {
		id, err := userID(ctx, cl, n)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// target is a user or a group a person named on the command line, with
// the name output calls it by.
type target struct {
	userID, groupID string // one of the two
	name            string // the username or the group's name
}

// String is how output names the target: "bob" for a user (as people
// type usernames), "#friends" for a group.
func (t target) String() string {
	if t.groupID != "" {
		return "#" + t.name
	}
	return t.name
}

// label is the target as listen and inbox name conversations: "@bob",
// "#friends".
func (t target) label() string {
	if t.groupID != "" {
		return t.String()
	}
	return "@" + t.name
}

func (t target) recipient() client.Recipient {
	if t.groupID != "" {
		return client.ToGroup(t.groupID)
	}
	return client.ToUser(t.userID)
}

func (t target) conversationID(self string) string {
	if t.groupID != "" {
		return client.GroupConversationID(t.groupID)
	}
	return client.DirectConversationID(self, t.userID)
}

// resolveTarget resolves what a person names a user or a group by (send,
// read, history): "@bob" is a user, "#friends" a group of theirs by name;
// a bare word is tried as a username first, then as the name of one of
// their groups, then as a group id (scripts name groups by id).
func resolveTarget(ctx context.Context, cl *client.Client, word string) (target, error) {
	if name, ok := strings.CutPrefix(word, "@"); ok {
		id, err := userID(ctx, cl, name)
		return target{userID: id, name: name}, err
	}
	if strings.HasPrefix(word, "#") {
		return resolveGroup(ctx, cl, word)
	}
	u, err := cl.GetUserByName(ctx, word)
	switch status.Code(err) {
	case codes.OK:
		return target{userID: u.GetUserId(), name: u.GetUsername()}, nil
	case codes.NotFound, codes.InvalidArgument: // not a username; maybe a group
	default:
		return target{}, err
	}
	t, err := resolveGroup(ctx, cl, word)
	var none *noGroupError
	if errors.As(err, &none) {
		return target{}, fmt.Errorf("no user or group of yours named %q", word)
	}
	return t, err
}

// noGroupError: a word names none of the caller's groups.
type noGroupError struct{ msg string }

func (e *noGroupError) Error() string { return e.msg }

// maxListedIDs bounds the ids a refused name lists: the error is one line.
const maxListedIDs = 10

// resolveGroup resolves what a person names one of their groups by:
// "#friends" is a name; a bare word is a name, else a group id. Names are
// looked up among the caller's own groups (ListMyGroups): a name two of
// them share is refused with their ids, which name each unambiguously.
func resolveGroup(ctx context.Context, cl *client.Client, word string) (target, error) {
	name, hashed := strings.CutPrefix(word, "#")
	var named []*starlingv1.MyGroup
	var withID *starlingv1.Group
	err := allPages(func(token string) ([]*starlingv1.MyGroup, string, error) {
		return cl.ListMyGroups(ctx, 0, token)
	}, func(mg *starlingv1.MyGroup) error {
		switch g := mg.GetGroup(); {
		case g.GetName() == name:
			named = append(named, mg)
		case !hashed && g.GetGroupId() == word:
			withID = g
		}
		return nil
	})
	if err != nil {
		return target{}, err
	}
	switch {
	case len(named) == 1:
		g := named[0].GetGroup()
		return target{groupID: g.GetGroupId(), name: g.GetName()}, nil
	case len(named) > 1:
		var ids []string
		for _, mg := range named[:min(len(named), maxListedIDs)] {
			ids = append(ids, fmt.Sprintf("%s (%s, %s)", mg.GetGroup().GetGroupId(), count(mg.GetGroup().GetMemberCount(), "member"), roleName(mg.GetRole())))
		}
		if more := len(named) - len(ids); more > 0 {
			ids = append(ids, fmt.Sprintf("and %d more (see 'starling group list -v')", more))
		}
		return target{}, fmt.Errorf("%d of your groups are named %q; name one by its id: %s", len(named), name, strings.Join(ids, ", "))
	case hashed:
		return target{}, &noGroupError{fmt.Sprintf("no group of yours named %q", name)}
	case withID != nil:
		return target{groupID: withID.GetGroupId(), name: withID.GetName()}, nil
	}
	// Not one of the caller's groups, by name or id. The server says
	// whether the word is the id of a group they were in that is
	// disbanded (its own refusal says so); PermissionDenied is its answer
	// for a group that does not exist as well as for one the caller is
	// not in.
	g, _, err := cl.GetGroup(ctx, word)
	switch status.Code(err) {
	case codes.OK: // joined since the listing
		return target{groupID: g.GetGroupId(), name: g.GetName()}, nil
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied:
		return target{}, &noGroupError{fmt.Sprintf("no group of yours named %q or with that id", word)}
	}
	return target{}, reword(err, "group "+word)
}

// conversationID resolves what a person names a conversation by: a
// conversation id ("c2c:…", "grp:…") as is, else a user or group as
// resolveTarget does.
func conversationID(ctx context.Context, cl *client.Client, self *config, name string) (string, error) {
	if strings.HasPrefix(name, "c2c:") || strings.HasPrefix(name, "grp:") {
		return name, nil
	}
	t, err := resolveTarget(ctx, cl, name)
	if err != nil {
		return "", err
	}
	return t.conversationID(self.UserID), nil
}

// reworded is an error of the client library, which says what failed with
// ids ("kick \"u…\" from group \"g…\": <cause>"), said with the names the
// person used ("kick carol from #friends: <cause>"). It still wraps the
// original, so errors.Is and the gRPC status (describe) see through it.
type reworded struct {
	what string
	err  error
}

func (e *reworded) Error() string {
	// The client library's errors are "<what>: %w": keep the cause.
	if cause := errors.Unwrap(e.err); cause != nil {
		return e.what + ": " + cause.Error()
	}
	return e.what + ": " + e.err.Error()
}

func (e *reworded) Unwrap() error { return e.err }

// reword is err said as what failed; nil stays nil.
func reword(err error, what string) error {
	if err == nil {
		return nil
	}
	return &reworded{what: what, err: err}
}

// count is "1 member", "3 members".
func count[N int | int32 | int64](n N, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
