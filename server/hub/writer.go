package hub

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/wire"
)

// Out is one frame for the writer. When Push is set, Frame is a Push of
// those messages, and the writer should send EncodePush(Push) instead of
// encoding Frame: each message is encoded once for all its recipients.
type Out struct {
	Frame *starlingv1.StreamResponse
	Push  []*wire.Shared
}

// maxPack bounds how many messages go in one Push frame, and
// Config.MaxPushBytes their encoded size. Packing a backlog raises payload
// per frame (fewer gRPC messages, fewer syscalls) without making one frame
// large: every frame stays well under a client's default 4 MiB receive
// limit, however large the messages.
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

// Sink is where an attached session's writer sends its frames: the
// device's stream.
type Sink interface {
	// Write sends one frame. It may block while the device does not read
	// (flow control); ending the stream ends such a write.
	Write(Out) error
	// Finish is called once, by the writer, when the session's frames are
	// all written (the session closed or End was reached; the Disconnect,
	// if any, was sent last) or a write failed (err): the stream is over.
	// It must not block.
	Finish(err error)
}

// Attach makes sink the session's writer. From then on a goroutine writes
// the queue whenever it has items and goes away once it is empty: an idle
// stream costs no writer goroutine. Once the session is closed the writer
// writes what is queued and the Disconnect, then calls sink.Finish and
// closes Written. Next must not be used on an attached session.
func (s *Session) Attach(sink Sink) {
	s.qmu.Lock()
	s.sink = sink
	s.written = make(chan struct{})
	start := s.claimWriter()
	s.qmu.Unlock()
	if start {
		go s.write()
	}
}

// Written is closed once the writer of an attached session has finished.
func (s *Session) Written() <-chan struct{} { return s.written }

// claimWriter reports whether the caller must start a writer goroutine:
// the session is attached, has something to do (items queued, or closed
// with its Disconnect owed) and no writer runs. Called with qmu held.
func (s *Session) claimWriter() bool {
	if s.sink == nil || s.writing || s.finished {
		return false
	}
	if len(s.queue) == 0 && !s.isDone() {
		return false
	}
	s.writing = true
	return true
}

func (s *Session) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// write is the writer goroutine: it writes the queue until it is empty,
// then goes away (a later enqueue starts another), or, once the session
// is closed or End is reached, finishes the stream.
func (s *Session) write() {
	for {
		s.qmu.Lock()
		o, ok, ready := s.takeLocked()
		if !ready && !s.isDone() {
			// Checked under qmu: an enqueue or a Close after this sees
			// writing false and starts a writer.
			s.writing = false
			s.qmu.Unlock()
			return
		}
		s.qmu.Unlock()
		if ok {
			if err := s.sink.Write(o); err != nil {
				s.finish(err)
				return
			}
			continue
		}
		var err error
		if !ready { // closed: the Disconnect goes last
			if r := s.Reason(); r != nil {
				err = s.sink.Write(Out{Frame: &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Disconnect{Disconnect: r}}})
			}
		}
		s.finish(err)
		return
	}
}

func (s *Session) finish(err error) {
	s.qmu.Lock()
	s.finished, s.writing = true, false
	// What is still queued will not be written: let it go.
	clear(s.queue)
	s.queue, s.queueBytes = nil, 0
	s.qmu.Unlock()
	s.sink.Finish(err)
	close(s.written)
}

// take pops the next frame from the queue, if there is one.
func (s *Session) take() (o Out, ok, ready bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.takeLocked()
}

// takeLocked is take with qmu held.
func (s *Session) takeLocked() (o Out, ok, ready bool) {
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
		shared := []*wire.Shared{it.shared}
		size := it.cost
		for n < len(s.queue) && len(msgs) < maxPack && s.queue[n].msg != nil {
			next := s.queue[n]
			if size += next.cost; size > s.hub.cfg.MaxPushBytes {
				break
			}
			msgs = append(msgs, next.msg)
			shared = append(shared, next.shared)
			n++
		}
		o, ok = Out{Frame: pushFrame(msgs), Push: shared}, true
		s.hub.metrics.pushed.Add(int64(len(msgs)))
		s.hub.metrics.pushFrames.Add(1)
	}
	for _, done := range s.queue[:n] {
		s.queueBytes -= done.cost
	}
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		// Let a drained burst's array go rather than keep it per session.
		s.queue = nil
	}
	return o, ok, true
}

// pushCost is what a message adds to a Push frame: its encoding (made
// once for every recipient, and needed for the frame anyway) plus its tag
// and length.
func pushCost(sh *wire.Shared) int {
	b, err := sh.Bytes()
	if err != nil {
		return proto.Size(sh.Msg)
	}
	return protowire.SizeTag(messagesField) + protowire.SizeBytes(len(b))
}

func pushFrame(msgs []*starlingv1.Message) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Push{Push: &starlingv1.Push{Messages: msgs}}}
}

// Field numbers of a Push frame, read from the schema so the assembly
// below cannot drift from it (TestEncodePushMatchesProto checks the bytes).
var (
	pushField     = protowire.Number((&starlingv1.StreamResponse{}).ProtoReflect().Descriptor().Fields().ByName("push").Number())
	messagesField = protowire.Number((&starlingv1.Push{}).ProtoReflect().Descriptor().Fields().ByName("messages").Number())
)

// EncodePush returns the wire form of StreamResponse{push: {messages}}
// (ref 0), built from each message's shared encoding: a packed frame costs
// a copy, not a marshal, per device.
func EncodePush(msgs []*wire.Shared) (wire.Encoded, error) {
	encoded := make([][]byte, len(msgs))
	inner := 0
	for i, m := range msgs {
		b, err := m.Bytes()
		if err != nil {
			return nil, err
		}
		encoded[i] = b
		inner += protowire.SizeTag(messagesField) + protowire.SizeBytes(len(b))
	}
	out := make([]byte, 0, protowire.SizeTag(pushField)+protowire.SizeBytes(inner))
	out = protowire.AppendTag(out, pushField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(inner))
	for _, b := range encoded {
		out = protowire.AppendTag(out, messagesField, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}
