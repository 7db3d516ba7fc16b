package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// social is the friends, blocks, events and presence side of the chat
// logic: the FriendService calls, the relation cache the send path asks,
// and the presence watch.
type social struct {
	store     Store
	router    Router
	ids       *idgen.Snowflake
	log       *slog.Logger
	presence  Presence
	relations *relationCache
	watch     *presenceWatch
	streams   streamLocks
}

func newSocial(cfg Config, store Store, router Router, ids *idgen.Snowflake, log *slog.Logger) *social {
	s := &social{store: store, router: router, ids: ids, log: log, presence: cfg.Presence, relations: newRelationCache(store)}
	if s.presence == nil {
		s.presence = nobodyOnline{}
	}
	s.streams.seed = maphash.MakeSeed()
	s.watch = newPresenceWatch(s)
	return s
}

// streamLocks serializes, per user on this node, the commit of events to
// the user's stream and their fan-out: the hub of one node must be offered
// a stream's events in seq order (invariant 1: a push never jumps a gap it
// cannot see), as the send pipeline's shards do for messages. Events are
// rare (people's actions), so a striped lock held across one transaction
// costs nothing that matters. Across nodes, order is the hub's business
// (Config.OffersMayBeLost).
type streamLocks struct {
	seed    maphash.Seed
	stripes [64]sync.Mutex
}

// lock locks the stripes of users, in one order, and returns the unlock.
func (l *streamLocks) lock(users ...string) func() {
	idx := make([]int, 0, min(len(users), len(l.stripes)))
	for _, u := range users {
		idx = append(idx, int(maphash.String(l.seed, u)%uint64(len(l.stripes))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	return l.lockStripes(idx)
}

// lockAll locks every stripe: for a change whose event users are known only
// inside its transaction (a disband's members).
func (l *streamLocks) lockAll() func() {
	idx := make([]int, len(l.stripes))
	for i := range idx {
		idx[i] = i
	}
	return l.lockStripes(idx)
}

// lockStripes locks the stripes idx (sorted, distinct) and returns the
// unlock.
func (l *streamLocks) lockStripes(idx []int) func() {
	for _, i := range idx {
		l.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			l.stripes[i].Unlock()
		}
	}
}

// eventFor is one event for one user's stream.
type eventFor struct {
	user string
	ev   *starlingv1.Event
}

// eventSender marks the messages that carry events: it contains ':', so no
// user id is it, and (sender, client_msg_id) dedup never mixes a client's
// message with an event.
const eventSender = "evt:"

// change commits a change together with its events (write gets the
// events to store in its transaction) and then offers each event to the
// online devices of its user. Events reach every device of the user,
// including the one that made the change. Errors: what write returns, or
// Unavailable when no event id can be made.
func (s *social) change(ctx context.Context, actor string, actorDevice string, events []eventFor, write func(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error)) error {
	msgs, contents, err := s.eventMessages(actor, actorDevice, events)
	if err != nil {
		return err
	}
	users := make([]string, len(events))
	for i, e := range events {
		users[i] = e.user
	}
	unlock := s.streams.lock(users...)
	defer unlock()
	results, err := write(ctx, msgs)
	if err != nil {
		return err
	}
	s.deliverEvents(ctx, users, contents, results)
	return nil
}

// eventMessages encodes events, made by actor, as messages of their users'
// streams, and returns them with their contents (for deliverEvents).
func (s *social) eventMessages(actor string, actorDevice string, events []eventFor) ([]storage.NewMessage, []*starlingv1.Content, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	msgs := make([]storage.NewMessage, len(events))
	contents := make([]*starlingv1.Content, len(events))
	for i, e := range events {
		e.ev.ActorId = actor
		c, err := eventwire.Content(e.ev)
		if err != nil {
			return nil, nil, err
		}
		b, err := proto.Marshal(c)
		if err != nil {
			return nil, nil, fmt.Errorf("chat: encode event: %w", err)
		}
		id, err := s.ids.Next()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: event id: %w", apierr.Unavailable, err)
		}
		msgs[i] = storage.NewMessage{
			ConversationID: storage.EventsConversationID(e.user),
			MsgID:          id,
			SenderID:       eventSender,
			SenderDeviceID: actorDevice,
			ClientMsgID:    strconv.FormatInt(id, 36),
			Content:        b,
			CreatedAt:      now,
			Members:        []string{e.user},
		}
		contents[i] = c
	}
	return msgs, contents, nil
}

// deliverEvents offers committed events (the results of storing the
// messages eventMessages made, in its order, for users) to their users'
// online devices. The caller holds the users' stream locks.
func (s *social) deliverEvents(ctx context.Context, users []string, contents []*starlingv1.Content, results []storage.AppendResult) {
	dctx := context.WithoutCancel(ctx)
	for i, r := range results {
		if i >= len(contents) || i >= len(users) {
			break
		}
		m := &starlingv1.Message{
			MsgId:          r.Message.MsgID,
			ConversationId: r.Message.ConversationID,
			Seq:            r.Message.Seq,
			SenderId:       r.Message.SenderID,
			SenderDeviceId: r.Message.SenderDeviceID,
			ClientMsgId:    r.Message.ClientMsgID,
			Content:        contents[i],
			ServerTime:     timestamppb.New(r.Message.CreatedAt),
		}
		s.router.Deliver(dctx, []string{users[i]}, bus.DeviceKey{}, m)
	}
}

// relationChanged tells this node's send path at once, and every other
// node over the bus, that what binds a and b changed.
func (s *social) relationChanged(ctx context.Context, a, b string) {
	s.relations.forget(a, b)
	s.router.GroupChanged(context.WithoutCancel(ctx), relationKey(a, b))
}
