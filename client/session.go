package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Session is one device's real-time stream: it sends messages and delivers
// every incoming message once, in order, reconnecting by itself until it
// ends. All methods are safe for concurrent use.
type Session struct {
	c   *Client
	cfg sessionConfig
	log *slog.Logger

	ctx    context.Context // the session's lifetime; its cause is Err
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // every goroutine but the loop itself
	done   chan struct{}  // closed when the loop and all goroutines stopped

	events    chan any          // from receiver, dialer and lister goroutines to the loop
	sends     chan *pendingSend // from Send to the loop
	logouts   chan struct{}     // from Logout to the loop
	resyncReq chan struct{}     // cap 1: from Resync to the loop
	msgs      chan *starlingv1.Message
	evs       chan *starlingv1.Event // nil unless WithEvents
	out       *outbox
	outDone   chan struct{} // closed when the outbox goroutine stopped

	welcome atomic.Pointer[starlingv1.Welcome]

	loop loopState // owned by the loop goroutine only
}

// SessionOption configures Open.
type SessionOption func(*sessionConfig)

type sessionConfig struct {
	store          StateStore
	resyncInterval time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	syncLimit      int32
	welcomeTimeout time.Duration
	sendOnly       bool
	events         bool
	clientVersion  string
	onReceipt      func(*starlingv1.Receipt)
	onTyping       func(*starlingv1.TypingNotice)
	onConnect      func(w *starlingv1.Welcome, reconnect bool)
}

// WithStateStore sets where the session keeps each conversation's last
// delivered seq. The default is a fresh MemoryStore.
func WithStateStore(s StateStore) SessionOption {
	return func(c *sessionConfig) { c.store = s }
}

// WithResyncInterval sets how often the session compares every
// conversation with the server (ListConversations) as a safety net for
// lost pushes; default 5 minutes, 0 or less turns the periodic run off (it
// still runs after each (re)connect and after a gap).
func WithResyncInterval(d time.Duration) SessionOption {
	return func(c *sessionConfig) { c.resyncInterval = d }
}

// WithBackoff bounds the reconnect delay: it starts at min and doubles up
// to max, with jitter. Default 100 ms to 10 s.
func WithBackoff(min, max time.Duration) SessionOption {
	return func(c *sessionConfig) { c.minBackoff, c.maxBackoff = min, max }
}

// WithSyncLimit sets how many messages one Sync asks for (1–500, default
// 200).
func WithSyncLimit(n int32) SessionOption {
	return func(c *sessionConfig) { c.syncLimit = min(max(n, 1), 500) }
}

// WithWelcomeTimeout bounds how long a (re)connect waits for the server's
// Welcome; default 10 s.
func WithWelcomeTimeout(d time.Duration) SessionOption {
	return func(c *sessionConfig) { c.welcomeTimeout = d }
}

// WithConnected makes the session call f each time the server welcomes a
// stream: once for the stream Open made (reconnect false) and again after
// every reconnect (reconnect true), so an app can show "connected" and
// "reconnected". f runs on the session's loop: it must return quickly and
// must not call the session.
func WithConnected(f func(w *starlingv1.Welcome, reconnect bool)) SessionOption {
	return func(c *sessionConfig) { c.onConnect = f }
}

// SendOnly makes a session that only sends: it neither pulls, delivers nor
// acknowledges incoming messages, and Messages is closed at once. For
// scripts and backends that post messages; another session of the device
// (or a later one) still receives everything.
func SendOnly() SessionOption {
	return func(c *sessionConfig) { c.sendOnly = true }
}

// Open starts a Session for the device the client's token names. It returns
// once the server has welcomed the stream, or with the first attempt's
// error: ErrUnauthenticated for a refused token, a codes.Unavailable status
// when the server cannot be reached. From then on the session reconnects by
// itself until ctx ends, Close is called, the server ends it or an error
// comes that a reconnect cannot cure (see Err).
func (c *Client) Open(ctx context.Context, opts ...SessionOption) (*Session, error) {
	cfg := sessionConfig{
		resyncInterval: 5 * time.Minute,
		minBackoff:     100 * time.Millisecond,
		maxBackoff:     10 * time.Second,
		syncLimit:      200,
		welcomeTimeout: 10 * time.Second,
		clientVersion:  "starling-go",
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.store == nil {
		cfg.store = NewMemoryStore()
	}
	cfg.minBackoff = max(cfg.minBackoff, time.Millisecond)
	cfg.maxBackoff = max(cfg.maxBackoff, cfg.minBackoff)

	sctx, cancel := context.WithCancelCause(ctx)
	s := &Session{
		c:         c,
		cfg:       cfg,
		log:       c.log,
		ctx:       sctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		events:    make(chan any, 256),
		sends:     make(chan *pendingSend),
		logouts:   make(chan struct{}),
		resyncReq: make(chan struct{}, 1),
		msgs:      make(chan *starlingv1.Message),
		evs:       make(chan *starlingv1.Event),
		out:       newOutbox(),
		outDone:   make(chan struct{}),
	}
	if c.Token() == "" {
		// Without metadata the server would wait for an Auth frame; there
		// is nothing to put in one.
		cancel(ErrUnauthenticated)
		return nil, &authError{st: status.New(codes.Unauthenticated, "no token: log in first")}
	}
	if !c.track(s) {
		cancel(ErrClosed)
		return nil, ErrClosed
	}
	first, err := s.dial(sctx, 1)
	if err != nil {
		if sctx.Err() != nil {
			err = context.Cause(sctx) // closed or canceled meanwhile: say so
		}
		cancel(err)
		c.untrack(s)
		close(s.done) // Client.Close may be waiting on it
		return nil, fmt.Errorf("open stream: %w", err)
	}
	s.welcome.Store(first.welcome)
	s.log = s.log.With("user", first.welcome.GetUserId(), "device", first.welcome.GetDeviceId())
	s.loop.init()
	if !cfg.events {
		s.evs = nil
	}
	if cfg.sendOnly {
		close(s.msgs)
		if s.evs != nil {
			close(s.evs)
		}
		close(s.outDone)
	} else {
		go func() {
			defer close(s.outDone)
			s.out.run(sctx, s.msgs, s.evs)
		}()
	}
	go s.run(first)
	return s, nil
}

// Messages delivers incoming messages: per conversation in seq order, each
// once, including this device's own sends right after their SendAck. Read
// it steadily: a message counts as delivered (saved in the StateStore and
// acknowledged to the server) when it is received from this channel. The
// channel is closed when the session ends.
func (s *Session) Messages() <-chan *starlingv1.Message { return s.msgs }

// Welcome is the server's Welcome of the current (or last) stream: the
// authenticated user and device.
func (s *Session) Welcome() *starlingv1.Welcome { return s.welcome.Load() }

// Done is closed once the session has ended and all its goroutines have
// stopped.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session runs and says why it ended afterwards:
// ErrClosed (Close), the Open context's error, a *DisconnectError
// (ErrLoggedOut, ErrReplaced), an ErrUnauthenticated or ErrFrameTooLarge
// error, or a PermissionDenied or Unimplemented status (package
// documentation, "Errors").
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Close ends the session and waits for its goroutines. Messages not yet
// received from Messages are not acknowledged, so the server delivers them
// again next time. Close is idempotent and always returns nil.
func (s *Session) Close() error {
	s.cancel(ErrClosed)
	<-s.done
	return nil
}

// Resync asks the session to compare every conversation with the server
// now (as it does periodically), e.g. when an app comes to the foreground.
func (s *Session) Resync() { signal(s.resyncReq) }

// Logout logs this device out through the stream: the server revokes the
// token and closes the stream, and the session ends with ErrLoggedOut. It
// returns nil when that happened, or why not.
func (s *Session) Logout(ctx context.Context) error {
	select {
	case s.logouts <- struct{}{}:
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("logout: %w", ctx.Err())
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("logout: %w", ctx.Err())
	}
	if err := s.Err(); !errors.Is(err, ErrLoggedOut) {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// Recipient is who a message is sent to: a user or a group.
type Recipient struct {
	userID, groupID string
}

// ToUser addresses a one-to-one message to a user id.
func ToUser(userID string) Recipient { return Recipient{userID: userID} }

// ToGroup addresses a message to a group id.
func ToGroup(groupID string) Recipient { return Recipient{groupID: groupID} }

func (r Recipient) String() string {
	if r.groupID != "" {
		return "group " + r.groupID
	}
	return "user " + r.userID
}

// pendingSend is a Send waiting for its SendAck. It survives reconnects:
// the loop resends it with the same client_msg_id until it is answered or
// its context ends.
type pendingSend struct {
	tries  int // refusals as Unavailable so far, for the resend backoff
	ctx    context.Context
	frame  *starlingv1.Send
	result chan sendResult // cap 1, so the loop never waits for Send
}

type sendResult struct {
	ack *starlingv1.SendAck
	err error
}

func (p *pendingSend) resolve(ack *starlingv1.SendAck, err error) {
	select {
	case p.result <- sendResult{ack, err}:
	default: // already resolved
	}
}

// Send sends content and returns the server's SendAck once the message is
// durably stored. It gets a fresh client_msg_id; if the stream breaks
// before the ack, the message is resent with the same client_msg_id after
// reconnect (the server stores it once) until ctx ends. Errors: the
// server's refusal as a gRPC status error (InvalidArgument, PermissionDenied,
// ResourceExhausted, …), ctx's error, or the session's Err once it ended,
// also when it ends while the Send waits.
func (s *Session) Send(ctx context.Context, to Recipient, content *starlingv1.Content) (*starlingv1.SendAck, error) {
	return s.SendWithID(ctx, to, uuid.NewString(), content)
}

// SendText sends a plain text message; see Send.
func (s *Session) SendText(ctx context.Context, to Recipient, text string) (*starlingv1.SendAck, error) {
	return s.Send(ctx, to, &starlingv1.Content{Text: text})
}

// SendWithID is Send with a caller-chosen client_msg_id, for apps that keep
// an outbox across restarts: sending the same id again returns the first
// send's ack and stores nothing new.
func (s *Session) SendWithID(ctx context.Context, to Recipient, clientMsgID string, content *starlingv1.Content) (*starlingv1.SendAck, error) {
	frame := &starlingv1.Send{ClientMsgId: clientMsgID, Content: content}
	switch {
	case to.groupID != "":
		frame.To = &starlingv1.Send_GroupId{GroupId: to.groupID}
	case to.userID != "":
		frame.To = &starlingv1.Send_UserId{UserId: to.userID}
	default:
		return nil, errors.New("send: no recipient")
	}
	p := &pendingSend{ctx: ctx, frame: frame, result: make(chan sendResult, 1)}
	select {
	case s.sends <- p:
	case <-ctx.Done():
		return nil, fmt.Errorf("send to %v: %w", to, ctx.Err())
	case <-s.ctx.Done():
		return nil, fmt.Errorf("send to %v: %w", to, s.Err())
	}
	select {
	case r := <-p.result:
		if r.err != nil {
			return nil, fmt.Errorf("send to %v: %w", to, r.err)
		}
		return r.ack, nil
	case <-ctx.Done():
		// The loop notices the dead context before its next resend.
		return nil, fmt.Errorf("send to %v: %w", to, ctx.Err())
	}
}
