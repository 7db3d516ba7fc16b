// Package servertest runs a real Starling node inside a test: the real
// server on a real loopback TCP port, on a real database (a fresh SQLite
// file by default). Tests talk to it over gRPC exactly as apps do.
package servertest

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/sqlite"
)

// Opener opens the test's database; every call after the first reopens the
// same one (a restart).
type Opener func(t testing.TB) storage.Store

// SQLite returns an Opener for a fresh SQLite file in a temporary directory.
func SQLite(t testing.TB) Opener {
	path := filepath.Join(t.TempDir(), "starling.db")
	return func(t testing.TB) storage.Store {
		st, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("servertest: open sqlite: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// Option changes how Start builds the server.
type Option func(*options)

type options struct {
	open      Opener
	configure func(*server.Config)
	grpcOpts  []grpc.ServerOption
}

// WithStore runs the server on the database open opens.
func WithStore(open Opener) Option { return func(o *options) { o.open = open } }

// WithConfig lets a test change the server's configuration.
func WithConfig(f func(*server.Config)) Option { return func(o *options) { o.configure = f } }

// WithServerOptions adds gRPC server options, such as grpc.Creds for a
// server that speaks TLS.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// Server is a running test node.
type Server struct {
	t      testing.TB
	opts   options
	secret []byte
	addr   string
	front  string // clients' address when not addr (a cluster node's front proxy)

	mu     sync.Mutex
	node   *server.Server
	store  storage.Store
	cancel context.CancelFunc
	done   chan error
}

// Start starts a node and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, secret: make([]byte, 32)}
	rand.Read(s.secret)
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.open == nil {
		s.opts.open = SQLite(t)
	}
	s.start(t, "127.0.0.1:0")
	t.Cleanup(s.Stop)
	return s
}

// Config returns the configuration the server runs with.
func (s *Server) Config() server.Config {
	cfg := server.DefaultConfig()
	cfg.TokenSecret = s.secret
	cfg.BcryptCost = bcrypt.MinCost
	cfg.SendRate = 0
	cfg.CursorFlushInterval = 50 * time.Millisecond
	// Tests register and log in many users from 127.0.0.1: no
	// per-address login or register limits (the tests of those limits set
	// them). The per-username backoff and the bcrypt bound stay on.
	cfg.AuthLimits.LoginRate = 0
	cfg.AuthLimits.RegisterRate = 0
	if s.opts.configure != nil {
		s.opts.configure(&cfg)
	}
	return cfg
}

func (s *Server) start(t testing.TB, addr string) {
	t.Helper()
	var lis net.Listener
	var err error
	// After a restart the old port may take a moment to be free again.
	for i := 0; ; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("servertest: listen: %v", err)
	}
	store := s.opts.open(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STARLING_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(s.Config(), store, log, s.opts.grpcOpts...)
	if err != nil {
		t.Fatalf("servertest: new server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	s.mu.Lock()
	s.addr, s.node, s.store, s.cancel, s.done = lis.Addr().String(), srv, store, cancel, done
	s.mu.Unlock()
}

// Target is the server's host:port, as clients reach it.
func (s *Server) Target() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.front != "" {
		return s.front
	}
	return s.addr
}

// listenAddr is where the server listens.
func (s *Server) listenAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Node is the running server itself, for what tests cannot reach over gRPC
// (its HTTP health handler, say).
func (s *Server) Node() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Store is the database the server runs on, for assertions on what was
// stored.
func (s *Server) Store() storage.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store
}

// Dial opens a client connection to the server, closed at cleanup.
func (s *Server) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("servertest: dial: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Stop shuts the server down gracefully and closes its store. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cancel, done, store := s.cancel, s.done, s.store
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		s.t.Errorf("servertest: serve: %v", err)
	}
	store.Close()
}

// Restart stops the server and starts it again on the same address and
// the same database.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	addr := s.listenAddr()
	s.Stop()
	s.start(t, addr)
}
