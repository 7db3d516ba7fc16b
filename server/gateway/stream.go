package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
	"github.com/starling-im/starling/server/wire"
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
// Goroutines: one reader calls Recv for the whole stream, the first frame
// included, and dispatches frames (readLoop); one writer calls Send
// (writeLoop); the handler waits for either to end or the session to
// close. The handler always waits for the writer before it returns, so
// nothing sends on the stream after it: a writer blocked on a device that
// does not read is ended by closing that device's connection. The reader
// is the one goroutine that can outlive the handler, blocked in Recv until
// gRPC ends the stream as the handler returns (etcd's watch server does the
// same): after Recv fails it touches the stream no more.
func (s *ChatServer) Stream(st stream) error {
	ctx := st.Context()
	id, authed := auth.FromContext(ctx)
	r := newReader(st, !authed)
	defer r.abandon()
	var authRef uint64
	if !authed {
		// Unauthenticated streams cost the node before they prove
		// anything: bound how many may wait at once.
		n := s.unauth.Add(1)
		if s.MaxUnauthStreams > 0 && n > int64(s.MaxUnauthStreams) {
			s.unauth.Add(-1)
			st.Send(errorFrame(0, toStatus(s.Log, apierr.TooManyUnauth), true))
			return toError(s.Log, apierr.TooManyUnauth)
		}
		var err error
		id, authRef, err = s.authenticateFirstFrame(ctx, st, r)
		s.unauth.Add(-1)
		if err != nil {
			return err
		}
	}
	sess, err := s.Hub.Register(id.UserID, id.DeviceID)
	if err != nil {
		st.Send(errorFrame(authRef, toStatus(s.Log, err), true))
		return toError(s.Log, err)
	}
	defer s.Hub.Unregister(sess)
	// Then presence, so that other nodes route to this stream; still
	// before the catch-up read (invariant 2: hub, presence, read).
	if err := s.Presence.Register(ctx, s.NodeID, sess.Key()); err != nil {
		s.Log.Error("presence: register failed", "user", id.UserID, "device", id.DeviceID, "err", err)
		err = fmt.Errorf("%w: presence: %v", apierr.StreamUnavailable, err)
		st.Send(errorFrame(authRef, toStatus(s.Log, err), true))
		return toError(s.Log, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), presenceTimeout)
		defer cancel()
		if err := s.Presence.Unregister(uctx, s.NodeID, sess.Key()); err != nil {
			s.Log.Warn("presence: unregister failed", "user", id.UserID, "device", id.DeviceID, "err", err)
		}
	}()
	log := s.Log.With("user", id.UserID, "device", id.DeviceID)
	log.Info("stream opened")

	// written is closed when the writer returns (writeErr is its result):
	// closed, not sent on, so that every wait below sees it.
	written := make(chan struct{})
	var writeErr error
	go func() { writeErr = writeLoop(st, sess); close(written) }()

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
	defer s.streamEnded(id)
	receipts, err := s.welcomeInbox(ctx, id, welcome.GetWelcome())
	if err != nil {
		log.Warn("inbox summary unreadable; Welcome goes without it", "err", err)
	}
	if err := s.catchUp(ctx, sess, id, welcome); err != nil {
		log.Error("catch-up failed", "err", err)
		sess.Close(&starlingv1.Disconnect{Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN, Message: "could not read conversation state; reconnect", Reconnect: true})
	}
	for _, r := range receipts {
		sess.Send(r)
	}

	if s.RecheckAfter > 0 {
		t := time.AfterFunc(s.RecheckAfter, func() { s.recheck(ctx, log, sess, id) })
		defer t.Stop()
	}

	sends := newSendTracker()
	read := r.start(func() error { return s.readLoop(ctx, st, sess, id, sends) })

	var result error
	select {
	case err := <-read:
		result = readResult(err)
		if errors.Is(err, io.EOF) {
			// The client half-closed (grpcurl does after its last frame):
			// it still expects the answers to what it sent.
			s.drain(sess, sends, written)
		}
	case <-written:
		result = writeErr
	case <-sess.Done():
	}
	sess.Close(nil)
	s.awaitWriter(ctx, log, written)
	if r := sess.Reason(); r != nil {
		log.Info("stream closed", "reason", r.Reason.String())
		if r.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_SLOW {
			return status.Error(apierr.SlowDevice.Code, apierr.SlowDevice.Message)
		}
		if r.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN {
			return status.Error(apierr.ShuttingDown.Code, r.Message)
		}
		return nil
	}
	log.Info("stream closed", "err", result)
	return result
}

// awaitWriter waits for the writer of an ended session: it writes what
// was queued and the Disconnect, or fails at once if the client is gone.
// A writer still blocked after WriteTimeout is on a device that does not
// read; closing its connection ends the write.
func (s *ChatServer) awaitWriter(ctx context.Context, log *slog.Logger, written <-chan struct{}) {
	timer := time.NewTimer(s.WriteTimeout)
	defer timer.Stop()
	select {
	case <-written:
		return
	case <-timer.C:
	}
	p, _ := peer.FromContext(ctx)
	if p == nil || s.AbortConn == nil || !s.AbortConn(p.Addr) {
		// Nothing to close (an in-process transport): returning ends the
		// stream, and with it the write.
		log.Warn("writer blocked past the write timeout; ending the stream")
		return
	}
	log.Warn("writer blocked past the write timeout; connection closed")
	timer.Reset(s.WriteTimeout)
	select {
	case <-written:
	case <-timer.C:
		// Closing the connection ends every write on it; if this ever
		// fails, returning is still better than holding the handler.
		log.Error("writer still blocked after its connection was closed")
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

// reader owns the stream's receive side: one goroutine that takes the
// first frame (when the stream authenticates with it) and then runs the
// read loop.
type reader struct {
	first   chan recv         // the first frame, when asked for
	run     chan func() error // the loop to run next; closed to give up
	started bool
}

type recv struct {
	f   *starlingv1.StreamRequest
	err error
}

func newReader(st stream, wantFirst bool) *reader {
	r := &reader{first: make(chan recv, 1), run: make(chan func() error, 1)}
	go func() {
		if wantFirst {
			f, err := st.Recv()
			r.first <- recv{f, err}
			if err != nil {
				return
			}
		}
		if loop, ok := <-r.run; ok {
			loop()
		}
	}()
	return r
}

// start runs loop on the reader goroutine; its result arrives on the
// channel returned.
func (r *reader) start(loop func() error) <-chan error {
	done := make(chan error, 1)
	r.started = true
	r.run <- func() error {
		err := loop()
		done <- err
		return err
	}
	return done
}

// abandon lets the reader goroutine go when the stream ends before start.
func (r *reader) abandon() {
	if !r.started {
		close(r.run)
	}
}

// authenticateFirstFrame waits for the Auth frame of a stream that came
// without a token in its metadata.
func (s *ChatServer) authenticateFirstFrame(ctx context.Context, st stream, r *reader) (auth.Identity, uint64, error) {
	timer := time.NewTimer(s.AuthTimeout)
	defer timer.Stop()
	var got recv
	select {
	case got = <-r.first:
	case <-timer.C:
		st.Send(errorFrame(0, toStatus(s.Log, apierr.AuthTimeout), true))
		return auth.Identity{}, 0, toError(s.Log, apierr.AuthTimeout)
	case <-ctx.Done():
		return auth.Identity{}, 0, status.FromContextError(ctx.Err()).Err()
	}
	if got.err != nil {
		return auth.Identity{}, 0, got.err
	}
	a := got.f.GetAuth()
	if a == nil {
		st.Send(errorFrame(got.f.GetRef(), toStatus(s.Log, apierr.AuthRequired), true))
		return auth.Identity{}, 0, toError(s.Log, apierr.AuthRequired)
	}
	id, err := s.Accounts.Authenticate(ctx, a.GetToken())
	if err == nil && a.GetDeviceId() != "" && a.GetDeviceId() != id.DeviceID {
		err = apierr.DeviceMismatch
	}
	if err != nil {
		st2 := toStatus(s.Log, err)
		st.Send(errorFrame(got.f.GetRef(), st2, true))
		return auth.Identity{}, 0, st2.Err()
	}
	return id, got.f.GetRef(), nil
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
func (s *ChatServer) drain(sess *hub.Session, sends *sendTracker, written <-chan struct{}) {
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
	case <-written:
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
func (s *ChatServer) recheck(ctx context.Context, log *slog.Logger, sess *hub.Session, id auth.Identity) {
	select {
	case <-sess.Done():
		return
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	behind, err := s.Behind(ctx, id.UserID, id.DeviceID)
	if err != nil {
		log.Warn("second catch-up read failed; the periodic resync covers it", "err", err)
		return
	}
	sess.Recheck(behind)
}

// writeLoop is the stream's only writer.
func writeLoop(st stream, sess *hub.Session) error {
	for {
		o, ok := sess.Next()
		if !ok {
			if r := sess.Reason(); r != nil {
				return st.Send(&starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Disconnect{Disconnect: r}})
			}
			return nil
		}
		var err error
		if len(o.Push) > 0 {
			var b wire.Encoded
			if b, err = hub.EncodePush(o.Push); err == nil {
				err = st.SendMsg(b) // messages encoded once for every recipient (wire.Codec)
			}
		} else {
			err = st.Send(o.Frame)
		}
		if err != nil {
			return err
		}
	}
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
