package hub

import (
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/server/wire"
)

// pushItem is the queue item that pushes m: a message, packed into a Push
// frame by the writer, or a user's event (its event stream is a
// conversation like any other, see server/eventwire), written as an Event
// frame of its own. Both count against the window and are acknowledged
// with PushAck alike.
func pushItem(m *starlingv1.Message, sh *wire.Shared) (item, bool) {
	if !eventwire.IsEvent(m) {
		return item{msg: m, shared: sh}, true
	}
	f := eventwire.Frame(m)
	return item{frame: f}, f != nil
}

// offerEphemeral writes an ephemeral event (a friend's presence) at once,
// outside any window or cursor: it is not stored, so there is nothing to
// pull, acknowledge or catch up on. A session still starting drops it
// (nothing may precede Welcome); its device asks for presence after
// Welcome.
func (s *Session) offerEphemeral(m *starlingv1.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		return
	}
	if f := eventwire.Frame(m); f != nil {
		s.enqueue(item{frame: f})
	}
}
