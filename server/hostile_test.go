package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/server/wire"
)

// tightConn dials with a fixed 64 KiB flow-control window, so a client
// that does not read stops the server's writes to it after 64 KiB.
func tightConn(t *testing.T, srv *servertest.Server, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(srv.Target(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// leavesReady waits for cc to leave READY: the server closed it.
func leavesReady(t *testing.T, cc *grpc.ClientConn, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), servertest.Timeout)
	defer cancel()
	// The connection carried a stream, so it was READY; on a slow machine
	// it may have been cut already.
	if cc.GetState() == connectivity.Ready && !cc.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatalf("connection still READY: %s", why)
	}
}

// What is queued for a device is bounded in bytes: a client that asks for
// megabytes and never reads is cut as slow, and the server stays up.
func TestQueuedBytesAreBounded(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.MaxQueueBytes = 4 << 20
		c.WriteTimeout = 200 * time.Millisecond
	}))
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	big := strings.Repeat("x", 60<<10)
	for i := range 40 { // 2.4 MB in the conversation
		expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint(i), big))
	}
	cc := tightConn(t, srv)
	ctx, cancel := context.WithCancel(servertest.WithToken(context.Background(), srv.Login(t, bobU, "phone")))
	defer cancel()
	st, err := starlingv1.NewChatServiceClient(cc).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conv := fmt.Sprintf("c2c:%s:%s", min(aliceU.ID, bobU.ID), max(aliceU.ID, bobU.ID))
	for i := range 20 { // 20 answers of ~1 MiB each, never read
		if err := st.Send(&starlingv1.StreamRequest{Ref: uint64(i + 1), Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: conv, Limit: 500}}}); err != nil {
			break // cut already
		}
	}
	leavesReady(t, cc, "a device holding 20 MiB of answers was not cut")
	// Everyone else carries on, and nothing stored was lost.
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "after", "still here"))
	bob := connect(t, srv, bobU, "laptop")
	if got := syncAll(t, bob, conv, 0); len(got) != 41 {
		t.Fatalf("bob syncs %d messages, want 41", len(got))
	}
}

// Streams waiting for their Auth frame are bounded on the node.
func TestUnauthenticatedStreamsAreBounded(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.MaxUnauthStreams = 2
		c.AuthTimeout = 5 * time.Second
	}))
	const n = 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused int
	)
	for range n {
		st := srv.OpenRawStream(t, context.Background()) // no token, no Auth frame
		wg.Go(func() {
			rest, err := st.End(t)
			if status.Code(err) == codes.ResourceExhausted && len(rest) == 1 && rest[0].GetError().GetMessage() == apierr.TooManyUnauth.Message {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		})
	}
	wg.Wait() // the two admitted ones end at the auth timeout
	if refused != n-2 {
		t.Fatalf("%d of %d silent streams refused, want %d", refused, n, n-2)
	}
}

// A connection that never sends the HTTP/2 preface is closed promptly.
func TestSilentConnectionsAreClosed(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.ConnectionTimeout = 300 * time.Millisecond }))
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", srv.Target())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(servertest.Timeout))
		start := time.Now()
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("silent connection still open after %v", time.Since(start))
				}
				break // closed by the server
			}
		}
	}
}

// One connection cannot open more than MaxConcurrentStreams streams.
func TestStreamsPerConnection(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.MaxConcurrentStreams = 4 }))
	u := srv.NewUser(t, "alice")
	cc := srv.Dial(t)
	chat := starlingv1.NewChatServiceClient(cc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 4 { // four devices: a device's second stream would replace its first
		st, err := chat.Stream(servertest.WithToken(ctx, srv.Login(t, u, fmt.Sprint("device", i))))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil { // Welcome: the stream is open
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	short, stop := context.WithTimeout(servertest.WithToken(ctx, srv.Login(t, u, "device4")), 500*time.Millisecond)
	defer stop()
	st, err := chat.Stream(short)
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("fifth stream on one connection: %v, want it held back (DeadlineExceeded)", err)
	}
}

// Bytes that are not a StreamRequest are the client's fault: refused with
// INVALID_ARGUMENT like an empty frame (gRPC itself would say INTERNAL and
// end the call); an authenticated stream stays usable, and a unary call
// with a garbage request is refused by validation.
func TestGarbageFrames(t *testing.T) {
	srv := servertest.Start(t)
	u := srv.NewUser(t, "alice")
	tok := srv.Login(t, u, "phone")
	cc, err := grpc.NewClient(srv.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(wire.NewCodec())))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	garbage := wire.Encoded{0xff, 0xff, 0xff, 0xff}
	desc := &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}

	cs, err := cc.NewStream(servertest.WithToken(t.Context(), tok), desc, starlingv1.ChatService_Stream_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *starlingv1.StreamResponse {
		t.Helper()
		var f starlingv1.StreamResponse
		if err := cs.RecvMsg(&f); err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		return &f
	}
	if f := recv(); f.GetWelcome() == nil {
		t.Fatalf("first frame %v", f)
	}
	if err := cs.SendMsg(garbage); err != nil {
		t.Fatal(err)
	}
	if e := recv().GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument || e.GetFatal() || e.GetMessage() != apierr.BadFrame.Message {
		t.Fatalf("garbage answered with %v", e)
	}
	if err := cs.SendMsg(&starlingv1.StreamRequest{Ref: 9, Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}}); err != nil {
		t.Fatal(err)
	}
	if f := recv(); f.GetRef() != 9 || f.GetPong() == nil {
		t.Fatalf("after garbage, Ping answered with %v", f)
	}

	// Before authentication it is not an Auth frame: refused, fatally.
	cs, err = cc.NewStream(t.Context(), desc, starlingv1.ChatService_Stream_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(garbage); err != nil {
		t.Fatal(err)
	}
	for {
		var f starlingv1.StreamResponse
		if err = cs.RecvMsg(&f); err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("garbage first frame: %v", err)
	}

	// Unary: the garbage request decodes as empty and fails validation.
	var out starlingv1.RegisterResponse
	err = cc.Invoke(t.Context(), starlingv1.AuthService_Register_FullMethodName, garbage, &out)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("garbage Register: %v", err)
	}
}

// A device that stops reading (its flow-control window full, the server's
// writes to it blocked) and is then logged out or replaced does not hold
// its stream, nor the writer blocked on it: the stream ends and its
// connection is closed once the write timeout has passed, and the node
// carries on.
func TestKickedBlockedWriterIsCut(t *testing.T) {
	for _, how := range []string{"logged out", "replaced"} {
		t.Run(how, func(t *testing.T) {
			srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.WriteTimeout = 200 * time.Millisecond }))
			aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
			alice := connect(t, srv, aliceU, "phone")
			cc := tightConn(t, srv)
			tok := srv.Login(t, bobU, "phone")
			ctx, cancel := context.WithCancel(servertest.WithToken(context.Background(), tok))
			defer cancel()
			st, err := starlingv1.NewChatServiceClient(cc).Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f, err := st.Recv(); err != nil || f.GetWelcome() == nil { // open; from here bob never reads
				t.Fatalf("first frame %v, %v", f, err)
			}
			// 480 KiB of pushes, queued for bob before each SendAck (one
			// node fans out before it answers): more than his window and
			// the server's write quota hold, so his writer blocks.
			big := strings.Repeat("x", 60<<10)
			for i := range 8 {
				expectAck(t, alice, alice.Text(t, bobU.ID, "", fmt.Sprint(i), big))
			}
			switch how {
			case "logged out":
				if _, err := starlingv1.NewAuthServiceClient(srv.Dial(t)).Logout(servertest.WithToken(t.Context(), tok), &starlingv1.LogoutRequest{}); err != nil {
					t.Fatal(err)
				}
			case "replaced":
				connect(t, srv, bobU, "phone")
			}
			leavesReady(t, cc, "the blocked stream of a kicked device was not cut")
			expectAck(t, alice, alice.Text(t, bobU.ID, "", "after", "still here"))
		})
	}
}
