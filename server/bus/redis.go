package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/wire"
)

// Redis is the Bus of a cluster: Redis pub/sub, one channel per node
// ("<prefix>bus:<node>") and one every node hears ("<prefix>bus:*all",
// group changes). What is published to a node subscribed in this process
// is handed to it directly, as Local does: a node's own deliveries never
// touch Redis, and go on while Redis is down.
//
// Delivery is at most once, as pub/sub is: a message published while the
// node is not subscribed, or lost when Redis restarts, is not delivered.
// Devices find the gap (the hub never pushes across one) and Sync; when the
// subscription comes back after a break the subscriber is told (Lost) and
// re-reads what its devices are behind on; the database stays the only
// truth.
//
// Order: Redis keeps the order of what one client publishes on one
// channel, and a node publishes a conversation's messages from one
// goroutine in seq order; deliveries from different nodes may interleave,
// which the receiving hub handles (a gap → pull).
type Redis struct {
	c      redis.UniversalClient
	prefix string
	log    *slog.Logger
	local  *Local // the nodes subscribed in this process
}

var _ Bus = (*Redis)(nil)

// NewRedis returns a Bus on c; prefix is put before every channel name,
// so several clusters (or tests) can share one Redis.
func NewRedis(c redis.UniversalClient, prefix string, log *slog.Logger) *Redis {
	return &Redis{c: c, prefix: prefix, log: log, local: NewLocal()}
}

func (r *Redis) channel(node string) string { return r.prefix + "bus:" + node }

// allChannel is heard by every node; "*" cannot start a node id's channel
// name by accident since node ids are checked to be plain words.
func (r *Redis) allChannel() string { return r.prefix + "bus:*all" }

// Publish implements Bus. ErrNoSubscriber when no node listens on the
// channel (the node is gone); an error from Redis otherwise.
func (r *Redis) Publish(ctx context.Context, node string, d Delivery) error {
	if h, _ := r.local.handler(node); h != nil {
		h.Deliver(d)
		return nil
	}
	b, err := encodeDelivery(d)
	if err != nil {
		return err
	}
	return r.publish(ctx, r.channel(node), b)
}

// PublishBatch publishes ds to node as one Redis message: what a Router
// queued for the node while its previous publish was on the wire (see
// Batcher). Order is kept.
func (r *Redis) PublishBatch(ctx context.Context, node string, ds []Delivery) error {
	if h, _ := r.local.handler(node); h != nil {
		for _, d := range ds {
			h.Deliver(d)
		}
		return nil
	}
	if len(ds) == 1 {
		return r.Publish(ctx, node, ds[0])
	}
	b := []byte{kindBatch}
	for _, d := range ds {
		one, err := encodeDelivery(d)
		if err != nil {
			return err
		}
		b = protowire.AppendTag(b, fBatchDelivery, protowire.BytesType)
		b = protowire.AppendBytes(b, one[1:]) // without its kind byte
	}
	return r.publish(ctx, r.channel(node), b)
}

// PublishAnnounce implements Bus.
func (r *Redis) PublishAnnounce(ctx context.Context, node string, a Announce) error {
	if h, _ := r.local.handler(node); h != nil {
		h.Announce(a)
		return nil
	}
	return r.publish(ctx, r.channel(node), encodeAnnounce(a))
}

// PublishKick implements Bus.
func (r *Redis) PublishKick(ctx context.Context, node string, k Kick) error {
	if h, _ := r.local.handler(node); h != nil {
		h.Kick(k)
		return nil
	}
	return r.publish(ctx, r.channel(node), encodeKick(k))
}

// PublishSignal implements Bus.
func (r *Redis) PublishSignal(ctx context.Context, node string, s Signal) error {
	if h, _ := r.local.handler(node); h != nil {
		h.Signal(s)
		return nil
	}
	b, err := encodeSignal(s)
	if err != nil {
		return err
	}
	return r.publish(ctx, r.channel(node), b)
}

// PublishGroupChanged implements Bus: the nodes of this process hear it
// at once, and again through Redis with the others (twice is harmless).
func (r *Redis) PublishGroupChanged(ctx context.Context, group string) error {
	_ = r.local.PublishGroupChanged(ctx, group)
	n, err := r.c.Publish(ctx, r.allChannel(), encodeGroupChanged(group)).Result()
	if err != nil {
		return fmt.Errorf("bus: publish group change: %w", err)
	}
	_ = n // 0 is fine: no other node is up
	return nil
}

func (r *Redis) publish(ctx context.Context, channel string, payload []byte) error {
	n, err := r.c.Publish(ctx, channel, payload).Result()
	switch {
	case err != nil:
		return fmt.Errorf("bus: publish to %q: %w", channel, err)
	case n == 0:
		return fmt.Errorf("%w %q", ErrNoSubscriber, channel)
	}
	return nil
}

// Subscribe implements Bus: it returns once Redis confirmed the
// subscription, and runs one goroutine that hands what arrives to h, in
// arrival order, until stop. If the connection to Redis breaks, go-redis
// resubscribes; what was published meanwhile is lost, and h is told so
// (Lost) once the subscription is back.
func (r *Redis) Subscribe(ctx context.Context, node string, h Handler) (func(), error) {
	ps := r.c.Subscribe(ctx, r.channel(node), r.allChannel())
	for range 2 { // one confirmation per channel
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			return nil, fmt.Errorf("bus: subscribe %q: %w", node, err)
		}
	}
	stopLocal, err := r.local.Subscribe(ctx, node, h)
	if err != nil {
		ps.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.ChannelWithSubscriptions() {
			switch m := m.(type) {
			case *redis.Subscription:
				// A confirmation after the first ones: the connection
				// broke and go-redis subscribed again.
				if m.Kind == "subscribe" && m.Channel == r.channel(node) {
					r.log.Warn("bus: resubscribed after a break; what was published meanwhile is lost", "node", node)
					h.Lost()
				}
			case *redis.Message:
				if err := dispatch([]byte(m.Payload), h); err != nil {
					r.log.Error("bus: undecodable message dropped", "node", node, "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stopLocal()
			ps.Close() // closes the channel: the goroutine ends
			<-done
		})
	}, nil
}

// The wire form of what crosses nodes: a kind byte, then protobuf fields.
// Kept out of proto/: it is not part of the public API and both ends run
// the same code.
const (
	kindDelivery     byte = 1
	kindAnnounce     byte = 2
	kindKick         byte = 3
	kindGroupChanged byte = 4
	kindBatch        byte = 5 // deliveries, each a kindDelivery payload without its kind byte
	kindSignal       byte = 10

	fMsg, fUsers, fExceptUser, fExceptDevice, fExceptSession = 1, 2, 3, 4, 5
	fConv, fLatest, fAnnounceUsers                           = 1, 2, 3
	fKickUser, fKickDevice, fKickSession, fKickReason        = 1, 2, 3, 4
	fGroup                                                   = 1
	fBatchDelivery                                           = 1
	fSignalFrame, fSignalUsers                               = 1, 2 // then the except fields of a delivery
)

func encodeDelivery(d Delivery) ([]byte, error) {
	sh := d.Shared
	if sh == nil {
		sh = &wire.Shared{Msg: d.Msg}
	}
	msg, err := sh.Bytes()
	if err != nil {
		return nil, fmt.Errorf("bus: encode message: %w", err)
	}
	b := []byte{kindDelivery}
	b = protowire.AppendTag(b, fMsg, protowire.BytesType)
	b = protowire.AppendBytes(b, msg)
	for _, u := range d.Users {
		b = protowire.AppendTag(b, fUsers, protowire.BytesType)
		b = protowire.AppendString(b, u)
	}
	if !d.Except.IsZero() {
		b = protowire.AppendTag(b, fExceptUser, protowire.BytesType)
		b = protowire.AppendString(b, d.Except.UserID)
		b = protowire.AppendTag(b, fExceptDevice, protowire.BytesType)
		b = protowire.AppendString(b, d.Except.DeviceID)
		b = protowire.AppendTag(b, fExceptSession, protowire.VarintType)
		b = protowire.AppendVarint(b, d.Except.Session)
	}
	return b, nil
}

func encodeSignal(s Signal) ([]byte, error) {
	frame, err := proto.Marshal(s.Frame)
	if err != nil {
		return nil, fmt.Errorf("bus: encode signal: %w", err)
	}
	b := []byte{kindSignal}
	b = protowire.AppendTag(b, fSignalFrame, protowire.BytesType)
	b = protowire.AppendBytes(b, frame)
	for _, u := range s.Users {
		b = protowire.AppendTag(b, fSignalUsers, protowire.BytesType)
		b = protowire.AppendString(b, u)
	}
	if !s.Except.IsZero() {
		b = protowire.AppendTag(b, fExceptUser, protowire.BytesType)
		b = protowire.AppendString(b, s.Except.UserID)
		b = protowire.AppendTag(b, fExceptDevice, protowire.BytesType)
		b = protowire.AppendString(b, s.Except.DeviceID)
		b = protowire.AppendTag(b, fExceptSession, protowire.VarintType)
		b = protowire.AppendVarint(b, s.Except.Session)
	}
	return b, nil
}

func encodeAnnounce(a Announce) []byte {
	b := []byte{kindAnnounce}
	b = protowire.AppendTag(b, fConv, protowire.BytesType)
	b = protowire.AppendString(b, a.Conv)
	b = protowire.AppendTag(b, fLatest, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(a.Latest))
	for _, u := range a.Users {
		b = protowire.AppendTag(b, fAnnounceUsers, protowire.BytesType)
		b = protowire.AppendString(b, u)
	}
	return b
}

func encodeKick(k Kick) []byte {
	b := []byte{kindKick}
	b = protowire.AppendTag(b, fKickUser, protowire.BytesType)
	b = protowire.AppendString(b, k.UserID)
	b = protowire.AppendTag(b, fKickDevice, protowire.BytesType)
	b = protowire.AppendString(b, k.DeviceID)
	b = protowire.AppendTag(b, fKickSession, protowire.VarintType)
	b = protowire.AppendVarint(b, k.Session)
	b = protowire.AppendTag(b, fKickReason, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(k.Reason))
}

func encodeGroupChanged(group string) []byte {
	b := []byte{kindGroupChanged}
	b = protowire.AppendTag(b, fGroup, protowire.BytesType)
	return protowire.AppendString(b, group)
}

var errBadPayload = errors.New("bus: malformed payload")

// dispatch decodes one payload and hands it to h.
func dispatch(b []byte, h Handler) error {
	if len(b) == 0 {
		return errBadPayload
	}
	kind, b := b[0], b[1:]
	switch kind {
	case kindDelivery:
		d, err := decodeDelivery(b)
		if err != nil {
			return err
		}
		h.Deliver(d)
	case kindBatch:
		// Decode them all first: a malformed batch delivers nothing.
		var ds []Delivery
		err := eachField(b, func(num protowire.Number, v []byte, _ uint64) error {
			if num != fBatchDelivery {
				return nil
			}
			d, err := decodeDelivery(v)
			ds = append(ds, d)
			return err
		})
		if err != nil {
			return err
		}
		for _, d := range ds {
			h.Deliver(d)
		}
	case kindAnnounce:
		var a Announce
		err := eachField(b, func(num protowire.Number, v []byte, n uint64) error {
			switch num {
			case fConv:
				a.Conv = string(v)
			case fLatest:
				a.Latest = int64(n)
			case fAnnounceUsers:
				a.Users = append(a.Users, string(v))
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.Announce(a)
	case kindKick:
		var k Kick
		err := eachField(b, func(num protowire.Number, v []byte, n uint64) error {
			switch num {
			case fKickUser:
				k.UserID = string(v)
			case fKickDevice:
				k.DeviceID = string(v)
			case fKickSession:
				k.Session = n
			case fKickReason:
				k.Reason = starlingv1.DisconnectReason(n)
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.Kick(k)
	case kindSignal:
		s := Signal{Frame: new(starlingv1.StreamResponse)}
		err := eachField(b, func(num protowire.Number, v []byte, n uint64) error {
			switch num {
			case fSignalFrame:
				return proto.Unmarshal(v, s.Frame)
			case fSignalUsers:
				s.Users = append(s.Users, string(v))
			case fExceptUser:
				s.Except.UserID = string(v)
			case fExceptDevice:
				s.Except.DeviceID = string(v)
			case fExceptSession:
				s.Except.Session = n
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.Signal(s)
	case kindGroupChanged:
		var group string
		err := eachField(b, func(num protowire.Number, v []byte, _ uint64) error {
			if num == fGroup {
				group = string(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.GroupChanged(group)
	default:
		return fmt.Errorf("%w: kind %d", errBadPayload, kind)
	}
	return nil
}

func decodeDelivery(b []byte) (Delivery, error) {
	var d Delivery
	msg := new(starlingv1.Message)
	err := eachField(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case fMsg:
			return proto.Unmarshal(v, msg)
		case fUsers:
			d.Users = append(d.Users, string(v))
		case fExceptUser:
			d.Except.UserID = string(v)
		case fExceptDevice:
			d.Except.DeviceID = string(v)
		case fExceptSession:
			d.Except.Session = n
		}
		return nil
	})
	if err != nil {
		return Delivery{}, err
	}
	d.Msg, d.Shared = msg, &wire.Shared{Msg: msg}
	return d, nil
}

// eachField calls f with every field of b: bytes fields as v, varints as n.
func eachField(b []byte, f func(num protowire.Number, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errBadPayload
		}
		b = b[l:]
		var (
			v []byte
			n uint64
		)
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return errBadPayload
		}
		b = b[l:]
		if err := f(num, v, n); err != nil {
			return err
		}
	}
	return nil
}
