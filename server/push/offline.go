package push

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/storage"
)

// Notification is what an offline user missed within one coalescing
// window: the newest message and how many there were. Its JSON is the
// body of the "message.offline" webhook (docs/design.md).
type Notification struct {
	Type           string `json:"type"` // "message.offline"
	Recipient      string `json:"recipient"`
	ConversationID string `json:"conversation_id"`
	SenderID       string `json:"sender_id"`
	MsgID          string `json:"msg_id"` // decimal: JSON numbers lose int64 precision
	Seq            int64  `json:"seq"`
	// Count is how many messages to the recipient the window held (in any
	// conversation); the fields above are the newest one's.
	Count int `json:"count"`
	// Preview is the newest message's text, at most 100 characters;
	// absent when previews are off (--push-preview=false).
	Preview string `json:"preview,omitempty"`
	// Badge is the recipient's unread count when the notification is
	// sent: messages of others after the recipient's read cursors, in
	// every conversation (muted ones too), as stored by then: read
	// positions are written behind, every 250 ms (readstate), well inside
	// the coalescing window. 0 when it could not be read.
	Badge int64 `json:"badge"`
	// Tokens are the recipient's devices' push tokens (PushService).
	Tokens []Token `json:"tokens"`
	Time   int64   `json:"time"` // unix milliseconds of the newest message
}

// Token is one device's push token.
type Token struct {
	DeviceID string `json:"device_id"`
	Platform string `json:"platform"`
	Token    string `json:"token"`
}

// Notifier is told about users who were sent messages while no device of
// theirs was online. Notify must not block (queue, or drop and count).
type Notifier interface {
	Notify(n Notification)
}

// LogNotifier only logs (the default: no webhook configured).
type LogNotifier struct{ Log *slog.Logger }

// Notify implements Notifier.
func (l LogNotifier) Notify(n Notification) {
	l.Log.Debug("offline notification", "recipient", n.Recipient, "conversation", n.ConversationID, "count", n.Count, "devices", len(n.Tokens))
}

// WebhookNotifier posts each notification to a Webhook.
type WebhookNotifier struct{ Webhook *Webhook }

// Notify implements Notifier.
func (w WebhookNotifier) Notify(n Notification) {
	body, err := json.Marshal(n)
	if err == nil {
		w.Webhook.Enqueue(n.Type, body)
	}
}

// Router is the send path's fan-out (bus.Router); Offline wraps it.
type Router interface {
	Deliver(ctx context.Context, users []string, except bus.DeviceKey, m *starlingv1.Message)
	Announce(ctx context.Context, users []string, conv string, latest int64)
	GroupChanged(ctx context.Context, group string)
}

// Locator places users on the nodes holding their devices (presence).
type Locator interface {
	Locate(ctx context.Context, users []string) (map[string][]string, error)
}

// Local counts a user's devices online on this node (hub.Hub).
type Local interface {
	Online(userID string) int
}

// Muter tells whether a user muted a conversation: a muted conversation
// never pushes. nil: nothing is muted. (Per-conversation mute comes with
// the read state of issue 10; it plugs in here.)
type Muter interface {
	Muted(ctx context.Context, userID, conversationID string) (bool, error)
}

// Badges counts a user's unread messages (the inbox's totals).
type Badges interface {
	Badge(ctx context.Context, userID string) (int64, error)
}

// Tokens lists a user's push tokens (storage.Admin).
type Tokens interface {
	ListPushTokens(ctx context.Context, userID string) ([]storage.PushToken, error)
}

// OfflineConfig configures Offline.
type OfflineConfig struct {
	Node     string
	Notifier Notifier
	Locator  Locator
	Local    Local
	Tokens   Tokens
	Muter    Muter   // optional
	Badges   Badges  // optional: no badge without
	Events   *Events // optional: message.stored and group.changed
	// Window coalesces: the messages to one offline user within it make
	// one notification (0: 2 s).
	Window  time.Duration
	Preview bool
	// QueueSize bounds the messages waiting to be checked (0: 8192);
	// past it they are dropped and counted, never waited for.
	QueueSize int
	// MaxPending bounds the users with a notification being coalesced
	// (0: 100,000).
	MaxPending int
}

// Offline wraps the send path's Router: after a message is handed to the
// router, it is queued (never waited for) for a check, off the send path,
// of which recipients have no device online anywhere. In a cluster
// exactly one node checks a message: the one whose pipeline committed it
// (its Router placed users with no device anywhere on itself, and its hub
// knows they have none here). Those users are told to the Notifier, one
// notification per user per Window.
type Offline struct {
	Router
	cfg     OfflineConfig
	log     *slog.Logger
	in      chan offered
	Dropped atomic.Int64 // messages not checked: the queue was full
}

type offered struct {
	users []string
	m     *starlingv1.Message
}

// NewOffline wraps r.
func NewOffline(r Router, cfg OfflineConfig, log *slog.Logger) *Offline {
	if cfg.Window <= 0 {
		cfg.Window = 2 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100000
	}
	return &Offline{Router: r, cfg: cfg, log: log, in: make(chan offered, cfg.QueueSize)}
}

// Deliver implements Router: the inner router's, then a non-blocking
// offer to the offline check.
func (o *Offline) Deliver(ctx context.Context, users []string, except bus.DeviceKey, m *starlingv1.Message) {
	o.Router.Deliver(ctx, users, except, m)
	// Only conversations' messages are checked for a push and are
	// message.stored; of users' event streams ("evt:…": friend requests,
	// blocks, presence), the stored relationship events are friend.changed.
	c := m.GetConversationId()
	message := strings.HasPrefix(c, "c2c:") || strings.HasPrefix(c, "grp:")
	if !message && !(o.cfg.Events.Enabled(EventFriendChanged) && storage.IsEventsConversation(c) && m.GetSeq() > 0) {
		return
	}
	select {
	case o.in <- offered{users: users, m: m}:
	default:
		if n := o.Dropped.Add(1); n&(n-1) == 0 {
			o.log.Warn("offline push: check queue full; message not checked", "dropped", n)
		}
	}
}

// GroupChanged implements Router: the inner router's, then a
// group.changed event.
func (o *Offline) GroupChanged(ctx context.Context, group string) {
	o.Router.GroupChanged(ctx, group)
	// The same signal invalidates relation caches under keys with a ':'
	// (chat's relationKey), which no group id has.
	if !strings.Contains(group, ":") {
		o.cfg.Events.Emit(EventGroupChanged, GroupData{GroupID: group})
	}
}

type note struct {
	n     Notification
	first time.Time
}

// Run checks offered messages and sends coalesced notifications until
// ctx ends.
func (o *Offline) Run(ctx context.Context) {
	pending := map[string]*note{}
	tick := time.NewTicker(max(o.cfg.Window/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case x := <-o.in:
			o.check(ctx, x, pending)
		case now := <-tick.C:
			for user, p := range pending {
				if now.Sub(p.first) >= o.cfg.Window {
					delete(pending, user)
					o.send(ctx, p.n)
				}
			}
		}
	}
}

func (o *Offline) check(ctx context.Context, x offered, pending map[string]*note) {
	if storage.IsEventsConversation(x.m.GetConversationId()) {
		o.relationshipEvent(x)
		return
	}
	o.cfg.Events.Emit(EventMessageStored, messageData(x.m))
	where, err := o.cfg.Locator.Locate(ctx, x.users)
	if err != nil {
		o.log.Warn("offline push: presence unreadable; message not checked", "err", err)
		return
	}
	for _, u := range where[o.cfg.Node] {
		if u == x.m.GetSenderId() || o.cfg.Local.Online(u) > 0 {
			continue
		}
		if o.cfg.Muter != nil {
			if muted, err := o.cfg.Muter.Muted(ctx, u, x.m.GetConversationId()); err != nil || muted {
				continue
			}
		}
		p := pending[u]
		if p == nil {
			if len(pending) >= o.cfg.MaxPending {
				o.Dropped.Add(1)
				continue
			}
			p = &note{first: time.Now()}
			pending[u] = p
		}
		count := p.n.Count + 1
		p.n = Notification{
			Type:           "message.offline",
			Recipient:      u,
			ConversationID: x.m.GetConversationId(),
			SenderID:       x.m.GetSenderId(),
			MsgID:          strconv.FormatInt(x.m.GetMsgId(), 10),
			Seq:            x.m.GetSeq(),
			Count:          count,
			Time:           x.m.GetServerTime().AsTime().UnixMilli(),
		}
		if o.cfg.Preview {
			p.n.Preview = preview(x.m.GetContent().GetText())
		}
	}
}

// relationshipEvent emits the friend.changed event of a stored event, once
// per change: a change stores its event in the stream of each user it
// concerns, and only the actor's copy is emitted (a block's only copy is
// the actor's).
func (o *Offline) relationshipEvent(x offered) {
	ev, err := eventwire.Event(x.m)
	if err != nil {
		o.log.Warn("event webhook: unreadable event; not sent", "conversation", x.m.GetConversationId(), "seq", x.m.GetSeq(), "err", err)
		return
	}
	if len(x.users) != 1 || x.users[0] != ev.GetActorId() {
		return
	}
	if d, ok := friendData(ev); ok {
		o.cfg.Events.Emit(EventFriendChanged, d)
	}
}

func (o *Offline) send(ctx context.Context, n Notification) {
	n.Tokens = []Token{}
	if o.cfg.Tokens != nil {
		ts, err := o.cfg.Tokens.ListPushTokens(ctx, n.Recipient)
		if err != nil {
			o.log.Warn("offline push: push tokens unreadable; notifying without them", "recipient", n.Recipient, "err", err)
		}
		for _, t := range ts {
			n.Tokens = append(n.Tokens, Token{DeviceID: t.DeviceID, Platform: t.Platform, Token: t.Token})
		}
	}
	if o.cfg.Badges != nil {
		// One read per notification, off the send path; the coalescing
		// window makes it one per offline user per window.
		b, err := o.cfg.Badges.Badge(ctx, n.Recipient)
		if err != nil {
			o.log.Warn("offline push: unread count unreadable; notifying without it", "recipient", n.Recipient, "err", err)
		}
		n.Badge = b
	}
	o.cfg.Notifier.Notify(n)
}

// preview cuts text to 100 characters.
func preview(text string) string {
	if utf8.RuneCountInString(text) <= 100 {
		return text
	}
	r := []rune(text)
	return string(r[:100]) + "…"
}
