package client

import "strings"

// Conversation ids are derived by the server (docs/design.md, "Identities"):
// "c2c:<smaller uid>:<larger uid>" and "grp:<group id>", uids compared as
// strings. The helpers below let an app name a conversation before it has
// a message of it, e.g. to page its history.

// DirectConversationID is the id of the one-to-one conversation of users a
// and b (in either order).
func DirectConversationID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "c2c:" + a + ":" + b
}

// GroupConversationID is the id of a group's conversation.
func GroupConversationID(groupID string) string { return "grp:" + groupID }

// Peer returns, for a one-to-one conversation id, the user that is not
// self, and for a group conversation id the group id; isGroup tells which.
// ok is false for an id of neither form.
func Peer(conversationID, self string) (id string, isGroup, ok bool) {
	if g, found := strings.CutPrefix(conversationID, "grp:"); found {
		return g, true, g != ""
	}
	rest, found := strings.CutPrefix(conversationID, "c2c:")
	if !found {
		return "", false, false
	}
	a, b, found := strings.Cut(rest, ":")
	if !found {
		return "", false, false
	}
	if a == self {
		return b, false, true
	}
	return a, false, true
}
