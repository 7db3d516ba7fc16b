package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/wire"
)

// DeviceKey identifies one stream of one device: the user, the device, and
// the hub's id of the session, so that a stream replaced by a newer one of
// the same device is told apart from it. The zero key is no device.
type DeviceKey struct {
	UserID   string
	DeviceID string
	Session  uint64 // unique among the sessions of one node; never 0
}

// IsZero reports whether k names no device.
func (k DeviceKey) IsZero() bool { return k.Session == 0 && k.UserID == "" && k.DeviceID == "" }

// Delivery is a committed message for the online devices of Users on one
// node.
type Delivery struct {
	Msg *starlingv1.Message
	// Shared is Msg's encoding, made once per message and shared by every
	// Delivery of it (nil: the receiver makes one).
	Shared *wire.Shared
	Users  []string
	// Except is the sending stream, which learns of its message from its
	// SendAck; the zero key excludes nothing.
	Except DeviceKey
}

// Announce tells the online devices of Users, and every device on the node
// that has seen Conv, that Conv has messages up to Latest they may not have
// been offered: the fallback when a message was stored but who may read it
// could not be read. The devices are sent a Notify and pull.
type Announce struct {
	Conv   string
	Latest int64
	Users  []string
}

// Kick closes a device's stream on the node that gets it.
type Kick struct {
	UserID   string
	DeviceID string
	// Session, when not 0, is the one stream to close: a stream replaced
	// by a newer one of the device elsewhere must not take the newer one
	// down with it. 0 closes whatever stream the device has (logout).
	Session uint64
	Reason  starlingv1.DisconnectReason
}

// Signal is a frame for the online devices of Users on one node that is
// never stored: a Receipt (positions the database already holds, which a
// reconnecting device reads there) or a TypingNotice (ephemeral). Best
// effort, like a Delivery, but nothing finds a lost one: receipts are
// caught up at the next connect, typing is let go.
type Signal struct {
	Frame *starlingv1.StreamResponse
	Users []string
	// Except is a stream not to send it to (the typing device); the zero
	// key excludes nothing.
	Except DeviceKey
}

// Handler takes what is published to a node: the node's hub, and the
// node itself for what concerns more than its devices.
type Handler interface {
	Deliver(d Delivery)
	Announce(a Announce)
	Kick(k Kick)
	// Signal hands s.Frame to the online devices of s.Users.
	Signal(s Signal)
	// GroupChanged says that a group's membership changed on some node:
	// what this node cached of it is stale.
	GroupChanged(group string)
	// Lost says that what was published to this node for a while may not
	// have arrived (the bus lost its connection and is back): the node
	// re-reads what its devices are behind on.
	Lost()
}

// Bus moves deliveries to nodes.
type Bus interface {
	// Publish hands d to the node's subscriber. Best effort: a device that
	// misses a push finds the gap and syncs.
	Publish(ctx context.Context, node string, d Delivery) error
	// PublishAnnounce hands a to the node's subscriber.
	PublishAnnounce(ctx context.Context, node string, a Announce) error
	// PublishKick hands k to the node's subscriber.
	PublishKick(ctx context.Context, node string, k Kick) error
	// PublishSignal hands s to the node's subscriber.
	PublishSignal(ctx context.Context, node string, s Signal) error
	// PublishGroupChanged tells every subscribed node, this one included,
	// that group's membership changed.
	PublishGroupChanged(ctx context.Context, group string) error
	// Subscribe makes h the receiver of what is published to node, from
	// when it returns until stop is called; stop waits for any goroutine
	// the subscription runs.
	Subscribe(ctx context.Context, node string, h Handler) (stop func(), err error)
}

// ErrNoSubscriber: nothing is subscribed to the node published to.
var ErrNoSubscriber = errors.New("bus: no subscriber for node")

// Local is the Bus of one process: Publish calls the node's Handler on the
// caller's goroutine. Several nodes may subscribe (tests run more than one
// in a process).
type Local struct {
	mu   sync.Mutex                         // serializes Subscribe and stop
	subs atomic.Pointer[map[string]Handler] // copied on write: Publish takes no lock
}

var _ Bus = (*Local)(nil)

// NewLocal returns a Local with no subscriber.
func NewLocal() *Local {
	l := &Local{}
	l.subs.Store(&map[string]Handler{})
	return l
}

func (l *Local) handler(node string) (Handler, error) {
	h := (*l.subs.Load())[node]
	if h == nil {
		return nil, fmt.Errorf("%w %q", ErrNoSubscriber, node)
	}
	return h, nil
}

// Publish implements Bus: it returns once the node's Handler has taken d.
func (l *Local) Publish(_ context.Context, node string, d Delivery) error {
	h, err := l.handler(node)
	if err != nil {
		return err
	}
	h.Deliver(d)
	return nil
}

// PublishAnnounce implements Bus.
func (l *Local) PublishAnnounce(_ context.Context, node string, a Announce) error {
	h, err := l.handler(node)
	if err != nil {
		return err
	}
	h.Announce(a)
	return nil
}

// PublishKick implements Bus.
func (l *Local) PublishKick(_ context.Context, node string, k Kick) error {
	h, err := l.handler(node)
	if err != nil {
		return err
	}
	h.Kick(k)
	return nil
}

// PublishSignal implements Bus.
func (l *Local) PublishSignal(_ context.Context, node string, s Signal) error {
	h, err := l.handler(node)
	if err != nil {
		return err
	}
	h.Signal(s)
	return nil
}

// PublishGroupChanged implements Bus.
func (l *Local) PublishGroupChanged(_ context.Context, group string) error {
	for _, h := range *l.subs.Load() {
		h.GroupChanged(group)
	}
	return nil
}

// Subscribe implements Bus. A node has at most one subscriber.
func (l *Local) Subscribe(_ context.Context, node string, h Handler) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.subs.Load()
	if old[node] != nil {
		return nil, fmt.Errorf("bus: node %q already has a subscriber", node)
	}
	next := make(map[string]Handler, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[node] = h
	l.subs.Store(&next)
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			cur := *l.subs.Load()
			next := make(map[string]Handler, len(cur))
			for k, v := range cur {
				if k != node {
					next[k] = v
				}
			}
			l.subs.Store(&next)
		})
	}, nil
}
