package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/hub"
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
	origin  *hub.Session
	done    func(SendResult)
}

type committed struct {
	batch   []*pending
	results []storage.AppendResult
	err     error
}

// pipeline commits sends in batches and fans them out in commit order.
// Each shard owns the conversations that hash to it, so their seqs are
// committed and fanned out in order; shards run in parallel, which pays
// off on databases that commit concurrently (PostgreSQL, CockroachDB).
type pipeline struct {
	store    Store
	fanout   Fanout
	ids      *idgen.Snowflake
	log      *slog.Logger
	maxBatch int
	linger   time.Duration // see fill
	seed     maphash.Seed
	shards   []chan *pending
}

func newPipeline(store Store, fanout Fanout, ids *idgen.Snowflake, log *slog.Logger, shards, maxBatch, queue int, linger time.Duration) *pipeline {
	p := &pipeline{store: store, fanout: fanout, ids: ids, log: log, maxBatch: maxBatch, linger: linger, seed: maphash.MakeSeed()}
	p.shards = make([]chan *pending, shards)
	for i := range p.shards {
		p.shards[i] = make(chan *pending, queue)
	}
	return p
}

// submit queues a send; it blocks only while the shard's queue is full,
// which is the back-pressure that keeps memory bounded under overload.
func (p *pipeline) submit(ctx context.Context, s *pending) error {
	ch := p.shards[maphash.String(p.seed, s.msg.ConversationID)%uint64(len(p.shards))]
	select {
	case ch <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run drives every shard until ctx ends. Sends still queued then are
// committed before it returns, so nothing accepted is dropped on shutdown.
func (p *pipeline) run(ctx context.Context) {
	done := make(chan struct{})
	for _, ch := range p.shards {
		go func() {
			defer func() { done <- struct{}{} }()
			p.runShard(ctx, ch)
		}()
	}
	for range p.shards {
		<-done
	}
}

func (p *pipeline) runShard(ctx context.Context, in chan *pending) {
	// Two stages: the committer starts the next transaction while the
	// fan-out stage pushes the previous batch. The channel keeps order.
	out := make(chan committed, 1)
	fanDone := make(chan struct{})
	go func() {
		defer close(fanDone)
		for c := range out {
			p.deliver(c)
		}
	}()
	defer func() {
		close(out)
		<-fanDone
	}()
	lastSize := 0
	for {
		var first *pending
		select {
		case first = <-in:
		case <-ctx.Done():
			// Drain what was accepted before the stop.
			for {
				select {
				case s := <-in:
					out <- p.commit([]*pending{s})
				default:
					return
				}
			}
		}
		batch := p.fill([]*pending{first}, in, lastSize)
		lastSize = len(batch)
		out <- p.commit(batch)
	}
}

// fill adds to batch what is queued. Under concurrent load (the previous
// batch held several sends) it also waits up to p.linger for more: a commit
// costs the same for one message or many, so at moderate load a short wait
// buys far bigger batches and less CPU and fsync per message, while a lone
// send at low load still commits at once.
func (p *pipeline) fill(batch []*pending, in chan *pending, lastSize int) []*pending {
	for len(batch) < p.maxBatch {
		select {
		case s := <-in:
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
		case s := <-in:
			batch = append(batch, s)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

func (p *pipeline) commit(batch []*pending) committed {
	msgs := make([]storage.NewMessage, len(batch))
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i, s := range batch {
		s.msg.MsgID = p.ids.Next()
		s.msg.CreatedAt = now
		msgs[i] = s.msg
	}
	// The commit must not be cut short by a shutdown: a half-sent batch
	// would leave clients retrying sends that may have been stored.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := p.store.AppendMessages(ctx, msgs)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("chat: store returned %d results for %d messages", len(results), len(batch))
	}
	return committed{batch: batch, results: results, err: err}
}

func (p *pipeline) deliver(c committed) {
	if c.err != nil {
		p.log.Error("commit failed", "messages", len(c.batch), "err", c.err)
		for _, s := range c.batch {
			s.done(SendResult{Err: fmt.Errorf("chat: store message: %w", c.err)})
		}
		return
	}
	members := make(map[string][]string) // group id → members, read once per batch
	for i, s := range c.batch {
		r := c.results[i]
		var m *starlingv1.Message
		if r.Duplicate {
			var err error
			if m, err = toProto(r.Message); err != nil {
				s.done(SendResult{Err: err})
				continue
			}
		} else {
			m = &starlingv1.Message{
				MsgId:          r.Message.MsgID,
				ConversationId: r.Message.ConversationID,
				Seq:            r.Message.Seq,
				SenderId:       r.Message.SenderID,
				SenderDeviceId: r.Message.SenderDeviceID,
				ClientMsgId:    r.Message.ClientMsgID,
				Content:        s.content,
				ServerTime:     timestamppb.New(r.Message.CreatedAt),
			}
			users := s.users
			if s.groupID != "" {
				var ok bool
				if users, ok = members[s.groupID]; !ok {
					var err error
					users, err = p.listMembers(s.groupID)
					if err != nil {
						// Stored but not pushed: members get it by sync (invariant 6).
						p.log.Warn("list members for fan-out failed", "group", s.groupID, "err", err)
					}
					members[s.groupID] = users
				}
			}
			p.fanout.Deliver(users, s.origin, m)
		}
		s.done(SendResult{Message: m, Duplicate: r.Duplicate})
	}
}

// listMembers reads a group's members for fan-out. It has its own deadline:
// the fan-out stage must not hang on a stuck database, and a member missed
// here catches up by sync.
func (p *pipeline) listMembers(groupID string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.store.ListMembers(ctx, groupID)
}
