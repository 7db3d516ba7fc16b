package server_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// FuzzStreamFrames sends an authenticated Stream a sequence of valid and
// invalid frames built from the fuzz input, against a real node on
// loopback (one per process: every input runs against the same node and
// the same growing database). Properties:
//
//   - the server does not panic: a panic in the handler would end the
//     stream with INTERNAL, one on another goroutine kills the process;
//   - the stream survives the sequence: a Ping sent after it is answered,
//     and after the client half-closes the stream ends cleanly (no error,
//     no Disconnect);
//   - every frame with a ref that needs an answer gets exactly one, of the
//     right kind (Pong, SendAck or Error, SyncBatch or Error, Error), and
//     nothing answers a ref that needs none; every Error is an entry of the
//     apierr table and none is INTERNAL or fatal;
//   - what the stream was told is stored is stored: each SendAck's message
//     reads back with its msg_id and the content sent, and the messages
//     stored before any input are still there, unchanged;
//   - SyncBatches hold only the conversation asked for, in seq order,
//     after after_seq, at most limit messages;
//   - pushes and notifies name only conversations the user is in, and the
//     pushes of a conversation come in increasing seq order.
//
// Logout frames are never sent (they end the stream by design). The push
// window is 4, so a few messages from bob switch a conversation to pull
// mode (Notify, then Sync).
//
// The input is a little program, one frame per instruction (at most
// maxFuzzFrames instructions). An instruction is an op byte, whose low 4
// bits pick the instruction and whose top bit sends the frame with ref 0
// (no answer tracked), then its operands:
//
//	0 Ping
//	1 Send to a user:  target, client_msg_id, content
//	2 Send to a group: group, client_msg_id, content
//	3 Sync:            conversation, after_seq (int), limit (int)
//	4 PushAck:         conversation, seq (int)
//	5 Auth (again):    token, device_id (str)
//	6 a frame with no oneof set
//	7 raw:             len byte, that many bytes decoded as a
//	                   StreamRequest (skipped when they decode as
//	                   Logout); bytes that do not decode are sent as
//	                   they are (the server takes them as an empty
//	                   frame with ref 0: an Error, and the stream stays)
//	8 bob sends alice a message (on his own stream): pushed to her
//	9 bob sends the group a message
//	10-15: as 2-7
//
// Selectors are one byte, taken modulo their number of choices (see the
// pick* functions); "str" is a length byte and that many bytes (made valid
// UTF-8, or the client could not encode the frame); "int" is a mode byte:
// 0 the next byte as int8, 1 the next 8 bytes big-endian, 2 a boundary
// value (0, ±1, int32 and int64 extremes, 100, 500, 501). A short input
// reads as zeros past its end.
func FuzzStreamFrames(f *testing.F) {
	env := newStreamFuzzEnv(f, servertest.WithConfig(func(c *server.Config) { c.Window = 4 }))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		env.run(t, data)
	})
}

// maxFuzzFrames bounds the frames of one input.
const maxFuzzFrames = 48

// streamFuzzEnv is the node and the users every input runs against.
type streamFuzzEnv struct {
	srv               *servertest.Server
	chat              starlingv1.ChatServiceClient
	alice, bob, carol servertest.User
	token             string          // alice's device "fuzz"
	authed            context.Context // carries token
	bobToken          string          // bob's device "setup"
	group, foreign    string          // alice+bob's group; bob+carol's
	anchors           []*starlingv1.Message
	nonce             string // makes "fresh" client_msg_ids unique across processes
	fresh             atomic.Uint64
}

func newStreamFuzzEnv(f *testing.F, opts ...servertest.Option) *streamFuzzEnv {
	srv := servertest.Start(f, opts...)
	e := &streamFuzzEnv{srv: srv, chat: starlingv1.NewChatServiceClient(srv.Dial(f))}
	e.alice, e.bob, e.carol = srv.NewUser(f, "alice"), srv.NewUser(f, "bob"), srv.NewUser(f, "carol")
	e.token = srv.Login(f, e.alice, "fuzz")
	e.authed = servertest.WithToken(context.Background(), e.token)
	nonce := make([]byte, 6)
	rand.Read(nonce)
	e.nonce = hex.EncodeToString(nonce)

	groups := starlingv1.NewGroupServiceClient(srv.Dial(f))
	bobTok := srv.Login(f, e.bob, "setup")
	e.bobToken = bobTok
	g, err := groups.CreateGroup(servertest.WithToken(f.Context(), bobTok), &starlingv1.CreateGroupRequest{Name: "fuzz", MemberIds: []string{e.alice.ID}})
	if err != nil {
		f.Fatal(err)
	}
	e.group = g.GetGroup().GetGroupId()
	g, err = groups.CreateGroup(servertest.WithToken(f.Context(), bobTok), &starlingv1.CreateGroupRequest{Name: "not alice's", MemberIds: []string{e.carol.ID}})
	if err != nil {
		f.Fatal(err)
	}
	e.foreign = g.GetGroup().GetGroupId()

	// What is stored before any input must survive every input.
	bob := srv.OpenStream(f, bobTok)
	for _, to := range []struct{ user, group string }{{e.alice.ID, ""}, {"", e.group}} {
		ref := bob.Text(f, to.user, to.group, "anchor-"+to.user+to.group, "stored before the fuzzing")
		for {
			fr := bob.Next(f)
			if fr.GetRef() != ref {
				continue
			}
			ack := fr.GetSendAck()
			if ack == nil {
				f.Fatalf("anchor refused: %v", fr)
			}
			res, err := e.chat.GetHistory(e.authed, &starlingv1.GetHistoryRequest{ConversationId: ack.GetConversationId(), BeforeSeq: ack.GetSeq() + 1, Limit: 1})
			if err != nil || len(res.GetMessages()) != 1 {
				f.Fatalf("anchor not readable: %v %v", res, err)
			}
			e.anchors = append(e.anchors, res.GetMessages()[0])
			break
		}
	}
	bob.Close()
	return e
}

// fuzzInput reads the instructions; past the end it reads zeros.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) more() bool { return len(in.b) > 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) bytes(n int) []byte {
	n = min(n, len(in.b))
	out := in.b[:n]
	in.b = in.b[n:]
	return out
}

func (in *fuzzInput) str() string {
	return strings.ToValidUTF8(string(in.bytes(int(in.byte()))), "\uFFFD")
}

var boundaries = []int64{0, -1, 1, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64, 100, 500, 501}

func (in *fuzzInput) int() int64 {
	switch in.byte() % 3 {
	case 0:
		return int64(int8(in.byte()))
	case 1:
		var b [8]byte
		copy(b[:], in.bytes(8))
		return int64(binary.BigEndian.Uint64(b[:]))
	default:
		return boundaries[int(in.byte())%len(boundaries)]
	}
}

// frame is one frame sent and what may answer it, or (req nil) bytes that
// are not a StreamRequest, or a message bob sends.
type frame struct {
	req     *starlingv1.StreamRequest
	answers []string // kinds of answer allowed; nil: none
	answer  *starlingv1.StreamResponse
	raw     rawFrame
	bob     *starlingv1.Send
}

func (e *streamFuzzEnv) decode(data []byte) []*frame {
	in := &fuzzInput{b: data}
	var frames []*frame
	var lastID string
	for in.more() && len(frames) < maxFuzzFrames {
		op := in.byte()
		req := &starlingv1.StreamRequest{}
		k := op & 0x0f
		if k >= 10 {
			k -= 8
		}
		switch k {
		case 8, 9:
			s := &starlingv1.Send{
				ClientMsgId: fmt.Sprintf("fz-%s-%d", e.nonce, e.fresh.Add(1)),
				Content:     &starlingv1.Content{Text: "from bob"},
				To:          &starlingv1.Send_UserId{UserId: e.alice.ID},
			}
			if k == 9 {
				s.To = &starlingv1.Send_GroupId{GroupId: e.group}
			}
			frames = append(frames, &frame{bob: s})
			continue
		case 0:
			req.Frame = &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}
		case 1, 2:
			s := &starlingv1.Send{}
			if k == 1 {
				e.pickUser(in, s)
			} else {
				e.pickGroup(in, s)
			}
			s.ClientMsgId = e.pickClientMsgID(in, lastID)
			lastID = s.ClientMsgId
			s.Content = pickContent(in)
			req.Frame = &starlingv1.StreamRequest_Send{Send: s}
		case 3:
			conv := e.pickConversation(in)
			after, limit := in.int(), in.int()
			req.Frame = &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: conv, AfterSeq: after, Limit: int32(limit)}}
		case 4:
			conv := e.pickConversation(in)
			req.Frame = &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{ConversationId: conv, Seq: in.int()}}
		case 5:
			a := &starlingv1.Auth{}
			switch in.byte() % 3 {
			case 0:
				a.Token = e.token
			case 1:
				a.Token = in.str()
			}
			a.DeviceId = in.str()
			req.Frame = &starlingv1.StreamRequest_Auth{Auth: a}
		case 6:
		case 7:
			raw := in.bytes(int(in.byte()))
			if proto.Unmarshal(raw, req) != nil {
				frames = append(frames, &frame{raw: rawFrame(raw)})
				continue
			}
			if req.GetLogout() != nil {
				continue
			}
		}
		req.Ref = 0
		if op&0x80 == 0 {
			req.Ref = uint64(len(frames) + 1)
		}
		frames = append(frames, &frame{req: req, answers: expectedAnswers(req)})
	}
	return frames
}

func (e *streamFuzzEnv) pickUser(in *fuzzInput, s *starlingv1.Send) {
	switch in.byte() % 7 {
	case 0:
		s.To = &starlingv1.Send_UserId{UserId: e.bob.ID}
	case 1:
		s.To = &starlingv1.Send_UserId{UserId: e.alice.ID}
	case 2:
		s.To = &starlingv1.Send_UserId{UserId: e.carol.ID}
	case 3:
		s.To = &starlingv1.Send_UserId{UserId: in.str()}
	case 4:
		s.To = &starlingv1.Send_UserId{}
	case 5:
		s.To = &starlingv1.Send_UserId{UserId: strings.Repeat("u", 129)}
	case 6: // no recipient
	}
}

func (e *streamFuzzEnv) pickGroup(in *fuzzInput, s *starlingv1.Send) {
	g := ""
	switch in.byte() % 6 {
	case 0:
		g = e.group
	case 1:
		g = e.foreign
	case 2:
		g = in.str()
	case 3:
	case 4:
		g = strings.Repeat("g", 129)
	case 5:
		g = storage.GroupConversationID(e.group)
	}
	s.To = &starlingv1.Send_GroupId{GroupId: g}
}

func (e *streamFuzzEnv) pickClientMsgID(in *fuzzInput, last string) string {
	switch in.byte() % 6 {
	case 0:
		return fmt.Sprintf("fz-%s-%d", e.nonce, e.fresh.Add(1))
	case 1:
		if last != "" {
			return last
		}
		return fmt.Sprintf("fz-%s-%d", e.nonce, e.fresh.Add(1))
	case 2:
		return in.str()
	case 3:
		return ""
	case 4:
		return strings.Repeat("c", 65)
	default:
		return "fz-fixed" // the same in every input: duplicates and reuse across streams
	}
}

func pickContent(in *fuzzInput) *starlingv1.Content {
	switch in.byte() % 5 {
	case 0:
		return &starlingv1.Content{Text: in.str()}
	case 1:
		return nil
	case 2:
		return &starlingv1.Content{Type: in.str(), Data: []byte(in.str())}
	case 3:
		return &starlingv1.Content{Text: strings.Repeat("x", 64<<10+1)} // over the limit
	default:
		return &starlingv1.Content{}
	}
}

func (e *streamFuzzEnv) pickConversation(in *fuzzInput) string {
	switch in.byte() % 9 {
	case 0:
		return storage.C2CConversationID(e.alice.ID, e.bob.ID)
	case 1:
		return storage.GroupConversationID(e.group)
	case 2:
		return storage.GroupConversationID(e.foreign)
	case 3:
		return storage.C2CConversationID(e.bob.ID, e.carol.ID)
	case 4:
		return storage.C2CConversationID(e.alice.ID, e.alice.ID)
	case 5:
		return in.str()
	case 6:
		return "grp:" + in.str()
	case 7:
		return "c2c:" + in.str()
	default:
		return "grp:" + strings.Repeat("g", 600)
	}
}

// expectedAnswers is what may answer req, by the kind of its answer frame.
func expectedAnswers(req *starlingv1.StreamRequest) []string {
	switch fr := req.Frame.(type) {
	case *starlingv1.StreamRequest_Ping:
		return []string{"pong"}
	case *starlingv1.StreamRequest_Send:
		return []string{"send_ack", "error"}
	case *starlingv1.StreamRequest_Sync:
		return []string{"sync_batch", "error"}
	case *starlingv1.StreamRequest_PushAck:
		if fr.PushAck.GetConversationId() == "" || fr.PushAck.GetSeq() <= 0 {
			return []string{"error"}
		}
		return nil // acknowledged silently
	case *starlingv1.StreamRequest_MarkRead, *starlingv1.StreamRequest_Typing:
		// No answer when accepted, an Error when refused: either is right.
		return []string{"error", maybeNone}
	default: // Auth again, no frame, a frame this server does not know
		return []string{"error"}
	}
}

// maybeNone in a frame's answers says it may also get no answer.
const maybeNone = "(none)"

func kind(f *starlingv1.StreamResponse) string {
	if f.Frame == nil {
		return "none"
	}
	return string(f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("frame")).Name())
}

// fixedErrors are the refusals of the apierr table.
var fixedErrors = func() map[[2]any]bool {
	m := make(map[[2]any]bool)
	for _, e := range apierr.All() {
		m[[2]any{uint32(e.Code), e.Message}] = true
	}
	return m
}()

func (e *streamFuzzEnv) run(t *testing.T, data []byte) {
	frames := e.decode(data)
	ctx, cancel := context.WithTimeout(e.authed, 30*time.Second)
	defer cancel()
	cs, err := e.chat.Stream(ctx, grpc.ForceCodecV2(fuzzCodec{}))
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	got := make(chan *starlingv1.StreamResponse, 64)
	ended := make(chan error, 1)
	go func() {
		defer close(got)
		for {
			f, err := cs.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				ended <- err
				return
			}
			got <- f
		}
	}()
	// Whatever happens, the receiver ends with the stream.
	defer func() {
		cancel()
		for range got {
		}
	}()

	var bob *peerStream
	for _, f := range frames {
		if f.bob != nil {
			if bob == nil {
				bob = e.openPeer(t, e.bobToken)
				defer bob.close()
			}
			bob.send(f.bob)
			continue
		}
		var msg any = f.req
		if f.req == nil {
			msg = f.raw
		}
		if err := cs.SendMsg(msg); err != nil {
			break // the stream ended; Recv says why
		}
	}
	finalPing := uint64(maxFuzzFrames + 1)
	cs.Send(&starlingv1.StreamRequest{Ref: finalPing, Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	cs.CloseSend() // the server answers everything, then ends the stream

	byRef := make(map[uint64]*frame)
	for _, f := range frames {
		if f.req.GetRef() != 0 {
			byRef[f.req.GetRef()] = f
		}
	}
	welcomed, ponged := false, false
	pushed := make(map[string]int64) // conversation → last seq pushed
	for r := range got {
		switch {
		case r.GetWelcome() != nil:
			welcomed = true
		case r.GetPush() != nil:
			for _, m := range r.GetPush().GetMessages() {
				conv := m.GetConversationId()
				if !e.alicesConversation(conv) || m.GetSeq() <= pushed[conv] {
					t.Fatalf("pushed %s #%d (after #%d on this stream)", conv, m.GetSeq(), pushed[conv])
				}
				pushed[conv] = m.GetSeq()
			}
		case r.GetNotify() != nil:
			if conv := r.GetNotify().GetConversationId(); !e.alicesConversation(conv) {
				t.Fatalf("notified %v", r.GetNotify())
			}
		case r.GetDisconnect() != nil:
			t.Fatalf("stream disconnected: %v", r.GetDisconnect())
		case r.GetError() != nil:
			er := r.GetError()
			if codes.Code(er.GetCode()) == codes.Internal || er.GetFatal() || !fixedErrors[[2]any{er.GetCode(), er.GetMessage()}] {
				t.Fatalf("frame %d refused with %v %q (fatal %v); want a non-fatal, non-INTERNAL entry of the apierr table", r.GetRef(), codes.Code(er.GetCode()), er.GetMessage(), er.GetFatal())
			}
		}
		if r.GetRef() == finalPing {
			if r.GetPong() == nil {
				t.Fatalf("final Ping answered with %v", r)
			}
			ponged = true
			continue
		}
		if r.GetRef() == 0 || r.GetWelcome() != nil {
			continue // pushes, notifies; answers to ref-0 frames
		}
		f := byRef[r.GetRef()]
		switch {
		case f == nil:
			t.Fatalf("answer %v to ref %d, which was not sent", r, r.GetRef())
		case f.answer != nil:
			t.Fatalf("frame %v answered twice: %v and %v", f.req, f.answer, r)
		case !containsKind(f.answers, kind(r)):
			t.Fatalf("frame %v answered with %v; want one of %v", f.req, r, f.answers)
		}
		f.answer = r
	}
	if err := <-ended; err != nil {
		t.Fatalf("stream ended with %v; want a clean end after the half-close", err)
	}
	if !welcomed || !ponged {
		t.Fatalf("welcomed %v, final Ping answered %v", welcomed, ponged)
	}
	for _, f := range frames {
		if f.req.GetRef() != 0 && f.answers != nil && f.answer == nil && !containsKind(f.answers, maybeNone) {
			t.Fatalf("frame %v got no answer", f.req)
		}
		e.checkAnswer(t, f)
	}
	for _, a := range e.anchors {
		e.checkStored(t, a.GetConversationId(), a.GetSeq(), a.GetMsgId(), a.GetSenderId(), a.GetContent())
	}
}

func containsKind(kinds []string, k string) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// checkAnswer checks what an answer says against what was asked and what
// is stored.
func (e *streamFuzzEnv) checkAnswer(t *testing.T, f *frame) {
	t.Helper()
	if f.answer == nil {
		return
	}
	if ack := f.answer.GetSendAck(); ack != nil {
		s := f.req.GetSend()
		want := storage.GroupConversationID(s.GetGroupId())
		if s.GetUserId() != "" {
			want = storage.C2CConversationID(e.alice.ID, s.GetUserId())
		}
		if ack.GetConversationId() != want || ack.GetSeq() <= 0 {
			t.Fatalf("send %v acked as %v; want conversation %s", s, ack, want)
		}
		e.checkStored(t, ack.GetConversationId(), ack.GetSeq(), ack.GetMsgId(), e.alice.ID, s.GetContent())
	}
	if b := f.answer.GetSyncBatch(); b != nil {
		s := f.req.GetSync()
		limit := int(s.GetLimit())
		if limit == 0 {
			limit = 100
		}
		last := s.GetAfterSeq()
		if b.GetConversationId() != s.GetConversationId() || len(b.GetMessages()) > limit {
			t.Fatalf("sync %v answered %d messages of %q", s, len(b.GetMessages()), b.GetConversationId())
		}
		for _, m := range b.GetMessages() {
			if m.GetConversationId() != s.GetConversationId() || m.GetSeq() <= last || m.GetSeq() > b.GetLatestSeq() {
				t.Fatalf("sync %v answered seq %d of %q after seq %d (latest %d)", s, m.GetSeq(), m.GetConversationId(), last, b.GetLatestSeq())
			}
			last = m.GetSeq()
		}
	}
}

// checkStored reads seq of conv back and compares it with what was acked.
func (e *streamFuzzEnv) checkStored(t *testing.T, conv string, seq, msgID int64, sender string, content *starlingv1.Content) {
	t.Helper()
	res, err := e.chat.GetHistory(e.authed, &starlingv1.GetHistoryRequest{ConversationId: conv, BeforeSeq: seq + 1, Limit: 1})
	if err != nil {
		t.Fatalf("history of %s before %d: %v", conv, seq+1, err)
	}
	ms := res.GetMessages()
	if len(ms) != 1 || ms[0].GetSeq() != seq || ms[0].GetMsgId() != msgID || ms[0].GetSenderId() != sender || !proto.Equal(ms[0].GetContent(), content) {
		t.Fatalf("%s #%d (msg %d from %s, content %v) reads back as %v", conv, seq, msgID, sender, content, ms)
	}
}

// alicesConversation reports whether conv is one alice may be told about.
func (e *streamFuzzEnv) alicesConversation(conv string) bool {
	p, err := storage.ParseConversationID(conv)
	switch {
	case conv == storage.EventsConversationID(e.alice.ID):
		return true // her events (the group's creation)
	case err != nil:
		return false
	case p.Kind == storage.KindGroup:
		return p.GroupID == e.group
	default:
		return p.Users[0] == e.alice.ID || p.Users[1] == e.alice.ID
	}
}

// peerStream is another user's stream on the shared connection, for the
// messages that are pushed to the fuzzed one; what it receives is dropped.
type peerStream struct {
	cs     starlingv1.ChatService_StreamClient
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *streamFuzzEnv) openPeer(t *testing.T, token string) *peerStream {
	ctx, cancel := context.WithCancel(servertest.WithToken(t.Context(), token))
	cs, err := e.chat.Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("open peer stream: %v", err)
	}
	p := &peerStream{cs: cs, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			if _, err := cs.Recv(); err != nil {
				return
			}
		}
	}()
	return p
}

// send sends m; a stream that ended meanwhile drops it (the fuzzed stream
// is what is checked).
func (p *peerStream) send(m *starlingv1.Send) {
	p.cs.Send(&starlingv1.StreamRequest{Ref: 1, Frame: &starlingv1.StreamRequest_Send{Send: m}})
}

func (p *peerStream) close() {
	p.cancel()
	<-p.done
}

// rawFrame is bytes sent on the stream as they are.
type rawFrame []byte

// fuzzCodec is the protobuf codec, plus rawFrame: bytes the Go client
// would never send (not a StreamRequest, or strings that are not UTF-8).
type fuzzCodec struct{}

func (fuzzCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (fuzzCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (fuzzCodec) Name() string { return "proto" }
