package client

import (
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Events ride the session's message machinery: the user's event stream
// ("evt:<user id>") is a conversation like any other, with seqs, a
// StateStore entry, PushAcks and Syncs, so the same code gives each event
// to the app exactly once and in order. An Event frame (or a SyncBatch's
// events) is wrapped as a message of that conversation (eventMessage) on
// the way in, and unwrapped in the outbox on the way out to Events.

// eventContentType marks a wrapped event inside the session.
const eventContentType = "starling.event"

// WithEvents makes the session deliver the user's events (friend requests,
// friends made and removed, blocks made on other devices, friends' presence,
// groups the user was put in or removed from: Event.GetGroupChanged)
// on Session.Events, which the app must then read as steadily as Messages:
// events and messages leave the session through one ordered queue, so an
// unread event holds back the messages behind it. Without it, stored events
// are acknowledged as they arrive and not shown (and presence events are
// dropped).
func WithEvents() SessionOption {
	return func(c *sessionConfig) { c.events = true }
}

// Events delivers the user's events when the session was opened
// WithEvents (nil otherwise): stored events (Seq > 0) per stream in seq
// order, each once, like messages; ephemeral ones (Seq 0: presence, changes
// of groups the user stays in) as they come. Closed when the session ends.
func (s *Session) Events() <-chan *starlingv1.Event { return s.evs }

// eventMessage wraps a stored or ephemeral event for the session loop.
func eventMessage(ev *starlingv1.Event) *starlingv1.Message {
	b, _ := proto.Marshal(ev) // a message the server sent decodes and encodes again
	conv := ev.GetConversationId()
	if ev.GetSeq() == 0 {
		conv = "evt:"
	}
	return &starlingv1.Message{ConversationId: conv, Seq: ev.GetSeq(), Content: &starlingv1.Content{Type: eventContentType, Data: b}}
}

// wrappedEvent unwraps what eventMessage made; nil for a message.
func wrappedEvent(m *starlingv1.Message) *starlingv1.Event {
	if m.GetContent().GetType() != eventContentType || m.GetMsgId() != 0 || !isEventStream(m.GetConversationId()) {
		return nil
	}
	ev := new(starlingv1.Event)
	if proto.Unmarshal(m.GetContent().GetData(), ev) != nil {
		return nil
	}
	return ev
}

func isEventStream(conv string) bool { return len(conv) >= 4 && conv[:4] == "evt:" }

// onEvent takes an Event frame.
func (s *Session) onEvent(ev *starlingv1.Event) {
	if ev.GetSeq() == 0 {
		if s.cfg.events {
			s.out.push(eventMessage(ev)) // ephemeral: no order, no ack
		}
		return
	}
	s.accept(eventMessage(ev), false)
}
