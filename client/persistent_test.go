package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// streamOpens counts the Streams a client opens, and notes when.
type streamOpens struct {
	mu sync.Mutex
	at []time.Time
}

func (o *streamOpens) dialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if desc.ClientStreams && desc.ServerStreams { // ChatService.Stream, the only bidi method
			o.mu.Lock()
			o.at = append(o.at, time.Now())
			o.mu.Unlock()
		}
		return streamer(ctx, desc, cc, method, opts...)
	})
}

func (o *streamOpens) times() []time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Time(nil), o.at...)
}

// ended waits, bounded by a context timeout, for s to end.
func ended(t *testing.T, s *client.Session, opens *streamOpens) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	select {
	case <-s.Done():
		return s.Err()
	case <-ctx.Done():
		t.Fatalf("session still running after %d stream opens", len(opens.times()))
		return nil
	}
}

// A frame larger than the client's receive limit ends the session at once,
// with ErrFrameTooLarge, instead of reconnecting forever to be sent the
// same frame: Err is set, Messages is closed, a waiting Send returns the
// error, and no second stream is opened.
func TestFrameTooLargeEndsSession(t *testing.T) {
	srv := servertest.Start(t)
	aliceID := register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))

	opens := &streamOpens{}
	tp := &tap{}
	// Bob's sends never reach the server, so one is pending when the
	// session ends.
	tp.setDropSent(func(f *starlingv1.StreamRequest) bool { return f.GetSend() != nil })
	// 1 KiB holds Welcome and the small unary answers, not the message.
	bob := open(t, login(t, srv, "bob", "phone", client.WithMaxRecvBytes(1024),
		client.WithDialOptions(opens.dialOption(), tp.dialOption())))
	// Another device of bob's, with the limit raised, gets the message.
	tablet := open(t, login(t, srv, "bob", "tablet", client.WithMaxRecvBytes(1<<20)))

	pending := make(chan error, 1)
	go func() {
		_, err := bob.SendText(t.Context(), client.ToUser(aliceID), "never answered")
		pending <- err
	}()
	waitFor(t, "bob's Send to be written", func() bool {
		return len(tp.sentFrames(func(f *starlingv1.StreamRequest) bool { return f.GetSend() != nil })) == 1
	})

	big := strings.Repeat("x", 4096)
	send(t, alice, client.ToUser(bobID), big)

	err := ended(t, bob, opens)
	if !errors.Is(err, client.ErrFrameTooLarge) || status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("session error %v (code %v), want ErrFrameTooLarge, ResourceExhausted", err, status.Code(err))
	}
	if n := len(opens.times()); n != 1 {
		t.Fatalf("%d streams opened, want 1: the session must not reconnect", n)
	}
	if err := <-pending; !errors.Is(err, client.ErrFrameTooLarge) {
		t.Fatalf("pending send returned %v, want ErrFrameTooLarge", err)
	}
	if _, ok := <-bob.Messages(); ok {
		t.Fatal("messages not closed")
	}
	if _, err := bob.SendText(t.Context(), client.ToUser(aliceID), "after"); !errors.Is(err, client.ErrFrameTooLarge) {
		t.Fatalf("send after the end returned %v, want ErrFrameTooLarge", err)
	}
	if got := receive(t, tablet, 1)[0]; got.GetContent().GetText() != big {
		t.Fatalf("tablet got %d bytes of text", len(got.GetContent().GetText()))
	}
}

// A Send frame over the server's frame limit breaks the stream on the
// server's side, with the same gRPC words as a receive over the client's
// limit. The client tells the two apart: that Send fails with
// ResourceExhausted, the session reconnects without it and goes on.
func TestOversizedSendFailsAlone(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	opens := &streamOpens{}
	alice := open(t, login(t, srv, "alice", "phone", client.WithDialOptions(opens.dialOption())))
	bob := open(t, login(t, srv, "bob", "phone"))

	limit := srv.Config().MaxFrameBytes
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := alice.SendText(ctx, client.ToUser(bobID), strings.Repeat("x", limit+1))
	if status.Code(err) != codes.ResourceExhausted || errors.Is(err, client.ErrFrameTooLarge) || ctx.Err() != nil {
		t.Fatalf("oversized send returned %v, want ResourceExhausted at once", err)
	}
	if err := alice.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	send(t, alice, client.ToUser(bobID), "small")
	wantTexts(t, receive(t, bob, 1), "small")
	if n := len(opens.times()); n != 2 {
		t.Fatalf("%d streams opened, want 2 (one reconnect)", n)
	}
}

// How a session treats an error that breaks its stream: it reconnects
// (after the longest backoff for a probable bug), or it ends.
func TestStreamErrorClasses(t *testing.T) {
	const maxBackoff = 200 * time.Millisecond // open's WithBackoff
	for _, tc := range []struct {
		name string
		err  error
		end  func(error) bool // nil: the session reconnects
		slow bool
	}{
		{name: "unavailable", err: status.Error(codes.Unavailable, "connection reset")},
		{name: "slow device", err: status.Error(codes.ResourceExhausted, "outbound queue full: the device is not reading; reconnect and sync")},
		{name: "internal", err: status.Error(codes.Internal, "stream terminated by RST_STREAM with error code: INTERNAL_ERROR"), slow: true},
		{name: "unknown", err: status.Error(codes.Unknown, "something odd"), slow: true},
		{name: "unauthenticated", err: status.Error(codes.Unauthenticated, "token revoked"),
			end: func(err error) bool { return errors.Is(err, client.ErrUnauthenticated) }},
		{name: "permission denied", err: status.Error(codes.PermissionDenied, "device blocked"),
			end: func(err error) bool { return status.Code(err) == codes.PermissionDenied }},
		{name: "unimplemented", err: status.Error(codes.Unimplemented, "unknown service starling.v1.ChatService"),
			end: func(err error) bool { return status.Code(err) == codes.Unimplemented }},
		{name: "too large", err: status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5000000 vs. 4194304)"),
			end: func(err error) bool { return errors.Is(err, client.ErrFrameTooLarge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := servertest.Start(t)
			register(t, srv, "alice")
			bobID := register(t, srv, "bob")
			alice := open(t, login(t, srv, "alice", "phone"))
			opens := &streamOpens{}
			tp := &tap{}
			var broke time.Time
			var once sync.Once
			tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
				var err error
				if f.GetPush() != nil {
					once.Do(func() { broke, err = time.Now(), tc.err })
				}
				return 1, err
			})
			bob := open(t, login(t, srv, "bob", "phone", client.WithDialOptions(opens.dialOption(), tp.dialOption())))

			send(t, alice, client.ToUser(bobID), "one")
			if tc.end != nil {
				if err := ended(t, bob, opens); !tc.end(err) {
					t.Fatalf("session error %v (code %v)", err, status.Code(err))
				}
				if n := len(opens.times()); n != 1 {
					t.Fatalf("%d streams opened, want 1", n)
				}
				return
			}
			// The push was lost with the stream; the reconnect's catch-up
			// brings it.
			wantTexts(t, receive(t, bob, 1), "one")
			if err := bob.Err(); err != nil {
				t.Fatalf("session ended: %v", err)
			}
			at := opens.times()
			if len(at) != 2 {
				t.Fatalf("%d streams opened, want 2", len(at))
			}
			// backoff's jitter keeps at least half of the delay.
			if wait := at[1].Sub(broke); tc.slow && wait < maxBackoff/2 {
				t.Fatalf("reconnected %v after the break, want the longest backoff (at least %v)", wait, maxBackoff/2)
			}
		})
	}
}
