package storage

import (
	"fmt"
	"strconv"
	"strings"
)

// Conversation ids are derived by the server, never chosen by clients:
// "c2c:<smaller uid>:<larger uid>" for one-to-one, "grp:<group id>" for
// groups, "evt:<uid>" for a user's event stream (see EventsConversationID).
const (
	c2cPrefix    = "c2c:"
	groupPrefix  = "grp:"
	eventsPrefix = "evt:"
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

// EventsConversationID returns the conversation id of a user's event
// stream: the user's events (friend requests, blocks, …) stored as the
// messages of a conversation whose only member is the user, so that they
// get seqs, cursors, pushes and sync like any conversation.
func EventsConversationID(userID string) string { return eventsPrefix + userID }

// IsEventsConversation reports whether id names an event stream (or the
// empty "evt:" of ephemeral events), without parsing it.
func IsEventsConversation(id string) bool { return strings.HasPrefix(id, eventsPrefix) }

// ConversationKind tells one-to-one from group conversations.
type ConversationKind int

// Conversation kinds.
const (
	KindC2C ConversationKind = iota + 1
	KindGroup
	KindEvents
)

// ParsedConversation is a conversation id taken apart.
type ParsedConversation struct {
	Kind    ConversationKind
	Users   [2]string // KindC2C: the two users, smaller first
	GroupID string    // KindGroup
	UserID  string    // KindEvents: whose stream
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
	case strings.HasPrefix(id, eventsPrefix):
		u := id[len(eventsPrefix):]
		if u == "" || strings.Contains(u, ":") {
			return ParsedConversation{}, fmt.Errorf("malformed event stream id %s", quoteID(id))
		}
		return ParsedConversation{Kind: KindEvents, UserID: u}, nil
	}
	return ParsedConversation{}, fmt.Errorf("conversation id %s is none of c2c:…, grp:… or evt:…", quoteID(id))
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
