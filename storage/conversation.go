package storage

import (
	"fmt"
	"strconv"
	"strings"
)

// Conversation ids are derived by the server, never chosen by clients:
// "c2c:<smaller uid>:<larger uid>" for one-to-one, "grp:<group id>" for groups.
const (
	c2cPrefix   = "c2c:"
	groupPrefix = "grp:"
)

// C2CConversationID returns the one-to-one conversation id of two users; the
// order of the arguments does not matter.
func C2CConversationID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return c2cPrefix + a + ":" + b
}

// GroupConversationID returns the conversation id of a group.
func GroupConversationID(groupID string) string { return groupPrefix + groupID }

// ConversationKind tells one-to-one from group conversations.
type ConversationKind int

// Conversation kinds.
const (
	KindC2C ConversationKind = iota + 1
	KindGroup
)

// ParsedConversation is a conversation id taken apart.
type ParsedConversation struct {
	Kind    ConversationKind
	Users   [2]string // KindC2C: the two users, smaller first
	GroupID string    // KindGroup
}

// ParseConversationID takes a conversation id apart, or says why it is not one.
func ParseConversationID(id string) (ParsedConversation, error) {
	switch {
	case strings.HasPrefix(id, c2cPrefix):
		a, b, ok := strings.Cut(id[len(c2cPrefix):], ":")
		if !ok || a == "" || b == "" || strings.Contains(b, ":") || b < a {
			return ParsedConversation{}, fmt.Errorf("malformed one-to-one conversation id %s", quoteID(id))
		}
		return ParsedConversation{Kind: KindC2C, Users: [2]string{a, b}}, nil
	case strings.HasPrefix(id, groupPrefix):
		g := id[len(groupPrefix):]
		if g == "" || strings.Contains(g, ":") {
			return ParsedConversation{}, fmt.Errorf("malformed group conversation id %s", quoteID(id))
		}
		return ParsedConversation{Kind: KindGroup, GroupID: g}, nil
	}
	return ParsedConversation{}, fmt.Errorf("conversation id %s is neither c2c:… nor grp:…", quoteID(id))
}

// maxQuotedID bounds how much of a malformed id an error quotes: ids come
// from clients, and errors go to logs.
const maxQuotedID = 64

// quoteID quotes id for an error, cut to maxQuotedID bytes.
func quoteID(id string) string {
	if len(id) <= maxQuotedID {
		return strconv.Quote(id)
	}
	return fmt.Sprintf("%q… (%d bytes)", id[:maxQuotedID], len(id))
}
