// Package eventwire carries a user's Events through the message machinery.
//
// A stored event is a message of the user's event stream
// (storage.EventsConversationID): its Content has Type ContentType and the
// encoded Event (without conversation, seq or time, which the store
// assigns) as Data. So events get seqs, dedup, cursors, pushes, Notify,
// Sync, catch-up and the cluster bus from the code that does that for
// messages; only at the edge of the device are they rendered as Event
// frames (Frame) and SyncBatch events (Events).
//
// An ephemeral event (a friend's presence) is a message of the bare
// stream prefix "evt:" with seq 0: the hub writes it at once as an Event
// frame, outside any window or cursor, and nothing stores it.
package eventwire

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/storage"
)

// ContentType marks a Content that carries an Event.
const ContentType = "starling.event"

// EphemeralConversation is the conversation id of ephemeral events.
const EphemeralConversation = "evt:"

// Content wraps ev for storage or the bus.
func Content(ev *starlingv1.Event) (*starlingv1.Content, error) {
	b, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("eventwire: encode event: %w", err)
	}
	return &starlingv1.Content{Type: ContentType, Data: b}, nil
}

// IsEvent reports whether m is an event (stored or ephemeral) rather than
// a message.
func IsEvent(m *starlingv1.Message) bool {
	return storage.IsEventsConversation(m.GetConversationId())
}

// IsEphemeral reports whether m is an ephemeral event.
func IsEphemeral(m *starlingv1.Message) bool {
	return m.GetSeq() == 0 && m.GetConversationId() == EphemeralConversation
}

// Event unwraps the event m carries, with its conversation, seq and time
// (an ephemeral one has neither conversation nor seq).
func Event(m *starlingv1.Message) (*starlingv1.Event, error) {
	ev := new(starlingv1.Event)
	if m.GetContent().GetType() != ContentType {
		return nil, fmt.Errorf("eventwire: %s/%d is not an event", m.GetConversationId(), m.GetSeq())
	}
	if err := proto.Unmarshal(m.GetContent().GetData(), ev); err != nil {
		return nil, fmt.Errorf("eventwire: decode event %s/%d: %w", m.GetConversationId(), m.GetSeq(), err)
	}
	if m.GetSeq() > 0 {
		ev.ConversationId = m.GetConversationId()
	}
	ev.Seq = m.GetSeq()
	ev.ServerTime = m.GetServerTime()
	if ev.ServerTime == nil {
		ev.ServerTime = timestamppb.Now()
	}
	return ev, nil
}

// Events unwraps a Sync's messages.
func Events(ms []*starlingv1.Message) ([]*starlingv1.Event, error) {
	out := make([]*starlingv1.Event, len(ms))
	for i, m := range ms {
		ev, err := Event(m)
		if err != nil {
			return nil, err
		}
		out[i] = ev
	}
	return out, nil
}

// Frame is the Event frame that pushes m to a device; nil if m does not
// decode (a bug: the server made it).
func Frame(m *starlingv1.Message) *starlingv1.StreamResponse {
	ev, err := Event(m)
	if err != nil {
		return nil
	}
	return &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Event{Event: ev}}
}
