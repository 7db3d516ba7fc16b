package client

import (
	"context"
	"sync"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// outbox hands ordered messages to the app. The session loop appends to it
// and never waits for the app, so a slow or busy app cannot stall
// heartbeats, acks or Send; the outbox goroutine blocks on the app's channel
// instead and reports what the app actually received, which is what gets
// saved and PushAcked.
type outbox struct {
	mu        sync.Mutex
	queue     []*starlingv1.Message
	delivered map[string]int64 // conversation → highest seq the app took, not yet reported

	wake chan struct{} // cap 1: the queue got messages
	poke chan struct{} // cap 1: the app took messages (read by the session loop)
}

func newOutbox() *outbox {
	return &outbox{
		delivered: make(map[string]int64),
		wake:      make(chan struct{}, 1),
		poke:      make(chan struct{}, 1),
	}
}

// signal wakes the reader of ch without ever blocking; one pending wake-up
// is enough because the reader drains everything each time.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (o *outbox) push(m *starlingv1.Message) {
	o.mu.Lock()
	o.queue = append(o.queue, m)
	o.mu.Unlock()
	signal(o.wake)
}

// len is how many messages wait for the app; the loop pauses Sync while it
// is large so that memory stays bounded when the app stops reading.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

func (o *outbox) pop() *starlingv1.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil
	}
	m := o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	return m
}

// takeDelivered returns and forgets what the app received since the last
// call.
func (o *outbox) takeDelivered() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.delivered) == 0 {
		return nil
	}
	d := o.delivered
	o.delivered = make(map[string]int64)
	return d
}

// run feeds out (and events, the user's events, when not nil) until ctx
// ends, then closes them. Messages still queued are dropped: they were
// never acked, so the server has them for next time. Without an events
// channel an event counts as delivered at once.
func (o *outbox) run(ctx context.Context, out chan<- *starlingv1.Message, events chan<- *starlingv1.Event) {
	defer close(out)
	if events != nil {
		defer close(events)
	}
	for {
		m := o.pop()
		if m == nil {
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if ev := wrappedEvent(m); ev != nil {
			if events != nil {
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
			if m.GetSeq() > 0 {
				o.mu.Lock()
				o.delivered[m.GetConversationId()] = m.GetSeq()
				o.mu.Unlock()
				signal(o.poke)
			}
			continue
		}
		select {
		case out <- m:
			o.mu.Lock()
			o.delivered[m.GetConversationId()] = m.GetSeq()
			o.mu.Unlock()
			signal(o.poke)
		case <-ctx.Done():
			return
		}
	}
}
