package servertest

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Password is the password NewUser registers users with.
const Password = "correct horse battery"

// User is a registered test user.
type User struct {
	ID       string
	Username string
}

// NewUser registers a user through the real AuthService.
func (s *Server) NewUser(t testing.TB, username string) User {
	t.Helper()
	res, err := starlingv1.NewAuthServiceClient(s.Dial(t)).Register(t.Context(), &starlingv1.RegisterRequest{Username: username, Password: Password})
	if err != nil {
		t.Fatalf("servertest: register %s: %v", username, err)
	}
	return User{ID: res.GetUser().GetUserId(), Username: username}
}

// Login logs a device of u in and returns its token.
func (s *Server) Login(t testing.TB, u User, device string) string {
	t.Helper()
	res, err := starlingv1.NewAuthServiceClient(s.Dial(t)).Login(t.Context(), &starlingv1.LoginRequest{Username: u.Username, Password: Password, DeviceId: device})
	if err != nil {
		t.Fatalf("servertest: login %s/%s: %v", u.Username, device, err)
	}
	return res.GetToken()
}

// WithToken returns ctx carrying token as the bearer credential.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// Stream is a raw ChatService.Stream, for tests that need to see every
// frame. Received frames are buffered by a goroutine that ends with the
// stream.
type Stream struct {
	t       testing.TB
	cs      grpc.BidiStreamingClient[starlingv1.StreamRequest, starlingv1.StreamResponse]
	cancel  context.CancelFunc
	frames  chan *starlingv1.StreamResponse
	err     error // why the stream ended; read after frames is closed
	Welcome *starlingv1.Welcome
	ref     uint64
}

// OpenStream opens a Stream authenticated by token in metadata and waits
// for its Welcome.
func (s *Server) OpenStream(t testing.TB, token string) *Stream {
	t.Helper()
	st := s.OpenRawStream(t, WithToken(context.Background(), token))
	f := st.Next(t)
	if f.GetWelcome() == nil {
		t.Fatalf("servertest: first frame is %v, want Welcome", f)
	}
	st.Welcome = f.GetWelcome()
	return st
}

// OpenRawStream opens a Stream with ctx's metadata and nothing else.
func (s *Server) OpenRawStream(t testing.TB, ctx context.Context) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cs, err := starlingv1.NewChatServiceClient(s.Dial(t)).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("servertest: open stream: %v", err)
	}
	st := &Stream{t: t, cs: cs, cancel: cancel, frames: make(chan *starlingv1.StreamResponse, 4096)}
	go func() {
		defer close(st.frames)
		for {
			f, err := cs.Recv()
			if err != nil {
				if err != io.EOF {
					st.err = err
				}
				return
			}
			st.frames <- f
		}
	}()
	t.Cleanup(st.Close)
	return st
}

// Close cancels the stream, as a device that goes away.
func (st *Stream) Close() { st.cancel() }

// Send sends a frame, giving it the next ref if it has none; returns the ref.
func (st *Stream) Send(t testing.TB, req *starlingv1.StreamRequest) uint64 {
	t.Helper()
	if req.Ref == 0 {
		st.ref++
		req.Ref = st.ref
	}
	if err := st.cs.Send(req); err != nil {
		t.Fatalf("servertest: send frame: %v", err)
	}
	return req.Ref
}

// Timeout bounds every wait for a frame.
const Timeout = 10 * time.Second

// Next returns the next frame; it fails the test if none comes in Timeout
// or the stream ends.
func (st *Stream) Next(t testing.TB) *starlingv1.StreamResponse {
	t.Helper()
	select {
	case f, ok := <-st.frames:
		if !ok {
			t.Fatalf("servertest: stream ended: %v", st.err)
		}
		return f
	case <-time.After(Timeout):
		t.Fatalf("servertest: no frame within %v", Timeout)
	}
	return nil
}

// Poll returns the next frame if one arrives within d; false if none does
// or the stream ended.
func (st *Stream) Poll(d time.Duration) (*starlingv1.StreamResponse, bool) {
	select {
	case f, ok := <-st.frames:
		return f, ok
	case <-time.After(d):
		return nil, false
	}
}

// Quiet fails the test if a frame arrives within d.
func (st *Stream) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f, ok := <-st.frames:
		if ok {
			t.Fatalf("servertest: unexpected frame %v", f)
		}
	case <-time.After(d):
	}
}

// QuietBut is Quiet for every frame but those skip accepts (receipts,
// say, which come on their own time).
func (st *Stream) QuietBut(t testing.TB, d time.Duration, skip func(*starlingv1.StreamResponse) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-st.frames:
			if ok && !skip(f) {
				t.Fatalf("servertest: unexpected frame %v", f)
			}
			if !ok {
				return
			}
		case <-deadline:
			return
		}
	}
}

// End waits for the stream to end and returns its error (nil for a clean
// end), failing the test if it does not end within Timeout. Frames still
// arriving are returned too.
func (st *Stream) End(t testing.TB) ([]*starlingv1.StreamResponse, error) {
	t.Helper()
	var rest []*starlingv1.StreamResponse
	deadline := time.After(Timeout)
	for {
		select {
		case f, ok := <-st.frames:
			if !ok {
				return rest, st.err
			}
			rest = append(rest, f)
		case <-deadline:
			t.Fatalf("servertest: stream did not end within %v", Timeout)
		}
	}
}

// Text sends a text message and returns the ref of the Send frame.
func (st *Stream) Text(t testing.TB, toUser, toGroup, clientMsgID, text string) uint64 {
	t.Helper()
	send := &starlingv1.Send{ClientMsgId: clientMsgID, Content: &starlingv1.Content{Text: text}}
	if toGroup != "" {
		send.To = &starlingv1.Send_GroupId{GroupId: toGroup}
	} else {
		send.To = &starlingv1.Send_UserId{UserId: toUser}
	}
	return st.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Send{Send: send}})
}

// Ack acknowledges seq of conv.
func (st *Stream) Ack(t testing.TB, conv string, seq int64) {
	t.Helper()
	st.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{ConversationId: conv, Seq: seq}}})
}
