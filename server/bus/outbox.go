package bus

import (
	"context"
	"errors"
	"sync"
	"time"
)

// outbox is what waits to be published to one node.
type outbox struct {
	node string
	mu   sync.Mutex
	q    []Delivery
	wake chan struct{} // cap 1
}

const (
	outboxMax   = 10000 // deliveries waiting for one node
	outboxBatch = 256   // deliveries per publish
)

// outbox returns node's outbox, made on first use; nil when deliveries to
// node are published synchronously (no Batcher, or Run not running).
func (r *Router) outbox(node string) *outbox {
	b, ok := r.bus.(Batcher)
	if !ok {
		return nil
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.runCtx == nil {
		return nil
	}
	ob := r.outboxes[node]
	if ob == nil {
		ob = &outbox{node: node, wake: make(chan struct{}, 1)}
		r.outboxes[node] = ob
		r.outWG.Add(1)
		go func() {
			defer r.outWG.Done()
			r.drain(r.runCtx, b, ob)
		}()
	}
	return ob
}

func (r *Router) queue(ob *outbox, d Delivery) {
	ob.mu.Lock()
	full := len(ob.q) >= outboxMax
	if !full {
		ob.q = append(ob.q, d)
	}
	ob.mu.Unlock()
	if full {
		r.failed(ob.node, d.Msg.ConversationId, d.Msg.Seq, d.Users, errOutboxFull)
		return
	}
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

var errOutboxFull = errors.New("bus: outbox full")

// drain publishes what ob queues until ctx ends, then what is left, for a
// moment: the last sends of a draining node are answered after their
// fan-out was queued.
func (r *Router) drain(ctx context.Context, b Batcher, ob *outbox) {
	for {
		select {
		case <-ob.wake:
			r.flush(ctx, b, ob)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			r.flush(last, b, ob)
			cancel()
			return
		}
	}
}

// flush publishes everything queued in ob, outboxBatch at a time.
func (r *Router) flush(ctx context.Context, b Batcher, ob *outbox) {
	for {
		ob.mu.Lock()
		n := min(len(ob.q), outboxBatch)
		ds := ob.q[:n:n]
		ob.q = ob.q[n:]
		if len(ob.q) == 0 {
			ob.q = nil // let the backing array go
		}
		ob.mu.Unlock()
		if n == 0 {
			return
		}
		err := r.publish(ctx, ob.node, true, func(ctx context.Context) error { return b.PublishBatch(ctx, ob.node, ds) })
		if err != nil {
			for _, d := range ds {
				r.failed(ob.node, d.Msg.ConversationId, d.Msg.Seq, d.Users, err)
			}
		}
	}
}
