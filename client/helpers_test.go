package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const password = "correct horse battery"

// register creates a user on srv and returns its id.
func register(t *testing.T, srv *servertest.Server, username string) string {
	t.Helper()
	c, err := client.Dial(srv.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.Register(t.Context(), username, password, "")
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	return u.GetUserId()
}

// login returns a Client logged in as username on device, closed at cleanup.
func login(t *testing.T, srv *servertest.Server, username, device string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(srv.Target(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Login(t.Context(), username, password, device); err != nil {
		t.Fatalf("login %s/%s: %v", username, device, err)
	}
	return c
}

// open opens a session with fast reconnects, closed at cleanup.
func open(t *testing.T, c *client.Client, opts ...client.SessionOption) *client.Session {
	t.Helper()
	opts = append([]client.SessionOption{client.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	s, err := c.Open(t.Context(), opts...)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// receive reads n messages from s, failing the test if they do not come.
func receive(t *testing.T, s *client.Session, n int) []*starlingv1.Message {
	t.Helper()
	var got []*starlingv1.Message
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m, ok := <-s.Messages():
			if !ok {
				t.Fatalf("messages closed after %d of %d: %v", len(got), n, s.Err())
			}
			got = append(got, m)
		case <-timeout:
			t.Fatalf("got %d of %d messages: %v", len(got), n, texts(got))
		}
	}
	return got
}

// quiet checks that s delivers nothing more for a while.
func quiet(t *testing.T, s *client.Session) {
	t.Helper()
	select {
	case m := <-s.Messages():
		t.Fatalf("unexpected message %s #%d %q", m.GetConversationId(), m.GetSeq(), m.GetContent().GetText())
	case <-time.After(300 * time.Millisecond):
	}
}

func send(t *testing.T, s *client.Session, to client.Recipient, text string) *starlingv1.SendAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ack, err := s.SendText(ctx, to, text)
	if err != nil {
		t.Fatalf("send %q to %v: %v", text, to, err)
	}
	return ack
}

func texts(ms []*starlingv1.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%d:%s", m.GetSeq(), m.GetContent().GetText())
	}
	return out
}

// wantTexts checks messages are the given texts, in order, with seqs
// increasing by one.
func wantTexts(t *testing.T, got []*starlingv1.Message, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", texts(got), want)
	}
	for i, m := range got {
		if m.GetContent().GetText() != want[i] {
			t.Fatalf("got %v, want %v", texts(got), want)
		}
		if i > 0 && m.GetConversationId() == got[i-1].GetConversationId() && m.GetSeq() != got[i-1].GetSeq()+1 {
			t.Fatalf("seqs not consecutive: %v", texts(got))
		}
	}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
}

// tap is a stream interceptor that lets a test see, drop and repeat frames
// on the real connection, to stage what a flaky network or a lost bus
// message does.
type tap struct {
	mu sync.Mutex
	// onRecv decides what happens to a frame from the server: deliver it
	// (times=1), drop it (0) or deliver it twice (2). An error breaks the
	// stream as a network failure would.
	onRecv func(*starlingv1.StreamResponse) (times int, err error)
	// dropSent reports whether a client frame is lost on the way out.
	dropSent func(*starlingv1.StreamRequest) bool
	sent     []*starlingv1.StreamRequest
	// hold keeps a server frame back; it reaches the client right after
	// the next frame release matches, so a test can stage an order of
	// frames the server may send but not on cue.
	hold, release func(*starlingv1.StreamResponse) bool
	held          []*starlingv1.StreamResponse
}

func (tp *tap) dialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &tappedStream{ClientStream: cs, tap: tp}, nil
	})
}

func (tp *tap) setDropSent(f func(*starlingv1.StreamRequest) bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.dropSent = f
}

func (tp *tap) setOnRecv(f func(*starlingv1.StreamResponse) (int, error)) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.onRecv = f
}

// setHold holds back the frames hold matches until a frame release
// matches has reached the client.
func (tp *tap) setHold(hold, release func(*starlingv1.StreamResponse) bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.hold, tp.release = hold, release
}

// heldFrames is how many frames are held back now.
func (tp *tap) heldFrames() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.held)
}

// sentFrames returns the client's frames of one kind seen so far.
func (tp *tap) sentFrames(match func(*starlingv1.StreamRequest) bool) []*starlingv1.StreamRequest {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []*starlingv1.StreamRequest
	for _, f := range tp.sent {
		if match(f) {
			out = append(out, f)
		}
	}
	return out
}

type tappedStream struct {
	grpc.ClientStream
	tap  *tap
	next []*starlingv1.StreamResponse // delivered before reading on: repeats, released frames
}

func (s *tappedStream) SendMsg(m any) error {
	if f, ok := m.(*starlingv1.StreamRequest); ok {
		s.tap.mu.Lock()
		s.tap.sent = append(s.tap.sent, proto.CloneOf(f))
		drop := s.tap.dropSent != nil && s.tap.dropSent(f)
		s.tap.mu.Unlock()
		if drop {
			return nil
		}
	}
	return s.ClientStream.SendMsg(m)
}

func (s *tappedStream) RecvMsg(m any) error {
	f, ok := m.(*starlingv1.StreamResponse)
	if !ok {
		return s.ClientStream.RecvMsg(m)
	}
	if len(s.next) > 0 {
		proto.Merge(f, s.next[0])
		s.next = s.next[1:]
		return nil
	}
	for {
		if err := s.ClientStream.RecvMsg(f); err != nil {
			return err
		}
		s.tap.mu.Lock()
		onRecv := s.tap.onRecv
		if s.tap.hold != nil && s.tap.hold(f) {
			s.tap.held = append(s.tap.held, proto.CloneOf(f))
			s.tap.mu.Unlock()
			proto.Reset(f)
			continue
		}
		if s.tap.release != nil && len(s.tap.held) > 0 && s.tap.release(f) {
			s.next = append(s.next, s.tap.held...)
			s.tap.held = nil
		}
		s.tap.mu.Unlock()
		times := 1
		if onRecv != nil {
			var err error
			if times, err = onRecv(f); err != nil {
				return err
			}
		}
		switch times {
		case 0:
			proto.Reset(f)
			continue
		case 2:
			s.next = append([]*starlingv1.StreamResponse{proto.CloneOf(f)}, s.next...)
		}
		return nil
	}
}

// errTapBroke is what a tap returns to stage a broken stream.
var errTapBroke = status.Error(codes.Unavailable, "tap: connection broken")

func isSync(f *starlingv1.StreamRequest) bool { return f.GetSync() != nil }

func isPing(f *starlingv1.StreamRequest) bool { return f.GetPing() != nil }

// counter counts calls across goroutines.
type counter struct{ n atomic.Int64 }

func (c *counter) inc() int64 { return c.n.Add(1) }

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionEnd waits for s to end and returns its error.
func sessionEnd(t *testing.T, s *client.Session) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
		return errors.New("unreachable")
	}
}
