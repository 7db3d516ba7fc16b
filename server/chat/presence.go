package chat

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
)

// Presence says who is online anywhere in the cluster
// (presence.Presence).
type Presence interface {
	// Online reports, for each user, whether any device of theirs has a
	// stream open on a live node; users missing from the map are offline.
	Online(ctx context.Context, users []string) (map[string]bool, error)
}

type nobodyOnline struct{}

func (nobodyOnline) Online(context.Context, []string) (map[string]bool, error) { return nil, nil }

// online asks presence; when it cannot answer, everyone is offline (a
// status is a hint, not worth failing a list for).
func (s *social) online(ctx context.Context, users []string) map[string]bool {
	if len(users) == 0 {
		return nil
	}
	on, err := s.presence.Online(ctx, users)
	if err != nil {
		s.log.Warn("presence unreadable; reporting users offline", "err", err)
		return nil
	}
	return on
}

func status(online bool) starlingv1.PresenceStatus {
	if online {
		return starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE
	}
	return starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE
}

// GetPresence answers whether users are online, for those the caller may
// see (themself, friends, group co-members, no block either way); the
// others are HIDDEN, whether they exist or not.
func (s *Service) GetPresence(ctx context.Context, caller auth.Identity, users []string) ([]*starlingv1.UserPresence, error) {
	if len(users) == 0 || len(users) > MaxPresenceUsers {
		return nil, fmt.Errorf("%w: %d", apierr.BadPresenceList, len(users))
	}
	var distinct, others []string
	for _, u := range users {
		if !validID(u) {
			return nil, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(u))
		}
		if slices.Contains(distinct, u) {
			continue
		}
		distinct = append(distinct, u)
		if u != caller.UserID {
			others = append(others, u)
		}
	}
	visible, err := s.store.VisibleUsers(ctx, caller.UserID, others)
	if err != nil {
		return nil, apierr.FromStorage("chat: visible users", err)
	}
	visible = append(visible, caller.UserID)
	online := s.social.online(ctx, visible)
	out := make([]*starlingv1.UserPresence, len(distinct))
	for i, u := range distinct {
		st := starlingv1.PresenceStatus_PRESENCE_STATUS_HIDDEN
		if slices.Contains(visible, u) {
			st = status(online[u])
		}
		out[i] = &starlingv1.UserPresence{UserId: u, Status: st}
	}
	return out, nil
}

// StreamPresence is where the gateway records the streams it opens and
// closes (presence.Presence).
type StreamPresence interface {
	Register(ctx context.Context, node string, dev bus.DeviceKey) error
	Unregister(ctx context.Context, node string, dev bus.DeviceKey) error
}

// WatchPresence wraps the presence the gateway registers streams in, so
// that a user coming online or going offline is told to their friends
// (PresenceChanged events, see presenceWatch).
func (s *Service) WatchPresence(p StreamPresence) StreamPresence {
	return watchedPresence{inner: p, watch: s.social.watch}
}

type watchedPresence struct {
	inner StreamPresence
	watch *presenceWatch
}

func (w watchedPresence) Register(ctx context.Context, node string, dev bus.DeviceKey) error {
	was := w.watch.isOnline(ctx, dev.UserID)
	err := w.inner.Register(ctx, node, dev)
	if err == nil {
		w.watch.touch(dev.UserID, was)
	}
	return err
}

func (w watchedPresence) Unregister(ctx context.Context, node string, dev bus.DeviceKey) error {
	was := w.watch.isOnline(ctx, dev.UserID)
	err := w.inner.Unregister(ctx, node, dev)
	w.watch.touch(dev.UserID, was)
	return err
}

// presenceSettle is how long a user's streams must stay as they are before
// a change is told: a reconnect (offline then online again within it)
// tells nothing, and a burst of changes tells its outcome once.
const presenceSettle = 500 * time.Millisecond

// presenceWatch tells friends when a user comes online or goes offline.
//
// A stream opening or closing on this node marks its user, with whether
// the user was online anywhere just before (presence: this node's view of
// the cluster, no Redis call). Once the mark is presenceSettle old the
// node asks again; if the answer differs from the one before the first
// change, every online device of the user's friends (no block either way)
// is sent an ephemeral Event, through the bus like a message but stored
// nowhere: presence churn costs no database write, and one read of the
// user's friends per change told. A device that moves between nodes, or
// reconnects within presenceSettle, causes no event. Events are states,
// not transitions, so the rare repeat (two nodes seeing one change) is
// harmless.
type presenceWatch struct {
	s *social

	mu  sync.Mutex
	due map[string]mark // users marked
}

// mark is a user whose streams changed on this node.
type mark struct {
	at  time.Time // the first change since the last settle
	was bool      // online just before it
}

func newPresenceWatch(s *social) *presenceWatch {
	return &presenceWatch{s: s, due: make(map[string]mark)}
}

func (w *presenceWatch) isOnline(ctx context.Context, user string) bool {
	on, err := w.s.presence.Online(ctx, []string{user})
	return err == nil && on[user]
}

func (w *presenceWatch) touch(user string, was bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.due[user]; !ok {
		w.due[user] = mark{at: time.Now(), was: was}
	}
}

// run tells settled changes until ctx ends.
func (w *presenceWatch) run(ctx context.Context) {
	t := time.NewTicker(presenceSettle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.settle(ctx, time.Now().Add(-presenceSettle))
	}
}

// settle tells the changes of users marked before cutoff.
func (w *presenceWatch) settle(ctx context.Context, cutoff time.Time) {
	var users []string
	var was []bool
	w.mu.Lock()
	for u, m := range w.due {
		if m.at.Before(cutoff) {
			users, was = append(users, u), append(was, m.was)
			delete(w.due, u)
		}
	}
	w.mu.Unlock()
	if len(users) == 0 {
		return
	}
	online, err := w.s.presence.Online(ctx, users)
	if err != nil {
		w.s.log.Warn("presence watch: presence unreadable; changes not told", "users", len(users), "err", err)
		return
	}
	for i, u := range users {
		if online[u] != was[i] {
			w.tell(ctx, u, online[u])
		}
	}
}

// tell sends user's new presence to their friends' online devices.
func (w *presenceWatch) tell(ctx context.Context, user string, online bool) {
	friends, err := w.s.store.FriendIDs(ctx, user)
	if err != nil {
		w.s.log.Warn("presence watch: friends unreadable; change not told", "user", user, "err", err)
		return
	}
	if len(friends) == 0 {
		return
	}
	c, err := eventwire.Content(&starlingv1.Event{ActorId: user, Kind: &starlingv1.Event_PresenceChanged{
		PresenceChanged: &starlingv1.PresenceChange{UserId: user, Status: status(online)},
	}})
	if err != nil {
		w.s.log.Error("presence watch: encode", "err", err)
		return
	}
	m := &starlingv1.Message{ConversationId: eventwire.EphemeralConversation, SenderId: eventSender, Content: c, ServerTime: timestamppb.Now()}
	w.s.router.Deliver(ctx, friends, bus.DeviceKey{}, m)
}
