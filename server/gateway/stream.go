package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/wire"
)

// ChatServer serves starling.v1.ChatService: the Stream and the unary
// history and conversation calls.
type ChatServer struct {
	starlingv1.UnimplementedChatServiceServer
	Accounts *auth.Accounts
	Chat     *chat.Service
	Hub      *hub.Hub
	Log      *slog.Logger
	NodeID   string
	// HeartbeatInterval is announced in Welcome.
	HeartbeatInterval time.Duration
	// AuthTimeout bounds the wait for the Auth frame.
	AuthTimeout time.Duration
	// MaxInflightSends bounds sends of one stream awaiting their SendAck.
	MaxInflightSends int
}

type stream = grpc.BidiStreamingServer[starlingv1.StreamRequest, starlingv1.StreamResponse]

// Stream serves one device. Lifecycle: authenticate (metadata or first
// frame) → register in the hub → Welcome → catch-up Notifies → frames until
// the client leaves or the session is closed (logout, replaced, slow, idle,
// shutdown). One goroutine reads and dispatches frames, one writes; the
// handler returns when either ends or the session closes.
func (s *ChatServer) Stream(st stream) error {
	ctx := st.Context()
	id, authed := auth.FromContext(ctx)
	var authRef uint64
	if !authed {
		var err error
		if id, authRef, err = s.authenticateFirstFrame(ctx, st); err != nil {
			return err
		}
	}
	sess, err := s.Hub.Register(id.UserID, id.DeviceID)
	if err != nil {
		st.Send(errorFrame(authRef, toStatus(s.Log, err), true))
		return toError(s.Log, err)
	}
	defer s.Hub.Unregister(sess)
	log := s.Log.With("user", id.UserID, "device", id.DeviceID)
	log.Info("stream opened")

	written := make(chan error, 1)
	go func() { written <- writeLoop(st, sess) }()

	welcome := &starlingv1.StreamResponse{Ref: authRef, Frame: &starlingv1.StreamResponse_Welcome{Welcome: &starlingv1.Welcome{
		UserId:            id.UserID,
		DeviceId:          id.DeviceID,
		NodeId:            s.NodeID,
		HeartbeatInterval: durationpb.New(s.HeartbeatInterval),
		ServerTime:        timestamppb.Now(),
	}}}
	// The session is registered, so whatever commits from now on is offered
	// to it; read what it is behind on only now (invariant 2). Welcome goes
	// out with the catch-up, so it marks where live pushes begin.
	if err := s.catchUp(ctx, sess, id, welcome); err != nil {
		log.Error("catch-up failed", "err", err)
		sess.Close(&starlingv1.Disconnect{Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN, Message: "could not read conversation state; reconnect", Reconnect: true})
	}

	var inflight atomic.Int64 // sends awaiting their SendAck
	read := make(chan error, 1)
	go func() { read <- s.readLoop(ctx, st, sess, id, &inflight) }()

	var result error
	select {
	case err := <-read:
		result = readResult(err)
		if errors.Is(err, io.EOF) {
			// The client half-closed (grpcurl does after its last frame):
			// it still expects the answers to what it sent.
			s.drain(sess, &inflight, written)
		}
	case err := <-written:
		result = err
	case <-sess.Done():
	}
	sess.Close(nil)
	// Let the writer say goodbye (Disconnect) but never wait long on a
	// device that does not read.
	select {
	case <-written:
	case <-time.After(time.Second):
	}
	if r := sess.Reason(); r != nil {
		log.Info("stream closed", "reason", r.Reason.String())
		if r.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_SLOW {
			return status.Error(codes.ResourceExhausted, r.Message)
		}
		if r.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN {
			return status.Error(codes.Unavailable, r.Message)
		}
		return nil
	}
	log.Info("stream closed", "err", result)
	return result
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

// authenticateFirstFrame waits for the Auth frame of a stream that came
// without a token in its metadata.
func (s *ChatServer) authenticateFirstFrame(ctx context.Context, st stream) (auth.Identity, uint64, error) {
	type recv struct {
		f   *starlingv1.StreamRequest
		err error
	}
	got := make(chan recv, 1)
	go func() {
		f, err := st.Recv()
		got <- recv{f, err}
	}()
	timer := time.NewTimer(s.AuthTimeout)
	defer timer.Stop()
	var r recv
	select {
	case r = <-got:
	case <-timer.C:
		err := status.Error(codes.Unauthenticated, "no Auth frame in time")
		st.Send(errorFrame(0, status.Convert(err), true))
		return auth.Identity{}, 0, err
	case <-ctx.Done():
		return auth.Identity{}, 0, status.FromContextError(ctx.Err()).Err()
	}
	if r.err != nil {
		return auth.Identity{}, 0, r.err
	}
	a := r.f.GetAuth()
	if a == nil {
		err := status.Error(codes.Unauthenticated, "the first frame must be Auth (or send the token in the authorization metadata)")
		st.Send(errorFrame(r.f.GetRef(), status.Convert(err), true))
		return auth.Identity{}, 0, err
	}
	id, err := s.Accounts.Authenticate(ctx, a.GetToken())
	if err == nil && a.GetDeviceId() != "" && a.GetDeviceId() != id.DeviceID {
		err = fmt.Errorf("%w: device_id %q does not match the token's device", apierr.ErrUnauthenticated, a.GetDeviceId())
	}
	if err != nil {
		st2 := toStatus(s.Log, err)
		st.Send(errorFrame(r.f.GetRef(), st2, true))
		return auth.Identity{}, 0, st2.Err()
	}
	return id, r.f.GetRef(), nil
}

// drainTimeout bounds how long a half-closed stream is kept to deliver
// the answers to its last frames.
const drainTimeout = 5 * time.Second

// drain waits for the sends in flight to be answered, then for the writer
// to write everything queued so far.
func (s *ChatServer) drain(sess *hub.Session, inflight *atomic.Int64, written <-chan error) {
	deadline := time.Now().Add(drainTimeout)
	for inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sess.End()
	select {
	case <-written:
	case <-sess.Done():
	case <-time.After(time.Until(deadline)):
	}
}

// catchUp tells the device about every conversation it is behind on.
func (s *ChatServer) catchUp(ctx context.Context, sess *hub.Session, id auth.Identity, welcome *starlingv1.StreamResponse) error {
	states, err := s.Chat.Conversations(ctx, id.UserID, id.DeviceID, true)
	if err != nil {
		sess.FinishStart(welcome, nil)
		return err
	}
	behind := make([]hub.CatchUp, len(states))
	for i, c := range states {
		behind[i] = hub.CatchUp{ConversationID: c.ConversationID, LatestSeq: c.LatestSeq, DeliveredSeq: max(c.DeliveredSeq, c.JoinedSeq)}
	}
	sess.FinishStart(welcome, behind)
	return nil
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
func (s *ChatServer) readLoop(ctx context.Context, st stream, sess *hub.Session, id auth.Identity, inflight *atomic.Int64) error {
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
			s.handleSend(ctx, sess, id, ref, fr.Send, inflight)
		case *starlingv1.StreamRequest_PushAck:
			if fr.PushAck.GetConversationId() == "" || fr.PushAck.GetSeq() <= 0 {
				s.refuse(sess, ref, fmt.Errorf("%w: PushAck needs a conversation_id and a positive seq", apierr.ErrInvalidArgument))
				continue
			}
			s.Hub.Ack(sess, fr.PushAck.GetConversationId(), fr.PushAck.GetSeq())
		case *starlingv1.StreamRequest_Sync:
			s.handleSync(ctx, sess, id, ref, fr.Sync)
		case *starlingv1.StreamRequest_Logout:
			if err := logout(ctx, s.Accounts, s.Hub, id); err != nil {
				s.refuse(sess, ref, err)
			}
		case *starlingv1.StreamRequest_Auth:
			s.refuse(sess, ref, fmt.Errorf("%w: the stream is already authenticated", apierr.ErrInvalidArgument))
		default:
			s.refuse(sess, ref, fmt.Errorf("%w: empty or unknown frame", apierr.ErrInvalidArgument))
		}
		select {
		case <-sess.Done():
			return nil
		default:
		}
	}
}

func (s *ChatServer) handleSend(ctx context.Context, sess *hub.Session, id auth.Identity, ref uint64, m *starlingv1.Send, inflight *atomic.Int64) {
	if inflight.Add(1) > int64(s.MaxInflightSends) {
		inflight.Add(-1)
		s.refuse(sess, ref, fmt.Errorf("%w: more than %d sends await their SendAck", apierr.ErrResourceExhausted, s.MaxInflightSends))
		return
	}
	req := chat.SendRequest{
		From:        id,
		Origin:      sess,
		ToUser:      m.GetUserId(),
		ToGroup:     m.GetGroupId(),
		ClientMsgID: m.GetClientMsgId(),
		Content:     m.GetContent(),
	}
	err := s.Chat.Send(ctx, req, func(r chat.SendResult) {
		inflight.Add(-1)
		if r.Err != nil {
			s.refuse(sess, ref, r.Err)
			return
		}
		if !r.Duplicate {
			sess.SentOwn(r.Message.ConversationId, r.Message.Seq)
		}
		sess.Send(&starlingv1.StreamResponse{Ref: ref, Frame: &starlingv1.StreamResponse_SendAck{SendAck: &starlingv1.SendAck{
			MsgId:          r.Message.MsgId,
			ConversationId: r.Message.ConversationId,
			Seq:            r.Message.Seq,
			ServerTime:     r.Message.ServerTime,
			Duplicate:      r.Duplicate,
		}}})
	})
	if err != nil {
		inflight.Add(-1)
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
	reached := min(m.GetAfterSeq(), b.LatestSeq)
	if n := len(b.Messages); n > 0 {
		reached = b.Messages[n-1].Seq
	}
	sess.SyncDone(m.GetConversationId(), reached, b.HasMore, answer)
}

// refuse answers a frame with an Error frame; the stream stays open.
func (s *ChatServer) refuse(sess *hub.Session, ref uint64, err error) {
	sess.Send(errorFrame(ref, toStatus(s.Log, err), false))
}

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

// ListConversations lists the caller's conversations.
func (s *ChatServer) ListConversations(ctx context.Context, _ *starlingv1.ListConversationsRequest) (*starlingv1.ListConversationsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	cs, err := s.Chat.Conversations(ctx, id.UserID, id.DeviceID, false)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	out := make([]*starlingv1.ConversationState, len(cs))
	for i, c := range cs {
		out[i] = &starlingv1.ConversationState{ConversationId: c.ConversationID, LatestSeq: c.LatestSeq, DeliveredSeq: c.DeliveredSeq, JoinedSeq: c.JoinedSeq}
	}
	return &starlingv1.ListConversationsResponse{Conversations: out}, nil
}
