package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// The session loop is one goroutine that owns all delivery state (loopState)
// and is the only writer on the stream. Everything else talks to it through
// channels: a receiver goroutine per stream forwards frames, short-lived
// goroutines dial and list conversations, and Send/Logout/Resync submit
// requests. Keeping the state single-owner is what makes the ordering rules
// easy to check.

// loopState is owned by the loop goroutine; nothing else touches it.
type loopState struct {
	cur      *conn       // nil while disconnected
	connSeq  uint64      // id of the last stream dialed
	nextRef  uint64      // last ref used; refs are unique per session, so stale answers never match
	attempts int         // failed (re)connects in a row, for backoff
	retry    *time.Timer // pending reconnect, nil otherwise
	dialing  bool
	welcomed bool // a stream was welcomed before (the next is a reconnect)

	pending  []*pendingSend          // unanswered sends, in the order they were made
	sendRefs map[uint64]*pendingSend // ref → send, on the current stream
	syncRefs map[uint64]string       // ref → conversation, on the current stream
	convs    map[string]*convState   // every conversation seen
	dirty    map[string]struct{}     // conversations to Save and/or PushAck
	parked   map[string]struct{}     // conversations whose Sync waits for the app to read
	listing  bool                    // a ListConversations is running
	again    bool                    // run ListConversations again when it ends
	initConn uint64                  // stream whose first ListConversations has not come back
	outboxHW int                     // pause Sync above this many undelivered messages
}

func (l *loopState) init() {
	l.sendRefs = make(map[uint64]*pendingSend)
	l.syncRefs = make(map[uint64]string)
	l.convs = make(map[string]*convState)
	l.dirty = make(map[string]struct{})
	l.parked = make(map[string]struct{})
	l.outboxHW = 2000
}

// conn is one Stream RPC.
type conn struct {
	id       uint64
	ctx      context.Context
	cancel   context.CancelFunc
	stream   starlingv1.ChatService_StreamClient
	welcome  *starlingv1.Welcome
	interval time.Duration
	ticker   *time.Ticker
	since    time.Time
	lastRecv time.Time // when the last frame came; the loop's heartbeat watchdog reads it
}

// Events sent to the loop.
type (
	frameEvent struct {
		c *conn
		f *starlingv1.StreamResponse
	}
	brokenEvent struct {
		c   *conn
		err error
	}
	dialEvent struct {
		c   *conn
		err error
	}
	listEvent struct {
		connID uint64
		convs  []*starlingv1.ConversationState
		err    error
	}
)

// post hands an event to the loop unless ctx ends first.
func (s *Session) post(ctx context.Context, ev any) bool {
	select {
	case s.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// dial opens a stream and waits for Welcome. The token travels in the
// metadata (per-RPC credentials), so the server speaks first.
func (s *Session) dial(ctx context.Context, id uint64) (*conn, error) {
	cctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.chat.Stream(cctx)
	if err != nil {
		cancel()
		return nil, streamError(err)
	}
	// A server that accepts the stream but never answers must not hang a
	// reconnect forever.
	var timedOut atomic.Bool
	timer := time.AfterFunc(s.cfg.welcomeTimeout, func() { timedOut.Store(true); cancel() })
	resp, err := stream.Recv()
	timer.Stop()
	if err != nil {
		cancel()
		if timedOut.Load() {
			return nil, fmt.Errorf("no Welcome from server within %v", s.cfg.welcomeTimeout)
		}
		if errors.Is(err, io.EOF) {
			return nil, errors.New("server closed the stream before Welcome")
		}
		return nil, streamError(err)
	}
	var welcome *starlingv1.Welcome
	switch f := resp.GetFrame().(type) {
	case *starlingv1.StreamResponse_Welcome:
		welcome = f.Welcome
	case *starlingv1.StreamResponse_Error:
		cancel()
		return nil, frameError(f.Error)
	case *starlingv1.StreamResponse_Disconnect:
		cancel()
		return nil, disconnectError(f.Disconnect)
	default:
		cancel()
		return nil, fmt.Errorf("server sent %T before Welcome", f)
	}
	interval := welcome.GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = 30 * time.Second
	}
	now := time.Now()
	return &conn{
		id: id, ctx: cctx, cancel: cancel, stream: stream, welcome: welcome,
		interval: interval, since: now, lastRecv: now,
	}, nil
}

func disconnectError(d *starlingv1.Disconnect) error {
	if !d.GetReconnect() {
		return &DisconnectError{Reason: d.GetReason(), Message: d.GetMessage()}
	}
	return fmt.Errorf("server closed the stream (%v): %s", d.GetReason(), d.GetMessage())
}

// receive forwards frames from one stream to the loop until the stream ends.
func (s *Session) receive(c *conn) {
	for {
		f, err := c.stream.Recv()
		if err != nil {
			s.post(c.ctx, brokenEvent{c, err})
			return
		}
		if !s.post(c.ctx, frameEvent{c, f}) {
			return
		}
	}
}

// run is the loop. It returns when the session's context ends, whoever
// ended it (Close, the caller's ctx, or the loop itself on a permanent
// error), after cleaning up.
func (s *Session) run(first *conn) {
	defer close(s.done)
	defer s.c.untrack(s)
	s.loop.connSeq = first.id
	s.connected(first)

	var periodic <-chan time.Time // the safety-net resync
	if s.cfg.resyncInterval > 0 && !s.cfg.sendOnly {
		t := time.NewTicker(s.cfg.resyncInterval)
		defer t.Stop()
		periodic = t.C
	}
	for {
		var heartbeat, retry <-chan time.Time
		if s.loop.cur != nil {
			heartbeat = s.loop.cur.ticker.C
		}
		if s.loop.retry != nil {
			retry = s.loop.retry.C
		}
		select {
		case <-s.ctx.Done():
			s.shutdown()
			return
		case ev := <-s.events:
			s.handle(ev)
		case p := <-s.sends:
			s.addSend(p)
		case <-s.logouts:
			s.logout()
		case <-heartbeat:
			s.heartbeat()
		case <-retry:
			s.loop.retry = nil
			s.startDial()
		case <-periodic:
			s.startList()
		case <-s.resyncReq:
			s.startList()
		case <-s.out.poke:
			s.collectDelivered()
		}
		// Acks wait until the burst of queued events is handled, so many
		// messages arriving at once cost one PushAck per conversation.
		if len(s.loop.dirty) > 0 && len(s.events) == 0 {
			s.flushAcks()
		}
	}
}

func (s *Session) handle(ev any) {
	switch ev := ev.(type) {
	case frameEvent:
		if ev.c == s.loop.cur {
			ev.c.lastRecv = time.Now()
			s.onFrame(ev.f)
		}
	case brokenEvent:
		if ev.c != s.loop.cur {
			return // a stream already given up on
		}
		s.streamEnded(ev.err)
	case dialEvent:
		s.loop.dialing = false
		if ev.err == nil {
			s.connected(ev.c)
			return
		}
		err, class := s.classify(ev.err)
		if class == fatal {
			s.cancel(err)
			return
		}
		if class == retrySlow {
			s.log.Error("reconnect failed, next attempt after the longest backoff", "attempt", s.loop.attempts, "err", err)
		} else {
			s.log.Warn("reconnect failed", "attempt", s.loop.attempts, "err", err)
		}
		s.scheduleRetry(class == retrySlow)
	case listEvent:
		s.onList(ev)
	case resendEvent:
		s.resend(ev.p)
	case frameRequest:
		ev.ok <- s.write(ev.req) != 0
	}
}

// resendEvent: a send refused as Unavailable is due to go again.
type resendEvent struct{ p *pendingSend }

// resend writes p again unless it was answered, given up, or already
// rewritten by a reconnect meanwhile.
func (s *Session) resend(p *pendingSend) {
	if s.loop.cur == nil || !slices.Contains(s.loop.pending, p) {
		return
	}
	for _, q := range s.loop.sendRefs {
		if q == p {
			return
		}
	}
	if err := p.ctx.Err(); err != nil {
		s.loop.pending = slices.DeleteFunc(s.loop.pending, func(q *pendingSend) bool { return q == p })
		p.resolve(nil, err)
		return
	}
	s.writeSend(p)
}

func (s *Session) onFrame(f *starlingv1.StreamResponse) {
	switch fr := f.GetFrame().(type) {
	case *starlingv1.StreamResponse_Pong:
		// lastRecv is all a Pong is for.
	case *starlingv1.StreamResponse_SendAck:
		s.onSendAck(f.GetRef(), fr.SendAck)
	case *starlingv1.StreamResponse_Push:
		if !s.cfg.sendOnly {
			for _, m := range fr.Push.GetMessages() {
				s.accept(m, false)
			}
		}
	case *starlingv1.StreamResponse_Notify:
		if !s.cfg.sendOnly {
			s.onNotify(fr.Notify)
		}
	case *starlingv1.StreamResponse_SyncBatch:
		if !s.cfg.sendOnly {
			s.onSyncBatch(f.GetRef(), fr.SyncBatch)
		}
	case *starlingv1.StreamResponse_Event:
		if !s.cfg.sendOnly {
			s.onEvent(fr.Event)
		}
	case *starlingv1.StreamResponse_Error:
		s.onError(f.GetRef(), fr.Error)
	case *starlingv1.StreamResponse_Disconnect:
		s.streamEnded(disconnectError(fr.Disconnect))
	case *starlingv1.StreamResponse_Receipt:
		if s.cfg.onReceipt != nil {
			s.cfg.onReceipt(fr.Receipt)
		}
	case *starlingv1.StreamResponse_Typing:
		if s.cfg.onTyping != nil {
			s.cfg.onTyping(fr.Typing)
		}
	default:
		s.log.Debug("ignoring frame", "frame", fmt.Sprintf("%T", fr))
	}
}

// connected makes c the current stream and replays what the previous one
// left unfinished.
func (s *Session) connected(c *conn) {
	s.loop.cur = c
	s.welcome.Store(c.welcome)
	c.ticker = time.NewTicker(c.interval)
	s.wg.Go(func() { s.receive(c) })
	s.log.Info("stream open", "node", c.welcome.GetNodeId(), "heartbeat", c.interval)
	if s.cfg.onConnect != nil {
		s.cfg.onConnect(c.welcome, s.loop.welcomed)
	}
	s.loop.welcomed = true

	// Unanswered sends go again, same client_msg_id, in their first order;
	// the server answers a resend with the first send's ack.
	s.loop.pending = slices.DeleteFunc(s.loop.pending, func(p *pendingSend) bool {
		if err := p.ctx.Err(); err != nil {
			p.resolve(nil, err)
			return true
		}
		return false
	})
	for _, p := range s.loop.pending {
		s.writeSend(p)
	}
	// Acks that could not be written while disconnected are still dirty
	// and go out at the end of this loop turn; acks lost with the old
	// stream show up as a server cursor behind ours in the list below and
	// are sent again (serverCursor).
	if !s.cfg.sendOnly {
		// The server's Notifies say which conversations are behind; the
		// list also teaches where unknown conversations start, so pushes
		// for them wait until it is back (see accept).
		s.loop.initConn = c.id
		s.startList()
	}
}

// streamEnded handles the end of the current stream: the session ends on
// an error no reconnect can cure (classify), and reconnects otherwise.
func (s *Session) streamEnded(err error) {
	err, class := s.classify(err)
	if class == fatal {
		s.cancel(err)
		return
	}
	s.failOversized(err)
	s.dropConn(err, class == retrySlow)
}

// dropConn gives up on the current stream and schedules a reconnect, after
// the longest backoff if slow.
func (s *Session) dropConn(err error, slow bool) {
	c := s.loop.cur
	if c == nil {
		return
	}
	c.cancel()
	c.ticker.Stop()
	s.loop.cur = nil
	clear(s.loop.sendRefs)
	clear(s.loop.syncRefs)
	for _, cs := range s.loop.convs {
		cs.syncing, cs.again = false, false
	}
	if slow {
		s.log.Error("stream broken, reconnecting after the longest backoff", "err", err)
	} else {
		s.log.Warn("stream broken, reconnecting", "err", err)
	}
	// A stream that lived a while was a success: start the backoff over.
	if time.Since(c.since) >= s.cfg.maxBackoff {
		s.loop.attempts = 0
	}
	s.scheduleRetry(slow)
}

// scheduleRetry arms the next reconnect: after the usual exponential
// backoff, or after the longest one if slow.
func (s *Session) scheduleRetry(slow bool) {
	n := s.loop.attempts
	if slow {
		n = math.MaxInt
	}
	d := backoff(s.cfg.minBackoff, s.cfg.maxBackoff, n)
	s.loop.attempts++
	s.loop.retry = time.NewTimer(d)
}

// backoff is the delay before reconnect attempt n (0-based): lo·2ⁿ capped
// at hi, then "equal jitter" (half fixed, half random) so that many
// clients cut off at once do not come back at once, yet none retries
// immediately.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 32 {
		if e := lo << n; e > 0 && e < hi {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

func (s *Session) startDial() {
	if s.loop.dialing {
		return
	}
	s.loop.dialing = true
	s.loop.connSeq++
	id := s.loop.connSeq
	s.wg.Go(func() {
		c, err := s.dial(s.ctx, id)
		if !s.post(s.ctx, dialEvent{c, err}) && c != nil {
			c.cancel()
		}
	})
}

func (s *Session) heartbeat() {
	c := s.loop.cur
	// The server closes a stream silent for three intervals; the client
	// gives up on one just as fast, rather than wait for TCP to notice.
	if time.Since(c.lastRecv) > 3*c.interval {
		s.dropConn(errors.New("no frame from server for 3 heartbeat intervals"), false)
		return
	}
	s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
}

// write sends a frame on the current stream with a fresh ref and returns
// the ref, or 0 when there is no stream. A failed write is only logged: the
// receiver sees the same broken stream and reports it with the real error.
func (s *Session) write(req *starlingv1.StreamRequest) uint64 {
	c := s.loop.cur
	if c == nil {
		return 0
	}
	s.loop.nextRef++
	req.Ref = s.loop.nextRef
	if err := c.stream.Send(req); err != nil {
		s.log.Debug("write failed", "err", err)
	}
	return req.Ref
}

func (s *Session) addSend(p *pendingSend) {
	if err := p.ctx.Err(); err != nil {
		p.resolve(nil, err)
		return
	}
	s.loop.pending = append(s.loop.pending, p)
	s.writeSend(p)
}

func (s *Session) writeSend(p *pendingSend) {
	if ref := s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: p.frame}}); ref != 0 {
		s.loop.sendRefs[ref] = p
	}
}

func (s *Session) finishSend(ref uint64) *pendingSend {
	p, ok := s.loop.sendRefs[ref]
	if !ok {
		return nil
	}
	delete(s.loop.sendRefs, ref)
	s.loop.pending = slices.DeleteFunc(s.loop.pending, func(q *pendingSend) bool { return q == p })
	return p
}

func (s *Session) onSendAck(ref uint64, ack *starlingv1.SendAck) {
	p := s.finishSend(ref)
	if p == nil {
		s.log.Debug("SendAck for no pending send", "ref", ref)
		return
	}
	p.resolve(ack, nil)
	if s.cfg.sendOnly {
		return
	}
	// The server does not push a message back to the device that sent it;
	// the app still wants it in the conversation, right where its seq says.
	w := s.welcome.Load()
	s.accept(&starlingv1.Message{
		MsgId:          ack.GetMsgId(),
		ConversationId: ack.GetConversationId(),
		Seq:            ack.GetSeq(),
		SenderId:       w.GetUserId(),
		SenderDeviceId: w.GetDeviceId(),
		ClientMsgId:    p.frame.GetClientMsgId(),
		Content:        proto.CloneOf(p.frame.GetContent()),
		ServerTime:     proto.CloneOf(ack.GetServerTime()),
	}, false)
}

func (s *Session) onError(ref uint64, e *starlingv1.Error) {
	err := frameError(e)
	if p := s.finishSend(ref); p != nil {
		if codes.Code(e.GetCode()) == codes.Unavailable && p.ctx.Err() == nil {
			// The server could not tell whether it stored the message (a
			// commit whose outcome is unknown) or could not store it now.
			// Resending the same client_msg_id is safe: keep it pending and
			// try again after a backoff, until Send's context ends.
			p.tries++
			s.loop.pending = append(s.loop.pending, p)
			time.AfterFunc(backoff(s.cfg.minBackoff, s.cfg.maxBackoff, p.tries-1), func() {
				s.post(s.ctx, resendEvent{p})
			})
		} else {
			p.resolve(nil, err)
		}
	} else if id, ok := s.loop.syncRefs[ref]; ok {
		delete(s.loop.syncRefs, ref)
		if cs := s.loop.convs[id]; cs != nil {
			cs.syncing = false
		}
		s.log.Warn("sync refused", "conversation", id, "err", err)
	} else {
		s.log.Warn("server refused a frame", "ref", ref, "err", err)
	}
	if e.GetFatal() {
		s.streamEnded(err)
	}
}

// logout sends a Logout frame; the server answers with Disconnect
// (LOGGED_OUT) and the session ends. Without a stream the unary Logout does
// the same job.
func (s *Session) logout() {
	if s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Logout{Logout: &starlingv1.Logout{}}}) != 0 {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		if _, err := s.c.auth.Logout(ctx, &starlingv1.LogoutRequest{}); err != nil {
			s.cancel(fmt.Errorf("logout: %w", err))
			return
		}
		s.cancel(&DisconnectError{
			Reason:  starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT,
			Message: "logged out while disconnected",
		})
	})
}

// startList runs ListConversations in the background: the safety net that
// finds conversations whose pushes were lost.
func (s *Session) startList() {
	if s.cfg.sendOnly || s.loop.cur == nil {
		return // connected() lists anyway
	}
	if s.loop.listing {
		s.loop.again = true
		return
	}
	s.loop.listing = true
	connID := s.loop.cur.id
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		convs, err := s.c.ListConversations(ctx)
		s.post(s.ctx, listEvent{connID: connID, convs: convs, err: err})
	})
}

// shutdown runs on the loop once the session's context has ended.
func (s *Session) shutdown() {
	err := context.Cause(s.ctx)
	if c := s.loop.cur; c != nil {
		c.cancel()
		c.ticker.Stop()
		s.loop.cur = nil
	}
	if s.loop.retry != nil {
		s.loop.retry.Stop()
	}
	for _, p := range s.loop.pending {
		p.resolve(nil, err)
	}
	s.loop.pending = nil
	// Save what the app took up to the very end, so a restart does not
	// show it again.
	<-s.outDone
	s.collectDelivered()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer cancel()
	for id := range s.loop.dirty {
		cs := s.loop.convs[id]
		if cs.delivered > cs.saved {
			if err := s.cfg.store.Save(ctx, id, cs.delivered); err != nil {
				s.log.Error("saving state", "conversation", id, "err", err)
			}
		}
	}
	s.wg.Wait()
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
		s.log.Info("session closed", "reason", err)
	} else {
		s.log.Warn("session ended", "reason", err)
	}
}
