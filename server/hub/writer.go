package hub

import (
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/wire"
)

// Out is one frame for the writer. When Shared is set, Frame is its
// message and the writer should send Shared's bytes, encoded once for
// every recipient.
type Out struct {
	Frame  *starlingv1.StreamResponse
	Shared *wire.Shared
}

// maxPack bounds how many messages go in one Push frame. Packing a backlog
// raises payload per frame (fewer gRPC messages, fewer syscalls) without
// making one frame large.
const maxPack = 64

// Next returns the next frame to write, blocking until there is one or the
// session is done (ok=false). Consecutive queued pushes are packed into one
// Push frame. Only the stream's writer goroutine may call Next.
func (s *Session) Next() (Out, bool) {
	for {
		if o, ok, ready := s.take(); ready {
			return o, ok
		}
		select {
		case <-s.wake:
		case <-s.done:
			return Out{}, false
		}
	}
}

// take pops the next frame from the queue, if there is one.
func (s *Session) take() (o Out, ok, ready bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) == 0 {
		return Out{}, false, false
	}
	it := s.queue[0]
	n := 1
	switch {
	case it.end:
		ok = false
	case it.frame != nil:
		o, ok = Out{Frame: it.frame}, true
	default:
		msgs := []*starlingv1.Message{it.msg}
		for n < len(s.queue) && len(msgs) < maxPack && s.queue[n].msg != nil {
			msgs = append(msgs, s.queue[n].msg)
			n++
		}
		if n == 1 && it.shared != nil {
			o = Out{Frame: it.shared.Msg.(*starlingv1.StreamResponse), Shared: it.shared}
		} else {
			o = Out{Frame: pushFrame(msgs)}
		}
		ok = true
	}
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		// Let a drained burst's array go rather than keep it per session.
		s.queue = nil
	}
	return o, ok, true
}

func pushFrame(msgs []*starlingv1.Message) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Push{Push: &starlingv1.Push{Messages: msgs}}}
}
