package hub

import (
	"errors"
	"sync"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// chanSink is a Sink whose writes go to a channel; a write blocks until
// the test takes it, or until cut (a device that does not read).
type chanSink struct {
	writes   chan *starlingv1.StreamResponse
	cut      chan struct{}
	once     sync.Once
	finished chan error // cap 1
}

func newChanSink() *chanSink {
	return &chanSink{writes: make(chan *starlingv1.StreamResponse), cut: make(chan struct{}), finished: make(chan error, 1)}
}

func (c *chanSink) Write(o Out) error {
	select {
	case c.writes <- o.Frame:
		return nil
	case <-c.cut:
		return errors.New("cut")
	}
}

func (c *chanSink) Finish(err error) { c.finished <- err }

func (c *chanSink) next(t *testing.T) *starlingv1.StreamResponse {
	t.Helper()
	select {
	case f := <-c.writes:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("nothing written")
		return nil
	}
}

func pong(ref uint64) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_Pong{Pong: &starlingv1.Pong{}}}
}

// An attached session writes what is queued, in order, with a writer that
// comes and goes with the queue; once closed it writes the rest, then the
// Disconnect, then finishes, once.
func TestAttachedSessionWrites(t *testing.T) {
	h, _ := newHub(8)
	s, err := h.Register("u", "d")
	if err != nil {
		t.Fatal(err)
	}
	s.FinishStart(nil, nil)
	sink := newChanSink()
	s.Attach(sink)
	for round := range 3 { // the queue empties between rounds: a writer each time
		s.Send(pong(uint64(2 * round)))
		s.Send(pong(uint64(2*round + 1)))
		for i := range 2 {
			if f := sink.next(t); f.GetRef() != uint64(2*round+i) {
				t.Fatalf("round %d: wrote ref %d, want %d", round, f.GetRef(), 2*round+i)
			}
		}
	}
	s.Send(pong(100))
	s.Close(kickReason(starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED))
	if f := sink.next(t); f.GetRef() != 100 {
		t.Fatalf("after close: wrote %v, want the frame queued before it", f)
	}
	if f := sink.next(t); f.GetDisconnect().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED {
		t.Fatalf("last frame %v, want Disconnect REPLACED", f)
	}
	<-s.Written()
	if err := <-sink.finished; err != nil {
		t.Fatalf("finished with %v", err)
	}
	s.Send(pong(101)) // after the end: dropped, no writer
	s.qmu.Lock()
	writing, queued := s.writing, len(s.queue)
	s.qmu.Unlock()
	if writing || queued != 0 {
		t.Fatalf("after finishing: writer running %v, %d queued", writing, queued)
	}
}

// Closing a session whose writer is blocked calls OnClose (where the
// gateway arms the cut); ending the blocked write finishes the session with
// the write's error.
func TestClosingBlockedWriter(t *testing.T) {
	h, _ := newHub(8)
	s, err := h.Register("u", "d")
	if err != nil {
		t.Fatal(err)
	}
	s.FinishStart(nil, nil)
	sink := newChanSink()
	closed := make(chan struct{})
	s.OnClose(func() { close(closed) })
	s.Attach(sink)
	s.Send(pong(1)) // never taken: the writer blocks
	s.Close(kickReason(starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT))
	<-closed
	select {
	case <-s.Written():
		t.Fatal("finished while its write is blocked")
	default:
	}
	close(sink.cut)
	<-s.Written()
	if err := <-sink.finished; err == nil {
		t.Fatal("finished without the write's error")
	}
	// OnClose on a closed session runs at once.
	again := make(chan struct{})
	s.OnClose(func() { close(again) })
	<-again
}
