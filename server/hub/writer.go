package hub

import (
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// maxPack bounds how many messages go in one Push frame. Packing a backlog
// raises payload per frame (fewer gRPC messages, fewer syscalls) without
// making one frame large.
const maxPack = 64

// Next returns the next frame to write, blocking until there is one or the
// session is done (ok=false). Consecutive queued pushes are packed into one
// Push frame. Only the stream's writer goroutine may call Next.
func (s *Session) Next() (f *starlingv1.StreamResponse, ok bool) {
	var it item
	if s.carry != nil {
		it, s.carry = *s.carry, nil
	} else {
		select {
		case it = <-s.out:
		case <-s.done:
			return nil, false
		}
	}
	if it.end {
		return nil, false
	}
	if it.frame != nil {
		return it.frame, true
	}
	msgs := []*starlingv1.Message{it.msg}
	for len(msgs) < maxPack {
		select {
		case next := <-s.out:
			if next.frame != nil || next.end {
				s.carry = &next
				return pushFrame(msgs), true
			}
			msgs = append(msgs, next.msg)
		default:
			return pushFrame(msgs), true
		}
	}
	return pushFrame(msgs), true
}

func pushFrame(msgs []*starlingv1.Message) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Push{Push: &starlingv1.Push{Messages: msgs}}}
}
