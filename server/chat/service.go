package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// Store is what the chat logic needs from the database.
type Store interface {
	storage.Users
	storage.Groups
	storage.Messages
	storage.Cursors
}

// Fanout delivers a committed message to the online devices of users.
// Delivery is best effort: a device that misses a push finds the gap and
// syncs. except is the sending session (nil for sends without one).
type Fanout interface {
	Deliver(userIDs []string, except *hub.Session, m *starlingv1.Message)
}

// Config bounds what clients may do.
type Config struct {
	MaxContentBytes int        // encoded Content size limit
	MaxGroupMembers int        // members per group
	SendRate        rate.Limit // messages per second per user; 0 = unlimited
	SendBurst       int
	SendShards      int           // parallel commit pipelines (1 for SQLite)
	MaxBatch        int           // messages per commit
	BatchLinger     time.Duration // under load, how long a commit waits for more sends
	QueuePerShard   int           // sends waiting per shard before Send blocks
}

// Service is the logic layer.
type Service struct {
	cfg   Config
	store Store
	log   *slog.Logger
	pipe  *pipeline

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
func New(cfg Config, store Store, fanout Fanout, ids *idgen.Snowflake, log *slog.Logger) *Service {
	return &Service{
		cfg:      cfg,
		store:    store,
		log:      log,
		pipe:     newPipeline(store, fanout, ids, log, max(cfg.SendShards, 1), max(cfg.MaxBatch, 1), max(cfg.QueuePerShard, 1), cfg.BatchLinger),
		limiters: make(map[string]*limiter),
		known:    make(map[string]struct{}),
	}
}

// Run runs the send pipeline and forgets idle rate limiters until ctx
// ends. Sends accepted before then are committed before it returns.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.pipe.run(ctx) })
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
	Origin      *hub.Session // the sending stream's session, if any
	ToUser      string
	ToGroup     string
	ClientMsgID string
	Content     *starlingv1.Content
}

// Send validates and authorizes req, then queues it for commit; done is
// called once, after the commit and the fan-out (or with the error). done
// runs on the pipeline's goroutine and must not block. An error returned
// directly means done will not be called.
// Errors: apierr.ErrInvalidArgument, apierr.ErrPermissionDenied,
// apierr.ErrNotFound (unknown recipient), apierr.ErrResourceExhausted (rate).
func (s *Service) Send(ctx context.Context, req SendRequest, done func(SendResult)) error {
	if n := len(req.ClientMsgID); n == 0 || n > 64 {
		return fmt.Errorf("%w: client_msg_id must be 1-64 bytes, got %d", apierr.ErrInvalidArgument, n)
	}
	if req.Content == nil {
		return fmt.Errorf("%w: content is required", apierr.ErrInvalidArgument)
	}
	content, err := proto.Marshal(req.Content)
	if err != nil {
		return fmt.Errorf("%w: content cannot be encoded: %v", apierr.ErrInvalidArgument, err)
	}
	if len(content) > s.cfg.MaxContentBytes {
		return fmt.Errorf("%w: content is %d bytes; the limit is %d", apierr.ErrInvalidArgument, len(content), s.cfg.MaxContentBytes)
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
		done:    done,
	}
	switch {
	case req.ToUser != "" && req.ToGroup != "":
		return fmt.Errorf("%w: send to a user or a group, not both", apierr.ErrInvalidArgument)
	case req.ToUser != "":
		if strings.Contains(req.ToUser, ":") {
			return fmt.Errorf("%w: no user %q", apierr.ErrNotFound, req.ToUser)
		}
		if err := s.requireUser(ctx, req.ToUser); err != nil {
			return err
		}
		p.msg.ConversationID = storage.C2CConversationID(req.From.UserID, req.ToUser)
		p.users = []string{req.From.UserID, req.ToUser}
		if req.ToUser == req.From.UserID {
			p.users = p.users[:1]
		}
		p.msg.Members = p.users
	case req.ToGroup != "":
		conv := storage.GroupConversationID(req.ToGroup)
		if err := s.requireActiveMember(ctx, conv, req.From.UserID); err != nil {
			return err
		}
		p.msg.ConversationID = conv
		p.groupID = req.ToGroup
	default:
		return fmt.Errorf("%w: a recipient (user_id or group_id) is required", apierr.ErrInvalidArgument)
	}
	if !s.allow(req.From.UserID) {
		return fmt.Errorf("%w: sending too fast; the limit is %v messages/s", apierr.ErrResourceExhausted, float64(s.cfg.SendRate))
	}
	return s.pipe.submit(ctx, p)
}

func (s *Service) requireUser(ctx context.Context, id string) error {
	s.knownMu.RLock()
	_, ok := s.known[id]
	s.knownMu.RUnlock()
	if ok {
		return nil
	}
	if _, err := s.store.GetUser(ctx, id); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: no user %q", apierr.ErrNotFound, id)
		}
		return fmt.Errorf("chat: look up recipient: %w", err)
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

// access returns the seq range (after, upto] a user may read in a
// conversation (upto 0: no bound). Errors: apierr.ErrInvalidArgument for a
// malformed id, apierr.ErrPermissionDenied for a non-member.
func (s *Service) access(ctx context.Context, conv, user string) (after, upto int64, err error) {
	pc, err := storage.ParseConversationID(conv)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", apierr.ErrInvalidArgument, err)
	}
	if pc.Kind == storage.KindC2C {
		// The id names both members; no lookup needed.
		if pc.Users[0] != user && pc.Users[1] != user {
			return 0, 0, fmt.Errorf("%w: not a member of %s", apierr.ErrPermissionDenied, conv)
		}
		return 0, 0, nil
	}
	m, err := s.store.GetMembership(ctx, conv, user)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, 0, fmt.Errorf("%w: not a member of %s", apierr.ErrPermissionDenied, conv)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("chat: look up membership: %w", err)
	}
	if !m.Active {
		return m.JoinedSeq, m.LeftSeq, nil
	}
	return m.JoinedSeq, 0, nil
}

// requireActiveMember checks that user may write to (and manage) a group
// conversation. Errors: apierr.ErrNotFound when the group does not exist,
// apierr.ErrPermissionDenied when the user is not (or no longer) a member.
func (s *Service) requireActiveMember(ctx context.Context, conv, user string) error {
	m, err := s.store.GetMembership(ctx, conv, user)
	if err == nil && m.Active {
		return nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("chat: look up membership: %w", err)
	}
	// Only the refusal pays for telling a missing group from a closed one.
	if pc, perr := storage.ParseConversationID(conv); perr == nil && pc.Kind == storage.KindGroup {
		if _, gerr := s.store.GetGroup(ctx, pc.GroupID); errors.Is(gerr, storage.ErrNotFound) {
			return fmt.Errorf("%w: no group %q", apierr.ErrNotFound, pc.GroupID)
		}
	}
	return fmt.Errorf("%w: not a member of %s", apierr.ErrPermissionDenied, conv)
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
		return 0, fmt.Errorf("%w: limit must be 0-%d, got %d", apierr.ErrInvalidArgument, MaxPageLimit, limit)
	case limit == 0:
		return def, nil
	}
	return int(limit), nil
}

// SyncBatch is one answer to Sync.
type SyncBatch struct {
	Messages  []*starlingv1.Message
	HasMore   bool
	LatestSeq int64
}

// Sync returns the messages of conv after afterSeq that user may read.
func (s *Service) Sync(ctx context.Context, user, conv string, afterSeq int64, limit int32) (SyncBatch, error) {
	n, err := pageLimit(limit, DefaultSyncLimit)
	if err != nil {
		return SyncBatch{}, err
	}
	if afterSeq < 0 {
		return SyncBatch{}, fmt.Errorf("%w: after_seq must not be negative", apierr.ErrInvalidArgument)
	}
	joined, upto, err := s.access(ctx, conv, user)
	if err != nil {
		return SyncBatch{}, err
	}
	ms, err := s.store.ListMessages(ctx, conv, max(afterSeq, joined), upto, n+1)
	if err != nil {
		return SyncBatch{}, fmt.Errorf("chat: sync %s: %w", conv, err)
	}
	b := SyncBatch{HasMore: len(ms) > n}
	if b.HasMore {
		ms = ms[:n]
	}
	if b.Messages, err = toProtos(ms); err != nil {
		return SyncBatch{}, err
	}
	switch {
	case upto > 0:
		b.LatestSeq = upto
	case !b.HasMore && len(ms) > 0:
		b.LatestSeq = ms[len(ms)-1].Seq
	default:
		if b.LatestSeq, err = s.store.LatestSeq(ctx, conv); err != nil {
			return SyncBatch{}, fmt.Errorf("chat: latest seq of %s: %w", conv, err)
		}
	}
	return b, nil
}

// History returns one page of conv before beforeSeq (0: from the newest),
// ascending, and whether older messages remain.
func (s *Service) History(ctx context.Context, user, conv string, beforeSeq int64, limit int32) ([]*starlingv1.Message, bool, error) {
	n, err := pageLimit(limit, DefaultHistoryLimit)
	if err != nil {
		return nil, false, err
	}
	if beforeSeq < 0 {
		return nil, false, fmt.Errorf("%w: before_seq must not be negative", apierr.ErrInvalidArgument)
	}
	joined, upto, err := s.access(ctx, conv, user)
	if err != nil {
		return nil, false, err
	}
	if upto > 0 && (beforeSeq == 0 || beforeSeq > upto+1) {
		beforeSeq = upto + 1
	}
	ms, err := s.store.ListMessagesBefore(ctx, conv, joined, beforeSeq, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("chat: history of %s: %w", conv, err)
	}
	more := len(ms) > n
	if more {
		ms = ms[1:]
	}
	out, err := toProtos(ms)
	return out, more, err
}

// Conversations lists the user's conversations as the device sees them;
// with onlyBehind, just those with messages past the device's cursor.
func (s *Service) Conversations(ctx context.Context, user, device string, onlyBehind bool) ([]storage.ConversationState, error) {
	cs, err := s.store.ListConversations(ctx, user, device, onlyBehind)
	if err != nil {
		return nil, fmt.Errorf("chat: list conversations: %w", err)
	}
	return cs, nil
}

// GetUser finds a user by id or username.
func (s *Service) GetUser(ctx context.Context, id, username string) (storage.User, error) {
	var (
		u   storage.User
		err error
	)
	switch {
	case id != "":
		u, err = s.store.GetUser(ctx, id)
	case username != "":
		u, err = s.store.GetUserByUsername(ctx, username)
	default:
		return storage.User{}, fmt.Errorf("%w: user_id or username is required", apierr.ErrInvalidArgument)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, fmt.Errorf("%w: no such user", apierr.ErrNotFound)
	}
	if err != nil {
		return storage.User{}, fmt.Errorf("chat: get user: %w", err)
	}
	return u, nil
}

// CreateGroup creates a group owned by owner with owner and memberIDs.
func (s *Service) CreateGroup(ctx context.Context, owner, name string, memberIDs []string) (storage.Group, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64 {
		return storage.Group{}, fmt.Errorf("%w: group name must be 1-64 characters", apierr.ErrInvalidArgument)
	}
	members, err := s.memberList(memberIDs)
	if err != nil {
		return storage.Group{}, err
	}
	if !slices.Contains(members, owner) {
		members = append(members, owner)
	}
	if len(members) > s.cfg.MaxGroupMembers {
		return storage.Group{}, fmt.Errorf("%w: a group holds at most %d members", apierr.ErrResourceExhausted, s.cfg.MaxGroupMembers)
	}
	g := storage.Group{ID: idgen.Random("g"), Name: name, OwnerID: owner, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.store.CreateGroup(ctx, g, members, s.cfg.MaxGroupMembers); err != nil {
		return storage.Group{}, groupErr("create group", err)
	}
	g.MemberCount = len(members)
	return g, nil
}

// AddMembers adds users to a group the caller is a member of.
func (s *Service) AddMembers(ctx context.Context, caller, groupID string, userIDs []string) ([]string, error) {
	users, err := s.memberList(userIDs)
	if err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%w: user_ids is empty", apierr.ErrInvalidArgument)
	}
	if err := s.requireActiveMember(ctx, storage.GroupConversationID(groupID), caller); err != nil {
		return nil, err
	}
	added, err := s.store.AddMembers(ctx, groupID, users, s.cfg.MaxGroupMembers)
	if err != nil {
		return nil, groupErr("add members", err)
	}
	return added, nil
}

// LeaveGroup removes the caller from a group.
func (s *Service) LeaveGroup(ctx context.Context, caller, groupID string) error {
	if err := s.requireActiveMember(ctx, storage.GroupConversationID(groupID), caller); err != nil {
		return err
	}
	if err := s.store.LeaveGroup(ctx, groupID, caller); err != nil {
		return groupErr("leave group", err)
	}
	return nil
}

// GetGroup returns a group and its members to one of its members.
func (s *Service) GetGroup(ctx context.Context, caller, groupID string) (storage.Group, []string, error) {
	if err := s.requireActiveMember(ctx, storage.GroupConversationID(groupID), caller); err != nil {
		return storage.Group{}, nil, err
	}
	g, err := s.store.GetGroup(ctx, groupID)
	if err != nil {
		return storage.Group{}, nil, groupErr("get group", err)
	}
	members, err := s.store.ListMembers(ctx, groupID)
	if err != nil {
		return storage.Group{}, nil, groupErr("list members", err)
	}
	return g, members, nil
}

// memberList checks and de-duplicates user ids given by a client.
func (s *Service) memberList(ids []string) ([]string, error) {
	if len(ids) > s.cfg.MaxGroupMembers {
		return nil, fmt.Errorf("%w: a group holds at most %d members", apierr.ErrResourceExhausted, s.cfg.MaxGroupMembers)
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id == "" || strings.Contains(id, ":") {
			return nil, fmt.Errorf("%w: %q is not a user id", apierr.ErrInvalidArgument, id)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

func groupErr(op string, err error) error {
	switch {
	case errors.Is(err, storage.ErrGroupFull):
		return fmt.Errorf("%w: %v", apierr.ErrResourceExhausted, err)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s: a group or user does not exist", apierr.ErrNotFound, op)
	}
	return fmt.Errorf("chat: %s: %w", op, err)
}
