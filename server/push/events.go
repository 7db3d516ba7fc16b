package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
)

// Event types a backend may subscribe to (--events). The list may grow; a
// receiver ignores types it does not know.
const (
	EventMessageStored = "message.stored"
	EventGroupChanged  = "group.changed"
	EventUserOnline    = "user.online"
	EventUserOffline   = "user.offline"
	EventFriendChanged = "friend.changed"
)

// EventTypes are the types Events knows.
var EventTypes = []string{EventMessageStored, EventGroupChanged, EventUserOnline, EventUserOffline, EventFriendChanged}

// Event is the JSON body of an event webhook call: the envelope is the
// same for every type, Data depends on Type (docs/design.md).
type Event struct {
	Type string `json:"type"`
	Time int64  `json:"time"` // unix milliseconds
	Node string `json:"node"` // the node that saw it
	Data any    `json:"data"`
}

// MessageData is a message.stored event's data.
type MessageData struct {
	ConversationID string       `json:"conversation_id"`
	MsgID          string       `json:"msg_id"` // decimal
	Seq            int64        `json:"seq"`
	SenderID       string       `json:"sender_id"`
	SenderDeviceID string       `json:"sender_device_id"`
	ClientMsgID    string       `json:"client_msg_id"`
	Content        EventContent `json:"content"`
	Time           int64        `json:"time"` // unix milliseconds
}

// EventContent is a message's content; Data is base64 (JSON's []byte).
type EventContent struct {
	Type string `json:"type,omitempty"`
	Text string `json:"text,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// GroupData is a group.changed event's data: the group's membership
// changed (re-read it with GetGroup).
type GroupData struct {
	GroupID string `json:"group_id"`
}

// Actions of friend.changed events.
const (
	FriendRequest = "request" // actor asked user to be friends
	FriendAccept  = "accept"  // actor accepted user's request: friends now
	FriendDecline = "decline" // actor declined user's request
	FriendCancel  = "cancel"  // actor withdrew their request to user
	FriendRemove  = "remove"  // actor ended the friendship with user
	FriendBlock   = "block"   // actor blocked user (user is never told)
	FriendUnblock = "unblock" // actor lifted their block of user
)

// FriendData is a friend.changed event's data: ActorID did Action to (or
// with) UserID. Block and unblock are private to the actor: Starling never
// tells the blocked user, and a receiver should not either.
type FriendData struct {
	Action  string `json:"action"`
	ActorID string `json:"actor_id"`
	UserID  string `json:"user_id"`
	// Message is a request's message (request only).
	Message string `json:"message,omitempty"`
}

// friendData is the friend.changed data of a relationship event, false
// for other events.
func friendData(ev *starlingv1.Event) (FriendData, bool) {
	actor := ev.GetActorId()
	other := func(a, b string) string {
		if a == actor {
			return b
		}
		return a
	}
	pair := func(action string, p *starlingv1.FriendPair) (FriendData, bool) {
		return FriendData{Action: action, ActorID: actor, UserID: other(p.GetFromUserId(), p.GetToUserId())}, true
	}
	switch k := ev.GetKind().(type) {
	case *starlingv1.Event_FriendRequested:
		r := k.FriendRequested
		return FriendData{Action: FriendRequest, ActorID: actor, UserID: other(r.GetFromUserId(), r.GetToUserId()), Message: r.GetMessage()}, true
	case *starlingv1.Event_FriendRequestAccepted:
		return pair(FriendAccept, k.FriendRequestAccepted)
	case *starlingv1.Event_FriendRequestDeclined:
		return pair(FriendDecline, k.FriendRequestDeclined)
	case *starlingv1.Event_FriendRequestCanceled:
		return pair(FriendCancel, k.FriendRequestCanceled)
	case *starlingv1.Event_FriendRemoved:
		return pair(FriendRemove, k.FriendRemoved)
	case *starlingv1.Event_UserBlocked:
		return FriendData{Action: FriendBlock, ActorID: actor, UserID: k.UserBlocked.GetUserId()}, true
	case *starlingv1.Event_UserUnblocked:
		return FriendData{Action: FriendUnblock, ActorID: actor, UserID: k.UserUnblocked.GetUserId()}, true
	}
	return FriendData{}, false
}

// DeviceData is a user.online or user.offline event's data: one device's
// stream opened or closed on Node.
type DeviceData struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// Events posts the events of the enabled types to a Webhook. A nil
// *Events posts nothing.
type Events struct {
	webhook *Webhook
	node    string
	types   map[string]bool
}

// ParseEventTypes reads a comma-separated list of event types.
func ParseEventTypes(list string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(EventTypes, t) {
			return nil, fmt.Errorf("push: unknown event type %q (known: %s)", t, strings.Join(EventTypes, ", "))
		}
		out = append(out, t)
	}
	return out, nil
}

// NewEvents posts the given types to w.
func NewEvents(w *Webhook, node string, types []string) *Events {
	e := &Events{webhook: w, node: node, types: map[string]bool{}}
	for _, t := range types {
		e.types[t] = true
	}
	return e
}

// Enabled reports whether events of this type are posted.
func (e *Events) Enabled(typ string) bool { return e != nil && e.types[typ] }

// Emit queues an event (never waits; dropped and counted when the queue
// is full).
func (e *Events) Emit(typ string, data any) {
	if !e.Enabled(typ) {
		return
	}
	body, err := json.Marshal(Event{Type: typ, Time: time.Now().UnixMilli(), Node: e.node, Data: data})
	if err == nil {
		e.webhook.Enqueue(typ, body)
	}
}

func messageData(m *starlingv1.Message) MessageData {
	return MessageData{
		ConversationID: m.GetConversationId(),
		MsgID:          strconv.FormatInt(m.GetMsgId(), 10),
		Seq:            m.GetSeq(),
		SenderID:       m.GetSenderId(),
		SenderDeviceID: m.GetSenderDeviceId(),
		ClientMsgID:    m.GetClientMsgId(),
		Content:        EventContent{Type: m.GetContent().GetType(), Text: m.GetContent().GetText(), Data: m.GetContent().GetData()},
		Time:           m.GetServerTime().AsTime().UnixMilli(),
	}
}

// StreamPresence is where the gateway registers streams.
type StreamPresence interface {
	Register(ctx context.Context, node string, dev bus.DeviceKey) error
	Unregister(ctx context.Context, node string, dev bus.DeviceKey) error
}

// PresenceEvents wraps the gateway's presence: a device's stream opening
// or closing is a user.online or user.offline event.
type PresenceEvents struct {
	Presence StreamPresence
	Events   *Events
}

// Register implements StreamPresence.
func (p PresenceEvents) Register(ctx context.Context, node string, dev bus.DeviceKey) error {
	err := p.Presence.Register(ctx, node, dev)
	if err == nil {
		p.Events.Emit(EventUserOnline, DeviceData{UserID: dev.UserID, DeviceID: dev.DeviceID})
	}
	return err
}

// Unregister implements StreamPresence.
func (p PresenceEvents) Unregister(ctx context.Context, node string, dev bus.DeviceKey) error {
	err := p.Presence.Unregister(ctx, node, dev)
	p.Events.Emit(EventUserOffline, DeviceData{UserID: dev.UserID, DeviceID: dev.DeviceID})
	return err
}
