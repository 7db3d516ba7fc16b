package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/storage"
)

// ChatServer serves starling.v1.ChatService: the Stream and the unary
// history and conversation calls.
type ChatServer struct {
	starlingv1.UnimplementedChatServiceServer
	Accounts *auth.Accounts
	Chat     *chat.Service
	Hub      *hub.Hub
	Kicker   Kicker
	// Presence records which node holds each open stream's device.
	Presence Presence
	Log      *slog.Logger
	NodeID   string
	// HeartbeatInterval is announced in Welcome.
	HeartbeatInterval time.Duration
	// AuthTimeout bounds the wait for the Auth frame.
	AuthTimeout time.Duration
	// MaxInflightSends bounds sends of one stream awaiting their SendAck.
	MaxInflightSends int
	// WriteTimeout bounds how long an ended stream's writer may stay
	// blocked writing to a device that does not read; then AbortConn
	// closes the device's connection, which ends the write.
	WriteTimeout time.Duration
	// AbortConn closes the connection of the peer at addr; nil or false
	// when it cannot (then the handler returns anyway, see Stream).
	AbortConn func(addr net.Addr) bool
	// MaxUnauthStreams bounds the streams of the node waiting for their
	// Auth frame (0: no bound).
	MaxUnauthStreams int
	// RecheckAfter, when not 0, has a stream read what its device is
	// behind on a second time, this long after the first: in a cluster,
	// another node may commit a message after the first read but before
	// it has heard that the device is here, and push it nowhere.
	RecheckAfter time.Duration
	// OnRefuse, if set, hears every frame refused with an Error frame that
	// keeps the stream open (for metrics); it must not block.
	OnRefuse func(*status.Status)
	// Reads keeps read and delivered positions (MarkRead, PushAck).
	Reads ReadTracker
	// Signals relays receipts and typing to devices on any node.
	Signals Signaler

	unauth atomic.Int64 // streams waiting for their Auth frame
}

// Presence is where the gateway records the streams it opens and closes
// (presence.Presence).
type Presence interface {
	Register(ctx context.Context, node string, dev bus.DeviceKey) error
	Unregister(ctx context.Context, node string, dev bus.DeviceKey) error
}

// presenceTimeout bounds the unregistering of an ended stream, whose own
// context is gone.
const presenceTimeout = 5 * time.Second

type stream = grpc.BidiStreamingServer[starlingv1.StreamRequest, starlingv1.StreamResponse]

// catchUpTimeout bounds the read of what a connecting device is behind on.
const catchUpTimeout = 10 * time.Second

// Stream serves one device. Lifecycle: authenticate (metadata or first
// frame) → register in the hub → Welcome with the catch-up Notifies →
// frames until the client leaves or the session is closed (logout,
// replaced, slow, idle, shutdown).
//
// Goroutines: the handler itself reads, calling Recv for the whole stream
// and dispatching frames (readLoop). Writing is the hub session's: a
// writer goroutine exists only while something is queued (hub.Session
// .Attach), so an idle stream costs the node gRPC's goroutines and this
// handler's, whose stack stays small: the opening work, which runs deep
// in the token check and the database driver, has a goroutine of its own
// (open) that ends once the stream is open.
//
// A session closed from elsewhere (kicked, replaced, slow, shutdown) while
// the handler waits in Recv: its writer writes what is queued and the
// Disconnect, then ends the gRPC stream (streamSink.Finish), which ends
// the Recv. A writer blocked on a device that does not read is cut
// WriteTimeout after the close (streamSink.cut): its connection is closed
// and its stream ended. The handler always waits for the writer before it
// returns, so nothing sends on the stream after it.
func (s *ChatServer) Stream(st stream) error {
	ctx := st.Context()
	id, authed := auth.FromContext(ctx)
	token, err := metadataToken(ctx)
	if err != nil {
		return err
	}
	var first *starlingv1.StreamRequest
	if !authed && token == "" {
		// Unauthenticated streams cost the node before they prove
		// anything: bound how many may wait at once.
		n := s.unauth.Add(1)
		if s.MaxUnauthStreams > 0 && n > int64(s.MaxUnauthStreams) {
			s.unauth.Add(-1)
			st.Send(errorFrame(0, toStatus(s.Log, apierr.TooManyUnauth), true))
			return toError(s.Log, apierr.TooManyUnauth)
		}
		var err error
		first, err = s.readAuthFrame(ctx, st)
		if err != nil {
			s.unauth.Add(-1)
			return err
		}
	}
	var o opened
	done := make(chan struct{})
	go func() {
		defer close(done)
		o = s.open(ctx, st, id, token, first)
	}()
	<-done
	if first != nil {
		s.unauth.Add(-1)
	}
	if o.err != nil {
		return o.err
	}
	sess, sink := o.sess, o.sink
	id = o.id
	defer s.unregister(ctx, sess)
	defer s.streamEnded(id) // the next Welcome reports what changed since

	if s.RecheckAfter > 0 {
		t := time.AfterFunc(s.RecheckAfter, func() { s.recheck(ctx, sess, id) })
		defer t.Stop()
	}

	sends := newSendTracker()
	err = s.readLoop(ctx, st, sess, id, sends)
	// From here the handler returns the stream's status itself.
	sink.ending.Store(true)
	result := readResult(err)
	if errors.Is(err, io.EOF) {
		// The client half-closed (grpcurl does after its last frame):
		// it still expects the answers to what it sent.
		s.drain(sess, sends)
	}
	sess.Close(nil)
	s.awaitWriter(sess, sink)
	if r := sess.Reason(); r != nil {
		s.logStream(ctx, slog.LevelInfo, "stream closed", id, "reason", r.Reason.String())
		return closedStatus(r).Err()
	}
	if result != nil {
		s.logStream(ctx, slog.LevelInfo, "stream closed", id, "err", result)
	} else {
		s.logStream(ctx, slog.LevelInfo, "stream closed", id)
	}
	return result
}

// metadataToken is the bearer token of the stream's metadata, "" if it
// has none (it then authenticates with its first frame).
func metadataToken(ctx context.Context) (string, error) {
	if len(metadata.ValueFromIncomingContext(ctx, "authorization")) == 0 {
		return "", nil
	}
	return grpcauth.AuthFromMD(ctx, "bearer")
}

// opened is what open hands back to the handler.
type opened struct {
	id   auth.Identity
	sess *hub.Session
	sink *streamSink
	err  error // the stream is refused (already told so)
}

// open does a stream's opening work, on a goroutine of its own (see
// Stream): the token check of an Auth frame (first, when the stream came
// without a token), then hub, presence, the catch-up read.
func (s *ChatServer) open(ctx context.Context, st stream, id auth.Identity, token string, first *starlingv1.StreamRequest) opened {
	var authRef uint64
	switch {
	case token != "":
		// A bad token in the metadata fails the call, as it does any
		// other call's.
		var err error
		if id, err = s.Accounts.Authenticate(ctx, token); err != nil {
			return opened{err: toError(s.Log, err)}
		}
	case first != nil:
		var err error
		if id, err = s.authenticateFrame(ctx, st, first); err != nil {
			return opened{err: err}
		}
		authRef = first.GetRef()
	}
	sess, err := s.Hub.Register(id.UserID, id.DeviceID)
	if err != nil {
		st.Send(errorFrame(authRef, toStatus(s.Log, err), true))
		return opened{err: toError(s.Log, err)}
	}
	// Then presence, so that other nodes route to this stream; still
	// before the catch-up read (invariant 2: hub, presence, read).
	if err := s.Presence.Register(ctx, s.NodeID, sess.Key()); err != nil {
		s.Hub.Unregister(sess)
		s.Log.Error("presence: register failed", "user", id.UserID, "device", id.DeviceID, "err", err)
		err = fmt.Errorf("%w: presence: %v", apierr.StreamUnavailable, err)
		st.Send(errorFrame(authRef, toStatus(s.Log, err), true))
		return opened{err: toError(s.Log, err)}
	}
	s.logStream(ctx, slog.LevelInfo, "stream opened", id)

	sink := &streamSink{s: s, ctx: ctx, st: st, sess: sess, id: id}
	sess.OnClose(sink.armCut)
	sess.Attach(sink)

	welcome := &starlingv1.StreamResponse{Ref: authRef, Frame: &starlingv1.StreamResponse_Welcome{Welcome: &starlingv1.Welcome{
		UserId:            id.UserID,
		DeviceId:          id.DeviceID,
		NodeId:            s.NodeID,
		HeartbeatInterval: durationpb.New(s.HeartbeatInterval),
		ServerTime:        timestamppb.Now(),
	}}}
	// The session is registered, so whatever commits from now on is offered
	// to it; read what it is behind on only now (invariant 2). Welcome goes
	// out with the catch-up, so it marks where live pushes begin. Its inbox
	// summary is read after registering too: a receipt written later is
	// held by the session and sent after the Welcome.
	receipts, err := s.welcomeInbox(ctx, id, welcome.GetWelcome())
	if err != nil {
		s.logStream(ctx, slog.LevelWarn, "inbox summary unreadable; Welcome goes without it", id, "err", err)
	}
	if err := s.catchUp(ctx, sess, id, welcome); err != nil {
		s.logStream(ctx, slog.LevelError, "catch-up failed", id, "err", err)
		sess.Close(&starlingv1.Disconnect{Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN, Message: "could not read conversation state; reconnect", Reconnect: true})
	}
	for _, r := range receipts {
		sess.Send(r)
	}
	return opened{id: id, sess: sess, sink: sink}
}

// unregister takes an ended stream out of presence, then out of the hub
// (the reverse of open).
func (s *ChatServer) unregister(ctx context.Context, sess *hub.Session) {
	defer s.Hub.Unregister(sess)
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), presenceTimeout)
	defer cancel()
	if err := s.Presence.Unregister(uctx, s.NodeID, sess.Key()); err != nil {
		s.Log.Warn("presence: unregister failed", "user", sess.UserID, "device", sess.DeviceID, "err", err)
	}
}

// logStream logs about one stream, building nothing when the level is off:
// a stream opens and closes at every connect.
func (s *ChatServer) logStream(ctx context.Context, level slog.Level, msg string, id auth.Identity, args ...any) {
	if !s.Log.Enabled(ctx, level) {
		return
	}
	s.Log.Log(ctx, level, msg, append([]any{"user", id.UserID, "device", id.DeviceID}, args...)...)
}

// closedStatus is the status of a stream whose session was closed for r.
func closedStatus(r *starlingv1.Disconnect) *status.Status {
	switch r.Reason {
	case starlingv1.DisconnectReason_DISCONNECT_REASON_SLOW:
		return status.New(apierr.SlowDevice.Code, apierr.SlowDevice.Message)
	case starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN:
		return status.New(apierr.ShuttingDown.Code, r.Message)
	}
	return status.New(codes.OK, "")
}

// endStream ends the gRPC stream of ctx with st, from any goroutine: the
// handler's Recv and a Send blocked on flow control return at once.
// gRPC's handler API has no such call; the transport stream it puts in
// the context does (WriteStatus, the call gRPC itself makes when a handler
// returns, which cancels the stream). false: not available.
func endStream(ctx context.Context, st *status.Status) bool {
	ts, ok := grpc.ServerTransportStreamFromContext(ctx).(interface {
		WriteStatus(*status.Status) error
	})
	if !ok {
		return false
	}
	ts.WriteStatus(st)
	return true
}

// streamSink is the hub session's way onto the stream (hub.Sink).
type streamSink struct {
	s    *ChatServer
	ctx  context.Context
	st   stream
	sess *hub.Session
	id   auth.Identity
	// ending: the handler is past its read loop and returns the stream's
	// status itself.
	ending atomic.Bool
	cutMu  sync.Mutex
	cutT   *time.Timer // armed when the session closes
}

// Write sends one frame; pushes go out as their shared encoding.
func (w *streamSink) Write(o hub.Out) error {
	if len(o.Push) > 0 {
		b, err := hub.EncodePush(o.Push)
		if err != nil {
			return err
		}
		return w.st.SendMsg(b) // messages encoded once for every recipient (wire.Codec)
	}
	return w.st.Send(o.Frame)
}

// Finish ends the stream once its writer has written everything (or
// failed): the handler, waiting in Recv, then returns.
func (w *streamSink) Finish(err error) {
	if w.ending.Load() {
		return
	}
	st := status.Convert(err)
	if r := w.sess.Reason(); r != nil && err == nil {
		st = closedStatus(r)
	}
	if !endStream(w.ctx, st) {
		w.abort()
	}
}

// armCut bounds, once the session is closed, how long its writer may stay
// blocked on a device that does not read (hub.Session.OnClose).
func (w *streamSink) armCut() {
	w.cutMu.Lock()
	w.cutT = time.AfterFunc(w.s.WriteTimeout, w.cut)
	w.cutMu.Unlock()
}

func (w *streamSink) stopCut() {
	w.cutMu.Lock()
	if w.cutT != nil {
		w.cutT.Stop()
	}
	w.cutMu.Unlock()
}

// cut ends a writer still blocked WriteTimeout after its session closed:
// closing the device's connection ends every write on it (and frees what
// gRPC holds for it), and ending the stream ends the Send.
func (w *streamSink) cut() {
	select {
	case <-w.sess.Written():
		return
	default:
	}
	if w.abort() {
		w.s.logStream(w.ctx, slog.LevelWarn, "writer blocked past the write timeout; connection closed", w.id)
	} else {
		w.s.logStream(w.ctx, slog.LevelWarn, "writer blocked past the write timeout; ending the stream", w.id)
	}
	endStream(w.ctx, status.New(apierr.SlowDevice.Code, apierr.SlowDevice.Message))
}

// abort closes the device's connection, if the node can.
func (w *streamSink) abort() bool {
	p, _ := peer.FromContext(w.ctx)
	return p != nil && w.s.AbortConn != nil && w.s.AbortConn(p.Addr)
}

// awaitWriter waits for the writer of an ended session: it writes what
// was queued and the Disconnect, or fails at once if the client is gone.
// A writer blocked on a device that does not read is cut WriteTimeout
// after the close (streamSink.cut); should even that not end it, the
// handler returns anyway rather than be held.
func (s *ChatServer) awaitWriter(sess *hub.Session, sink *streamSink) {
	defer sink.stopCut()
	select {
	case <-sess.Written():
		return
	default:
	}
	timer := time.NewTimer(2*s.WriteTimeout + time.Second)
	defer timer.Stop()
	select {
	case <-sess.Written():
	case <-timer.C:
		s.logStream(sink.ctx, slog.LevelError, "writer still blocked after its stream was cut", sink.id)
	}
}

func readResult(err error) error {
	if status.Code(err) == codes.Canceled {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// readAuthFrame waits for the first frame of a stream that came without a
// token in its metadata, for at most AuthTimeout. The handler itself waits
// in Recv; at the timeout a timer answers AuthTimeout and ends the stream.
func (s *ChatServer) readAuthFrame(ctx context.Context, st stream) (*starlingv1.StreamRequest, error) {
	const (
		waiting = iota
		arrived
		timedOut
	)
	var state atomic.Int32
	answered := make(chan struct{})
	timer := time.AfterFunc(s.AuthTimeout, func() {
		if !state.CompareAndSwap(waiting, timedOut) {
			return
		}
		defer close(answered)
		st.Send(errorFrame(0, toStatus(s.Log, apierr.AuthTimeout), true))
		if !endStream(ctx, toStatus(s.Log, apierr.AuthTimeout)) {
			if p, _ := peer.FromContext(ctx); p != nil && s.AbortConn != nil {
				s.AbortConn(p.Addr)
			}
		}
	})
	f, err := st.Recv()
	if !state.CompareAndSwap(waiting, arrived) {
		<-answered
		return nil, toError(s.Log, apierr.AuthTimeout)
	}
	timer.Stop()
	if err != nil {
		return nil, err
	}
	if f.GetAuth() == nil {
		st.Send(errorFrame(f.GetRef(), toStatus(s.Log, apierr.AuthRequired), true))
		return nil, toError(s.Log, apierr.AuthRequired)
	}
	return f, nil
}

// authenticateFrame checks the token of an Auth frame.
func (s *ChatServer) authenticateFrame(ctx context.Context, st stream, f *starlingv1.StreamRequest) (auth.Identity, error) {
	a := f.GetAuth()
	id, err := s.Accounts.Authenticate(ctx, a.GetToken())
	if err == nil && a.GetDeviceId() != "" && a.GetDeviceId() != id.DeviceID {
		err = apierr.DeviceMismatch
	}
	if err != nil {
		st2 := toStatus(s.Log, err)
		st.Send(errorFrame(f.GetRef(), st2, true))
		return auth.Identity{}, st2.Err()
	}
	return id, nil
}

// sendTracker counts a stream's sends that await their SendAck.
type sendTracker struct {
	n    atomic.Int64
	zero chan struct{} // cap 1: the count came down to zero
}

func newSendTracker() *sendTracker { return &sendTracker{zero: make(chan struct{}, 1)} }

// add counts one more send and returns how many are in flight.
func (t *sendTracker) add() int64 { return t.n.Add(1) }

// done counts a send answered.
func (t *sendTracker) done() {
	if t.n.Add(-1) == 0 {
		select {
		case t.zero <- struct{}{}:
		default:
		}
	}
}

// drainTimeout bounds how long a half-closed stream is kept to deliver
// the answers to its last frames.
const drainTimeout = 5 * time.Second

// drain waits for the sends in flight to be answered, then for the writer
// to write everything queued so far.
func (s *ChatServer) drain(sess *hub.Session, sends *sendTracker) {
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	for sends.n.Load() > 0 {
		select {
		case <-sends.zero:
		case <-sess.Done():
			return
		case <-deadline.C:
			return
		}
	}
	sess.End()
	select {
	case <-sess.Written():
	case <-sess.Done():
	case <-deadline.C:
	}
}

// catchUp tells the device about every conversation it is behind on.
func (s *ChatServer) catchUp(ctx context.Context, sess *hub.Session, id auth.Identity, welcome *starlingv1.StreamResponse) error {
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	if !s.Hub.OffersMayBeLost() {
		behind, err := s.Behind(ctx, id.UserID, id.DeviceID)
		if err != nil {
			sess.FinishStart(welcome, nil)
			return err
		}
		sess.FinishStart(welcome, behind)
		return nil
	}
	// In a cluster a message committed after this read may never be
	// offered here: the session must know where the device stands in
	// every conversation, not only those it is behind on, to see a gap.
	states, err := s.Chat.Conversations(ctx, id.UserID, id.DeviceID, false)
	if err != nil {
		sess.FinishStart(welcome, nil)
		return err
	}
	var behind, current []hub.CatchUp
	for _, c := range states {
		cu := catchUpOf(c)
		if c.LatestSeq > cu.DeliveredSeq {
			behind = append(behind, cu)
		} else {
			current = append(current, cu)
		}
	}
	sess.Seed(current)
	sess.FinishStart(welcome, behind)
	return nil
}

// Behind reads what a device is behind on: the conversations with
// messages past its cursor (a hub.Reader).
func (s *ChatServer) Behind(ctx context.Context, user, device string) ([]hub.CatchUp, error) {
	states, err := s.Chat.Conversations(ctx, user, device, true)
	if err != nil {
		return nil, err
	}
	behind := make([]hub.CatchUp, len(states))
	for i, c := range states {
		behind[i] = catchUpOf(c)
	}
	return behind, nil
}

// catchUpOf is where a device stands in one conversation: it syncs from
// its cursor, or from where it joined if that is later.
func catchUpOf(c storage.ConversationState) hub.CatchUp {
	return hub.CatchUp{ConversationID: c.ConversationID, LatestSeq: c.LatestSeq, DeliveredSeq: max(c.DeliveredSeq, c.JoinedSeq)}
}

// recheck is the second catch-up read (see RecheckAfter).
func (s *ChatServer) recheck(ctx context.Context, sess *hub.Session, id auth.Identity) {
	select {
	case <-sess.Done():
		return
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	behind, err := s.Behind(ctx, id.UserID, id.DeviceID)
	if err != nil {
		s.logStream(ctx, slog.LevelWarn, "second catch-up read failed; the periodic resync covers it", id, "err", err)
		return
	}
	sess.Recheck(behind)
}

// readLoop receives frames and handles each one: this is where every
// client frame is dispatched.
func (s *ChatServer) readLoop(ctx context.Context, st stream, sess *hub.Session, id auth.Identity, sends *sendTracker) error {
	var typing *rate.Limiter // made at the first Typing frame
	for {
		f, err := st.Recv()
		if err != nil {
			return err
		}
		sess.Touch()
		ref := f.GetRef()
		switch fr := f.Frame.(type) {
		case *starlingv1.StreamRequest_Ping:
			sess.Send(&starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_Pong{Pong: &starlingv1.Pong{ServerTime: timestamppb.Now()}}})
		case *starlingv1.StreamRequest_Send:
			s.handleSend(ctx, sess, id, ref, fr.Send, sends)
		case *starlingv1.StreamRequest_PushAck:
			if fr.PushAck.GetConversationId() == "" || fr.PushAck.GetSeq() <= 0 {
				s.refuse(sess, ref, apierr.BadPushAck)
				continue
			}
			if cur := s.Hub.Ack(sess, fr.PushAck.GetConversationId(), fr.PushAck.GetSeq()); cur > 0 {
				s.Reads.Delivered(id.UserID, fr.PushAck.GetConversationId(), cur)
			}
		case *starlingv1.StreamRequest_MarkRead:
			s.handleMarkRead(ctx, sess, id, ref, fr.MarkRead)
		case *starlingv1.StreamRequest_Typing:
			s.handleTyping(ctx, sess, id, ref, fr.Typing, &typing)
		case *starlingv1.StreamRequest_Sync:
			s.handleSync(ctx, sess, id, ref, fr.Sync)
		case *starlingv1.StreamRequest_Logout:
			if err := logout(ctx, s.Accounts, s.Kicker, id); err != nil {
				s.refuse(sess, ref, err)
			}
		case *starlingv1.StreamRequest_Auth:
			s.refuse(sess, ref, apierr.AlreadyAuthed)
		default:
			s.refuse(sess, ref, apierr.BadFrame)
		}
		select {
		case <-sess.Done():
			return nil
		default:
		}
	}
}

func (s *ChatServer) handleSend(ctx context.Context, sess *hub.Session, id auth.Identity, ref uint64, m *starlingv1.Send, sends *sendTracker) {
	if sends.add() > int64(s.MaxInflightSends) {
		sends.done()
		s.refuse(sess, ref, fmt.Errorf("%w: limit %d", apierr.TooManyInflight, s.MaxInflightSends))
		return
	}
	req := chat.SendRequest{
		From:        id,
		Origin:      sess.Key(),
		ToUser:      m.GetUserId(),
		ToGroup:     m.GetGroupId(),
		ClientMsgID: m.GetClientMsgId(),
		Content:     m.GetContent(),
	}
	err := s.Chat.Send(ctx, req, func(r chat.SendResult) {
		defer sends.done() // after the answer is queued: drain waits for it
		if r.Err != nil {
			s.refuse(sess, ref, r.Err)
			return
		}
		ack := &starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_SendAck{SendAck: &starlingv1.SendAck{
			MsgId:          r.Message.MsgId,
			ConversationId: r.Message.ConversationId,
			Seq:            r.Message.Seq,
			ServerTime:     r.Message.ServerTime,
			Duplicate:      r.Duplicate,
		}}}
		if r.Duplicate {
			sess.Send(ack)
			return
		}
		sess.SentOwn(r.Message.ConversationId, r.Message.Seq, ack)
	})
	if err != nil {
		sends.done()
		s.refuse(sess, ref, err)
	}
}

func (s *ChatServer) handleSync(ctx context.Context, sess *hub.Session, id auth.Identity, ref uint64, m *starlingv1.Sync) {
	b, err := s.Chat.Sync(ctx, id.UserID, m.GetConversationId(), m.GetAfterSeq(), m.GetLimit())
	if err != nil {
		s.refuse(sess, ref, err)
		return
	}
	answer := &starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_SyncBatch{SyncBatch: &starlingv1.SyncBatch{
		ConversationId: m.GetConversationId(),
		Messages:       b.Messages,
		HasMore:        b.HasMore,
		LatestSeq:      b.LatestSeq,
		Events:         b.Events,
	}}}
	sess.SyncDone(m.GetConversationId(), b.Reached, b.HasMore, answer)
}

// refuse answers a frame with an Error frame; the stream stays open.
func (s *ChatServer) refuse(sess *hub.Session, ref uint64, err error) {
	st := toStatus(s.Log, err)
	if s.OnRefuse != nil {
		s.OnRefuse(st)
	}
	sess.Send(errorFrame(ref, st, false))
}

// WaitingAuth is how many streams wait for their Auth frame now.
func (s *ChatServer) WaitingAuth() int64 { return s.unauth.Load() }

func errorFrame(ref uint64, st *status.Status, fatal bool) *starlingv1.StreamResponse {
	return &starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_Error{Error: &starlingv1.Error{
		Code: uint32(st.Code()), Message: st.Message(), Fatal: fatal,
	}}}
}

// GetHistory pages back through a conversation.
func (s *ChatServer) GetHistory(ctx context.Context, req *starlingv1.GetHistoryRequest) (*starlingv1.GetHistoryResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	msgs, more, err := s.Chat.History(ctx, id.UserID, req.GetConversationId(), req.GetBeforeSeq(), req.GetLimit())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.GetHistoryResponse{Messages: msgs, HasMore: more}, nil
}
