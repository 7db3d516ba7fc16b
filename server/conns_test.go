package server

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// captureListener records the connections its listener hands to gRPC.
type captureListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *captureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// gRPC must read the node's connections through readyConn.ReadOnReady,
// or every connection keeps a 32 KiB read buffer for its whole life. The
// method answers an interface internal to grpc-go: an upgrade that renames
// it fails here rather than silently.
func TestGRPCReadsThroughReadyConn(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capture := &captureListener{Listener: newConnListener(lis)}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- gs.Serve(capture) }()
	defer func() { gs.Stop(); <-served }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	capture.mu.Lock()
	defer capture.mu.Unlock()
	if len(capture.conns) != 1 {
		t.Fatalf("%d connections accepted, want 1", len(capture.conns))
	}
	rc, ok := capture.conns[0].(*readyConn)
	if !ok {
		t.Fatalf("accepted a %T, want a *readyConn", capture.conns[0])
	}
	if !rc.used.Load() {
		t.Fatal("gRPC did not read through ReadOnReady: each connection holds a read buffer again (did grpc-go rename its readyreader.Reader?)")
	}
}
