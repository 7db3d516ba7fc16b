package server_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// A client that half-closes its stream (grpcurl does after its last frame)
// gets the answers to what it sent, then a clean end of the stream: not a
// connection cut after the write timeout, and no handler left behind (a
// handler that never returns would also hang the server's shutdown).
func TestHalfClosedStreamEnds(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.WriteTimeout = time.Second }))
	u := srv.NewUser(t, "alice")
	ctx, cancel := context.WithTimeout(servertest.WithToken(t.Context(), srv.Login(t, u, "cli")), 10*time.Second)
	defer cancel()
	cs, err := starlingv1.NewChatServiceClient(srv.Dial(t)).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Send(&starlingv1.StreamRequest{Ref: 1, Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	start, ponged := time.Now(), false
	for {
		f, err := cs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %v the stream ended with %v; want a clean end", time.Since(start).Round(time.Millisecond), err)
		}
		ponged = ponged || f.GetRef() == 1 && f.GetPong() != nil
	}
	if !ponged {
		t.Fatal("the Ping sent before the half-close was not answered")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the stream took %v to end after the half-close", d)
	}
}
