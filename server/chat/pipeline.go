package chat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// SendResult is the outcome of one send.
type SendResult struct {
	Message   *starlingv1.Message
	Duplicate bool
	Err       error
}

// pending is a validated send waiting for its commit.
type pending struct {
	msg     storage.NewMessage
	content *starlingv1.Content
	groupID string   // group sends: whose members to fan out to
	users   []string // c2c sends: the two users
	origin  bus.DeviceKey
	arrived time.Time  // when Send was called, for the send→ack latency
	span    trace.Span // the send's trace span (a no-op without tracing)
	done    func(SendResult)
	// change, for a group change rather than a send: it stores the change
	// and its system message (msg, with its id and time set) in one
	// transaction, on the group's shard, so the system message is fanned
	// out in seq order with the group's messages (groupops.go).
	// It returns the content it stored, which the fan-out sends.
	change func(ctx context.Context, msg storage.NewMessage) (storage.AppendResult, *starlingv1.Content, error)
	// fannedOut, set by a committed change, is called after its system
	// message's fan-out with the users it went to (groups.go: the
	// members' ephemeral GroupEvent).
	fannedOut func(ctx context.Context, users []string)
}

// answer calls done, tells the observer how long the send took, and ends
// the send's span.
func (p *pipeline) answer(s *pending, r SendResult) {
	if s.change == nil { // the metrics are of sends
		p.observer.Answered(time.Since(s.arrived), r.Err)
	}
	if r.Err != nil {
		s.span.RecordError(r.Err)
		s.span.SetStatus(otelcodes.Error, "refused after queueing")
	} else if r.Message != nil {
		s.span.SetAttributes(attribute.Int64("starling.seq", r.Message.GetSeq()), attribute.Bool("starling.duplicate", r.Duplicate))
	}
	// Ended before the answer goes out, so that whoever sees the answer
	// finds the span complete.
	s.span.End()
	s.done(r)
}

// committed is a batch after its commit: results[i] or errs[i] for each
// send (errs is nil when the whole batch committed).
type committed struct {
	batch   []*pending
	results []storage.AppendResult
	errs    []error
}

// pipeline commits sends in batches and fans them out in commit order.
// Each shard owns the conversations that hash to it, so their seqs are
// committed and fanned out in order; shards run in parallel, which pays
// off on databases that commit concurrently (PostgreSQL, CockroachDB).
type pipeline struct {
	store    Store
	router   Router
	members  *memberCache
	ids      *idgen.Snowflake
	log      *slog.Logger
	observer Observer
	tracer   trace.Tracer // nil: no tracing
	maxBatch int
	linger   time.Duration // see fill
	seed     maphash.Seed
	shards   []chan *pending

	// submit holds mu shared while it queues; stopping takes it
	// exclusively, so no send slips into a shard after its queue closed.
	mu     sync.RWMutex
	closed bool
}

func newPipeline(store Store, router Router, members *memberCache, ids *idgen.Snowflake, log *slog.Logger, observer Observer, tracer trace.Tracer, shards, maxBatch, queue int, linger time.Duration) *pipeline {
	p := &pipeline{store: store, router: router, members: members, ids: ids, log: log, observer: observer, tracer: tracer, maxBatch: maxBatch, linger: linger, seed: maphash.MakeSeed()}
	p.shards = make([]chan *pending, shards)
	for i := range p.shards {
		p.shards[i] = make(chan *pending, queue)
	}
	return p
}

// submit queues a send; it blocks only while the shard's queue is full,
// which is the back-pressure that keeps memory bounded under overload.
// Once the pipeline stops it refuses with ShuttingDown: nothing is taken
// that would not be answered.
func (p *pipeline) submit(ctx context.Context, s *pending) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return apierr.ShuttingDown
	}
	ch := p.shards[maphash.String(p.seed, s.msg.ConversationID)%uint64(len(p.shards))]
	select {
	case ch <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run drives every shard until ctx ends, then closes the queues and waits
// while the shards commit, fan out and answer everything accepted before
// (in batches, as always).
func (p *pipeline) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ch := range p.shards {
		wg.Go(func() { p.runShard(ch) })
	}
	<-ctx.Done()
	p.mu.Lock()
	p.closed = true
	for _, ch := range p.shards {
		close(ch)
	}
	p.mu.Unlock()
	wg.Wait()
}

// runShard commits what arrives on in until in is closed and drained.
func (p *pipeline) runShard(in chan *pending) {
	// Two stages: the committer starts the next transaction while the
	// fan-out stage pushes the previous batch. The channel keeps order.
	out := make(chan committed, 1)
	// handed counts batches given to the fan-out stage and not yet
	// delivered. When it is 0 and no send waits to be committed, the
	// committer delivers the batch itself: there is no next transaction to
	// overlap with, and at ordinary load (a batch of one or two) the
	// hand-off, a goroutine wake-up per batch, costs more than the fan-out.
	// Order holds: the fan-out stage has delivered every earlier batch.
	var handed atomic.Int32
	var fan sync.WaitGroup
	fan.Go(func() {
		for c := range out {
			p.deliver(c)
			handed.Add(-1)
		}
	})
	lastSize := 0
	for first := range in {
		batch := p.fill([]*pending{first}, in, lastSize)
		lastSize = len(batch)
		if hasChange(batch) {
			// Group changes commit alone, in their place among the sends
			// (groupops.go); rare, so always handed to the fan-out stage.
			for _, part := range splitChanges(batch) {
				handed.Add(1)
				out <- p.commitPart(part)
			}
			continue
		}
		c := p.commit(batch)
		if len(in) == 0 && handed.Load() == 0 {
			p.deliver(c)
			continue
		}
		handed.Add(1)
		out <- c
	}
	close(out)
	fan.Wait()
}

// fill adds to batch what is queued. Under concurrent load (the previous
// batch held several sends) it also waits up to p.linger for more: a commit
// costs the same for one message or many, so at moderate load a short wait
// buys far bigger batches and less CPU and fsync per message, while a lone
// send at low load still commits at once. A closed queue ends the wait.
func (p *pipeline) fill(batch []*pending, in chan *pending, lastSize int) []*pending {
	for len(batch) < p.maxBatch {
		select {
		case s, ok := <-in:
			if !ok {
				return batch
			}
			batch = append(batch, s)
			continue
		default:
		}
		break
	}
	if p.linger <= 0 || lastSize < 2 || len(batch) >= p.maxBatch {
		return batch
	}
	timer := time.NewTimer(p.linger)
	defer timer.Stop()
	for len(batch) < p.maxBatch {
		select {
		case s, ok := <-in:
			if !ok {
				return batch
			}
			batch = append(batch, s)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// commit stores a batch in one transaction. If that fails for a reason
// other than the database being unavailable, one bad send must not fail
// the others: the sends are committed one by one, and only those that fail
// alone are refused.
func (p *pipeline) commit(batch []*pending) committed {
	if p.tracer != nil {
		// One span for the batch, linked to every send that rode in it.
		links := make([]trace.Link, len(batch))
		for i, s := range batch {
			links[i] = trace.Link{SpanContext: s.span.SpanContext()}
		}
		_, span := p.tracer.Start(context.Background(), "starling.commit",
			trace.WithLinks(links...), trace.WithAttributes(attribute.Int("starling.batch_size", len(batch))))
		defer span.End()
		for _, s := range batch {
			s.span.AddEvent("committing", trace.WithAttributes(
				attribute.String("starling.batch_trace", span.SpanContext().TraceID().String()),
				attribute.String("starling.batch_span", span.SpanContext().SpanID().String()),
				attribute.Int("starling.batch_size", len(batch))))
		}
	}
	msgs := make([]storage.NewMessage, len(batch))
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i, s := range batch {
		id, err := p.ids.Next()
		if err != nil { // the node number's lease lapsed: no id that could repeat (docs/design.md, node identity)
			c := committed{batch: batch, results: make([]storage.AppendResult, len(batch)), errs: make([]error, len(batch))}
			for i := range batch {
				c.errs[i] = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
			}
			return c
		}
		s.msg.MsgID = id
		s.msg.CreatedAt = now
		msgs[i] = s.msg
	}
	results, err := p.append(msgs)
	if err == nil {
		return committed{batch: batch, results: results}
	}
	c := committed{batch: batch, results: make([]storage.AppendResult, len(batch)), errs: make([]error, len(batch))}
	if len(batch) == 1 || retryable(err) {
		for i := range batch {
			c.errs[i] = err
		}
		return c
	}
	p.log.Warn("batch commit failed; committing its sends one by one", "messages", len(batch), "err", err)
	for i := range msgs {
		r, err := p.append(msgs[i : i+1])
		if err != nil {
			c.errs[i] = err
			continue
		}
		c.results[i] = r[0]
	}
	return c
}

// retryable tells database failures that a resend may overcome (and that
// would fail every send of a batch alike) from ones caused by a send.
func retryable(err error) bool {
	return errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrAmbiguousCommit)
}

func (p *pipeline) append(msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	// The commit must not be cut short by a shutdown: a half-sent batch
	// would leave clients retrying sends that may have been stored.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	results, err := p.store.AppendMessages(ctx, msgs)
	if err == nil && len(results) != len(msgs) {
		err = fmt.Errorf("chat: store returned %d results for %d messages", len(results), len(msgs))
	}
	p.observer.Committed(len(msgs), time.Since(start), err)
	return results, err
}

// deliver fans a committed batch out and answers its senders, in order.
func (p *pipeline) deliver(c committed) {
	// The router bounds its own waits (a remote publish); the local path
	// never waits.
	ctx := context.Background()
	for i, s := range c.batch {
		if s.change != nil && !changed(c, i) {
			p.answer(s, SendResult{Err: c.errs[i]}) // refused, or nothing to change
			continue
		}
		if c.errs != nil && c.errs[i] != nil {
			p.log.Error("commit failed", "conversation", s.msg.ConversationID, "err", c.errs[i])
			p.answer(s, SendResult{Err: apierr.FromStorage("chat: store message", c.errs[i])})
			continue
		}
		r := c.results[i]
		if r.Duplicate {
			p.answer(s, duplicateResult(s, r.Message))
			continue
		}
		m := &starlingv1.Message{
			MsgId:          r.Message.MsgID,
			ConversationId: r.Message.ConversationID,
			Seq:            r.Message.Seq,
			SenderId:       r.Message.SenderID,
			SenderDeviceId: r.Message.SenderDeviceID,
			ClientMsgId:    r.Message.ClientMsgID,
			Content:        s.content,
			ServerTime:     timestamppb.New(r.Message.CreatedAt),
		}
		s.span.AddEvent("committed")
		users := s.users
		if s.groupID == "" {
			p.router.Deliver(ctx, users, s.origin, m)
		} else if members, err := p.recipients(s.groupID, m.Seq, r.MemberEpoch); err != nil {
			// Stored, but who may read it is unknown for now: tell every
			// device that may care to pull; Sync checks membership.
			p.log.Error("group fan-out: members unreadable; announcing instead", "group", s.groupID, "seq", m.Seq, "err", err)
			users = nil
			if set := p.members.get(s.groupID); set != nil {
				users = set.members
			}
			p.router.Announce(ctx, users, m.ConversationId, m.Seq)
		} else {
			users = members
			p.router.Deliver(ctx, users, s.origin, m)
		}
		if s.fannedOut != nil {
			s.fannedOut(ctx, users)
		}
		s.span.AddEvent("fanned out")
		p.answer(s, SendResult{Message: m})
	}
}

// duplicateResult answers a resend: the first send's message, unless the
// client_msg_id was first used for another conversation or other content,
// which is a client bug that must not pass for a stored message.
func duplicateResult(s *pending, first storage.Message) SendResult {
	if first.ConversationID != s.msg.ConversationID || !bytes.Equal(first.Content, s.msg.Content) {
		return SendResult{Err: fmt.Errorf("%w: first used in %s (seq %d)", apierr.ClientMsgIDReused, first.ConversationID, first.Seq)}
	}
	m, err := toProto(first)
	if err != nil {
		return SendResult{Err: err}
	}
	return SendResult{Message: m, Duplicate: true}
}

// Fan-out reads retry a few times before giving up: the shard waits
// meanwhile, which keeps the conversation's pushes in order.
var memberReadBackoff = []time.Duration{0, 20 * time.Millisecond, 200 * time.Millisecond, time.Second}

// recipients returns who may read the group message with seq, stored under
// membership epoch epoch: the cached members when the cache is of that
// epoch, else the members read now when they still are of that epoch,
// else (the membership changed since) the users whose membership period
// contains seq.
func (p *pipeline) recipients(group string, seq, epoch int64) ([]string, error) {
	if set := p.members.get(group); set != nil && set.epoch == epoch {
		return set.members, nil
	}
	var users []string
	err := p.retry(func(ctx context.Context) error {
		set, err := p.members.load(ctx, group)
		if err != nil {
			return err
		}
		if set.epoch == epoch {
			users = set.members
			return nil
		}
		users, err = p.store.MembersAt(ctx, group, seq)
		return err
	})
	return users, err
}

func (p *pipeline) retry(read func(ctx context.Context) error) error {
	var err error
	for _, wait := range memberReadBackoff {
		time.Sleep(wait)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = read(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}
