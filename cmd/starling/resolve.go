package main

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
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

// conversationID resolves what a person names a conversation by: a
// conversation id ("c2c:…", "grp:…") as is, else a username (the
// one-to-one conversation with them), else a group id.
func conversationID(ctx context.Context, cl *client.Client, self *config, name string) (string, error) {
	if strings.HasPrefix(name, "c2c:") || strings.HasPrefix(name, "grp:") {
		return name, nil
	}
	u, err := cl.GetUserByName(ctx, name)
	switch status.Code(err) {
	case codes.OK:
		return client.DirectConversationID(self.UserID, u.GetUserId()), nil
	case codes.NotFound, codes.InvalidArgument: // not a username; maybe a group id
	default:
		return "", err
	}
	_, _, err = cl.GetGroup(ctx, name)
	switch status.Code(err) {
	case codes.OK:
		return client.GroupConversationID(name), nil
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied:
		// The server answers PermissionDenied for a group that does not
		// exist as well as for one the caller is not in.
		return "", fmt.Errorf("no user named %q, nor a group of yours with that id", name)
	}
	return "", err
}
