package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/eventwire"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// Store is what the chat logic needs from the database.
type Store interface {
	storage.Users
	storage.Groups
	storage.Messages
	storage.Cursors
	storage.ReadState
	storage.Friends
}

// Router fans committed messages out to the online devices of their
// recipients, wherever they are (bus.Router: presence, then the bus).
// Delivery is best effort: a device that misses a push finds the gap and
// syncs. Calls are made in commit order per conversation and must not
// block on devices.
type Router interface {
	// Deliver offers m to every online device of users; except is the
	// sending stream (the zero key for sends without one).
	Deliver(ctx context.Context, users []string, except bus.DeviceKey, m *starlingv1.Message)
	// Announce tells the online devices of users, and every online device
	// that has seen conv, that conv has messages up to latest they may not
	// have been offered: they are sent a Notify and pull.
	Announce(ctx context.Context, users []string, conv string, latest int64)
	// GroupChanged tells every node that group's membership changed, so
	// that none authorizes a send from a member set cached before.
	GroupChanged(ctx context.Context, group string)
}

var _ Router = (*bus.Router)(nil)

// Config bounds what clients may do.
type Config struct {
	MaxContentBytes int        // encoded Content size limit
	MaxGroupMembers int        // members per group
	SendRate        rate.Limit // messages per second per user; 0 = unlimited
	SendBurst       int
	// MaxResponseBytes bounds the encoded messages of one SyncBatch or
	// history page (has_more covers the rest), well under gRPC's default
	// 4 MiB receive limit.
	MaxResponseBytes int
	SendShards       int           // parallel commit pipelines (1 for SQLite)
	MaxBatch         int           // messages per commit
	BatchLinger      time.Duration // under load, how long a commit waits for more sends
	QueuePerShard    int           // sends waiting per shard before Send blocks
	// DMPolicy says who may send one-to-one messages to whom (blocks
	// are enforced under every policy).
	DMPolicy DMPolicy
	// Presence says who is online, for GetPresence, friend lists and
	// friends' presence events; nil: nobody is (tests of the logic alone).
	Presence Presence
	// Observer hears what the pipeline does, for metrics; nil: nobody.
	Observer Observer
	// Tracer, if set, traces every send: a span from the Send frame to its
	// answer, with events for the commit (and the batch it rode in, also a
	// span of its own, linked) and the fan-out. nil: no tracing, no cost.
	Tracer trace.Tracer
}

// Observer hears what the send pipeline does, for metrics. It is called on
// the pipeline's goroutines and must not block.
type Observer interface {
	// Committed: a batch of n sends took d to commit (err: it failed).
	Committed(n int, d time.Duration, err error)
	// Answered: a send was answered d after it arrived (err: refused after
	// it was queued, e.g. the database was unavailable).
	Answered(d time.Duration, err error)
	// Synced: a Sync answer carried n messages.
	Synced(n int)
}

type noObserver struct{}

func (noObserver) Committed(int, time.Duration, error) {}
func (noObserver) Answered(time.Duration, error)       {}
func (noObserver) Synced(int)                          {}

// Service is the logic layer.
type Service struct {
	cfg     Config
	store   Store
	log     *slog.Logger
	pipe    *pipeline
	members *memberCache
	router  Router
	social  *social

	limMu    sync.Mutex
	limiters map[string]*limiter

	// known remembers user ids that exist, so a c2c send costs no lookup
	// of its recipient after the first. Users are never deleted, so an
	// entry cannot go stale; the set is cleared when it grows past its cap.
	knownMu sync.RWMutex
	known   map[string]struct{}
}

const knownUsersCap = 1 << 17

type limiter struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

// New returns a Service. Run must be running for sends to complete.
func New(cfg Config, store Store, router Router, ids *idgen.Snowflake, log *slog.Logger) *Service {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	members := newMemberCache(store)
	return &Service{
		cfg:      cfg,
		store:    store,
		log:      log,
		members:  members,
		router:   router,
		social:   newSocial(cfg, store, router, ids, log),
		pipe:     newPipeline(store, router, members, ids, log, cfg.Observer, cfg.Tracer, max(cfg.SendShards, 1), max(cfg.MaxBatch, 1), max(cfg.QueuePerShard, 1), cfg.BatchLinger),
		limiters: make(map[string]*limiter),
		known:    make(map[string]struct{}),
	}
}

// DefaultMaxResponseBytes is the default of Config.MaxResponseBytes.
const DefaultMaxResponseBytes = 1 << 20

// Run runs the send pipeline and forgets idle rate limiters until ctx
// ends. Then it stops taking sends (Send answers ShuttingDown) and commits
// and answers every send accepted before, in batches, before it returns.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.pipe.run(ctx) })
	wg.Go(func() { s.social.watch.run(ctx) })
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-t.C:
			s.forgetIdleLimiters(now.Add(-time.Minute))
		}
	}
}

// SendRequest is one message to send.
type SendRequest struct {
	From        auth.Identity
	Origin      bus.DeviceKey // the sending stream, if any (zero: none)
	ToUser      string
	ToGroup     string
	ClientMsgID string
	Content     *starlingv1.Content
	// Trusted marks a backend's send (AdminService): no per-user rate
	// limit, and the system sender (SystemUserID) needs no membership.
	Trusted bool
}

// Send validates and authorizes req, then queues it for commit; done is
// called once, after the commit and the fan-out (or with the error). done
// runs on the pipeline's goroutine and must not block. An error returned
// directly means done will not be called.
// Errors: apierr.RateLimited (checked first, before any database read),
// BadClientMsgID, ContentRequired, ContentTooLarge, BadRecipient,
// UserNotFound, GroupNotFound, NotMember, ShuttingDown, Unavailable; done
// may also get ClientMsgIDReused and Unavailable.
func (s *Service) Send(ctx context.Context, req SendRequest, done func(SendResult)) error {
	arrived := time.Now()
	span := noSpan
	if s.cfg.Tracer != nil {
		ctx, span = s.cfg.Tracer.Start(ctx, "starling.send")
	}
	err := s.send(ctx, req, done, arrived, span)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, "refused")
		span.End()
	}
	return err
}

// noSpan is the span of every send when tracing is off: its methods do
// nothing.
var noSpan = trace.SpanFromContext(context.Background())

func (s *Service) send(ctx context.Context, req SendRequest, done func(SendResult), arrived time.Time, span trace.Span) error {
	if !req.Trusted && !s.allow(req.From.UserID) {
		return fmt.Errorf("%w: %v messages/s", apierr.RateLimited, float64(s.cfg.SendRate))
	}
	if n := len(req.ClientMsgID); n == 0 || n > 64 {
		return fmt.Errorf("%w: got %d bytes", apierr.BadClientMsgID, n)
	}
	if req.Content == nil {
		return apierr.ContentRequired
	}
	if strings.HasPrefix(req.Content.GetType(), reservedTypePrefix) {
		// Only the server writes system messages (GroupChangeType).
		return fmt.Errorf("%w: %q", apierr.ReservedContentType, req.Content.GetType())
	}
	content, err := proto.Marshal(req.Content)
	if err != nil {
		return fmt.Errorf("%w: cannot be encoded: %v", apierr.ContentRequired, err)
	}
	if len(content) > s.cfg.MaxContentBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", apierr.ContentTooLarge, len(content), s.cfg.MaxContentBytes)
	}
	p := &pending{
		msg: storage.NewMessage{
			SenderID:       req.From.UserID,
			SenderDeviceID: req.From.DeviceID,
			ClientMsgID:    req.ClientMsgID,
			Content:        content,
		},
		content: req.Content,
		origin:  req.Origin,
		arrived: arrived,
		span:    span,
		done:    done,
	}
	switch {
	case req.ToUser != "" && req.ToGroup != "":
		return fmt.Errorf("%w: both given", apierr.BadRecipient)
	case req.ToUser != "":
		if err := s.requireUser(ctx, req.ToUser); err != nil {
			return err
		}
		// Blocks (both directions) and the dm policy, from a cache: no
		// database read per message for a pair that talks. The system
		// sender of a backend is no one's friend and no one blocks it.
		if !isSystemSend(req) {
			if err := s.social.relations.checkDM(ctx, s.cfg.DMPolicy, req.From.UserID, req.ToUser); err != nil {
				return err
			}
		}
		p.msg.ConversationID = storage.C2CConversationID(req.From.UserID, req.ToUser)
		p.users = []string{req.From.UserID, req.ToUser}
		if req.ToUser == req.From.UserID {
			p.users = p.users[:1]
		}
		p.msg.Members = p.users
	case req.ToGroup != "":
		if err := s.requireSender(ctx, req); err != nil {
			return err
		}
		p.msg.ConversationID = storage.GroupConversationID(req.ToGroup)
		p.groupID = req.ToGroup
	default:
		return fmt.Errorf("%w: neither given", apierr.BadRecipient)
	}
	return s.pipe.submit(ctx, p)
}

// reservedTypePrefix starts the content types of the server's own
// messages; clients may not send them, so a client can trust them (and
// sender_id "", which no user has, marks them too).
const reservedTypePrefix = "starling."

// maxIDBytes bounds user and group ids a client names. Server-made ids are
// far shorter; anything longer is refused before it reaches the database
// or any per-session state.
const maxIDBytes = 128

func validID(id string) bool {
	return id != "" && len(id) <= maxIDBytes && !strings.Contains(id, ":")
}

// requireUser checks that a user exists. Errors: BadUserID, UserNotFound,
// Unavailable.
func (s *Service) requireUser(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(id))
	}
	s.knownMu.RLock()
	_, ok := s.known[id]
	s.knownMu.RUnlock()
	if ok {
		return nil
	}
	if _, err := s.store.GetUser(ctx, id); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: %q", apierr.UserNotFound, id)
		}
		return apierr.FromStorage("chat: look up recipient", err)
	}
	s.knownMu.Lock()
	if len(s.known) >= knownUsersCap {
		clear(s.known)
	}
	s.known[id] = struct{}{}
	s.knownMu.Unlock()
	return nil
}

func (s *Service) allow(user string) bool {
	if s.cfg.SendRate <= 0 {
		return true
	}
	now := time.Now()
	s.limMu.Lock()
	l := s.limiters[user]
	if l == nil {
		l = &limiter{lim: rate.NewLimiter(s.cfg.SendRate, max(s.cfg.SendBurst, 1))}
		s.limiters[user] = l
	}
	l.lastUsed = now
	s.limMu.Unlock()
	return l.lim.AllowN(now, 1)
}

// forgetIdleLimiters drops limiters unused since cutoff: by then their
// bucket has refilled, so a fresh one is the same.
func (s *Service) forgetIdleLimiters(cutoff time.Time) {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	for u, l := range s.limiters {
		if l.lastUsed.Before(cutoff) {
			delete(s.limiters, u)
		}
	}
}

// everything is the one period of a one-to-one conversation.
var everything = []storage.Period{{JoinedSeq: 0, LeftSeq: storage.OpenSeq}}

// readable returns the periods of conv that user may read, ascending.
// Errors: BadConversationID, NotMember, UserNotFound (a c2c id naming no
// user), Unavailable.
func (s *Service) readable(ctx context.Context, conv, user string) ([]storage.Period, error) {
	if len(conv) > 2*maxIDBytes+8 {
		return nil, fmt.Errorf("%w: %d bytes", apierr.BadConversationID, len(conv))
	}
	pc, err := storage.ParseConversationID(conv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", apierr.BadConversationID, err)
	}
	if pc.Kind == storage.KindEvents {
		// A user's event stream is theirs alone.
		if pc.UserID != user {
			return nil, apierr.NotMember
		}
		return everything, nil
	}
	if pc.Kind == storage.KindC2C {
		// The id names both members; the peer must exist, so made-up ids
		// create no state anywhere.
		peer := pc.Users[0]
		switch user {
		case pc.Users[0]:
			peer = pc.Users[1]
		case pc.Users[1]:
		default:
			return nil, apierr.NotMember
		}
		if err := s.requireUser(ctx, peer); err != nil {
			return nil, err
		}
		return everything, nil
	}
	if !validID(pc.GroupID) {
		return nil, fmt.Errorf("%w: group id of %d bytes", apierr.BadConversationID, len(pc.GroupID))
	}
	m, err := s.store.GetMembership(ctx, conv, user)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.NotMember
	}
	if err != nil {
		return nil, apierr.FromStorage("chat: look up membership", err)
	}
	return m.Periods, nil
}

// Limits for pulls.
const (
	DefaultSyncLimit    = 100
	DefaultHistoryLimit = 50
	MaxPageLimit        = 500
)

func pageLimit(limit int32, def int) (int, error) {
	switch {
	case limit < 0 || limit > MaxPageLimit:
		return 0, fmt.Errorf("%w: %d, want 0-%d", apierr.BadLimit, limit, MaxPageLimit)
	case limit == 0:
		return def, nil
	}
	return int(limit), nil
}

// SyncBatch is one answer to Sync.
type SyncBatch struct {
	Messages []*starlingv1.Message
	// Events replaces Messages for the user's event stream.
	Events    []*starlingv1.Event
	HasMore   bool
	LatestSeq int64 // the newest seq the user may read
	// Reached is how far the device holds the conversation once it has
	// this batch (given it held everything up to the after_seq it asked
	// from): the last message's seq, or LatestSeq when nothing is left.
	Reached int64
}

// Sync returns the messages of conv after afterSeq that user may read,
// within every membership period, at most limit of them and at most
// MaxResponseBytes encoded; HasMore says there are more.
func (s *Service) Sync(ctx context.Context, user, conv string, afterSeq int64, limit int32) (SyncBatch, error) {
	n, err := pageLimit(limit, DefaultSyncLimit)
	if err != nil {
		return SyncBatch{}, err
	}
	if afterSeq < 0 {
		return SyncBatch{}, fmt.Errorf("%w: after_seq %d", apierr.BadSeq, afterSeq)
	}
	periods, err := s.readable(ctx, conv, user)
	if err != nil {
		return SyncBatch{}, err
	}
	// Latest first: every message up to it is committed, so a batch that
	// reaches it without more has everything up to it (a message committed
	// after this read is pushed, or announced by a Notify).
	latest, err := s.store.LatestSeq(ctx, conv)
	if err != nil {
		return SyncBatch{}, apierr.FromStorage("chat: latest seq", err)
	}
	var ms []storage.Message
	for _, p := range periods {
		lo, hi := max(afterSeq, p.JoinedSeq), min(p.LeftSeq, latest)
		if lo >= hi {
			continue
		}
		page, err := s.store.ListMessages(ctx, conv, lo, hi, n+1-len(ms))
		if err != nil {
			return SyncBatch{}, apierr.FromStorage("chat: sync", err)
		}
		if ms = append(ms, page...); len(ms) > n {
			break
		}
	}
	b := SyncBatch{HasMore: len(ms) > n, LatestSeq: visibleTop(periods, latest)}
	if b.HasMore {
		ms = ms[:n]
	}
	if b.Messages, err = toProtos(ms); err != nil {
		return SyncBatch{}, err
	}
	if fit := fitOldest(b.Messages, s.cfg.MaxResponseBytes); fit < len(b.Messages) {
		b.Messages, b.HasMore = b.Messages[:fit], true
	}
	s.cfg.Observer.Synced(len(b.Messages))
	b.Reached = b.LatestSeq
	if b.HasMore {
		b.Reached = b.Messages[len(b.Messages)-1].Seq
	}
	if storage.IsEventsConversation(conv) {
		// The event stream is delivered as Events (server/eventwire).
		if b.Events, err = eventwire.Events(b.Messages); err != nil {
			return SyncBatch{}, err
		}
		b.Messages = nil
	}
	return b, nil
}

// visibleTop is the newest seq a reader with these periods may see when the
// conversation's latest is latest.
func visibleTop(periods []storage.Period, latest int64) int64 {
	top := int64(0)
	for _, p := range periods {
		if hi := min(p.LeftSeq, latest); hi > p.JoinedSeq {
			top = max(top, hi)
		}
	}
	return top
}

// History returns one page of conv before beforeSeq (0: from the newest),
// ascending, within every membership period, at most limit messages and
// MaxResponseBytes encoded, and whether older messages remain.
func (s *Service) History(ctx context.Context, user, conv string, beforeSeq int64, limit int32) ([]*starlingv1.Message, bool, error) {
	n, err := pageLimit(limit, DefaultHistoryLimit)
	if err != nil {
		return nil, false, err
	}
	if beforeSeq < 0 {
		return nil, false, fmt.Errorf("%w: before_seq %d", apierr.BadSeq, beforeSeq)
	}
	if storage.IsEventsConversation(conv) {
		return nil, false, apierr.EventStreamHistory
	}
	periods, err := s.readable(ctx, conv, user)
	if err != nil {
		return nil, false, err
	}
	before := beforeSeq
	if before == 0 {
		before = storage.OpenSeq
	}
	// Newest period first, each page ascending; pages are then joined
	// oldest first.
	var pages [][]storage.Message
	total := 0
	for i := len(periods) - 1; i >= 0 && total <= n; i-- {
		p := periods[i]
		upper := before
		if !p.Active() {
			upper = min(before, p.LeftSeq+1)
		}
		if upper <= p.JoinedSeq+1 {
			continue
		}
		page, err := s.store.ListMessagesBefore(ctx, conv, p.JoinedSeq, upper, n+1-total)
		if err != nil {
			return nil, false, apierr.FromStorage("chat: history", err)
		}
		pages = append(pages, page)
		total += len(page)
	}
	ms := make([]storage.Message, 0, total)
	for i := len(pages) - 1; i >= 0; i-- {
		ms = append(ms, pages[i]...)
	}
	more := len(ms) > n
	if more {
		ms = ms[len(ms)-n:]
	}
	out, err := toProtos(ms)
	if err != nil {
		return nil, false, err
	}
	if fit := fitNewest(out, s.cfg.MaxResponseBytes); fit < len(out) {
		out, more = out[len(out)-fit:], true
	}
	return out, more, nil
}

// Conversations lists the user's conversations as the device sees them;
// with onlyBehind, just those with messages past the device's cursor.
func (s *Service) Conversations(ctx context.Context, user, device string, onlyBehind bool) ([]storage.ConversationState, error) {
	cs, err := s.store.ListConversations(ctx, user, device, onlyBehind)
	if err != nil {
		return nil, apierr.FromStorage("chat: list conversations", err)
	}
	return cs, nil
}

// GetUser finds a user by id or username.
func (s *Service) GetUser(ctx context.Context, id, username string) (*starlingv1.User, error) {
	var (
		u   storage.User
		err error
	)
	switch {
	case id != "":
		if !validID(id) {
			return nil, fmt.Errorf("%w: %d bytes", apierr.BadUserID, len(id))
		}
		u, err = s.store.GetUser(ctx, id)
	case username != "":
		if len(username) > maxIDBytes {
			return nil, fmt.Errorf("%w: username of %d bytes", apierr.UserNotFound, len(username))
		}
		u, err = s.store.GetUserByUsername(ctx, username)
	default:
		return nil, apierr.UserRequired
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.UserNotFound
	}
	if err != nil {
		return nil, apierr.FromStorage("chat: get user", err)
	}
	return UserProto(u), nil
}

// UserProto is a user as clients see it.
func UserProto(u storage.User) *starlingv1.User {
	return &starlingv1.User{UserId: u.ID, Username: u.Username, DisplayName: u.DisplayName}
}
