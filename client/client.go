package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Client is a connection to a Starling server, shared by the unary calls and
// any number of Sessions. It is safe for concurrent use.
type Client struct {
	conn   *grpc.ClientConn
	log    *slog.Logger
	auth   starlingv1.AuthServiceClient
	users  starlingv1.UserServiceClient
	groups starlingv1.GroupServiceClient
	chat   starlingv1.ChatServiceClient

	mu       sync.Mutex
	token    string
	sessions map[*Session]struct{}
	closed   bool
}

// Option configures Dial.
type Option func(*dialConfig)

type dialConfig struct {
	tls    *tls.Config
	useTLS bool
	// clientCert and adminConns are WithClientCertificate's and
	// WithAdminConnections' (NewAdmin only).
	clientCert *tls.Certificate
	adminConns int
	dialOpts   []grpc.DialOption
	token      string
	log        *slog.Logger
	maxRecv    int
}

// WithTLS makes the connection use TLS. A nil cfg uses the system roots and
// the target's host name. Without this option the connection is plaintext
// (fine on loopback, not across a network).
func WithTLS(cfg *tls.Config) Option {
	return func(c *dialConfig) { c.useTLS, c.tls = true, cfg }
}

// WithDialOptions adds gRPC dial options (interceptors, keepalive, a custom
// dialer, …). They are applied after the client's own, so they win.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *dialConfig) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithMaxRecvBytes sets the largest message, in bytes, the client accepts
// from the server on any call; 0 or less keeps gRPC's default of 4 MiB.
// The server bounds what it sends (a Push, SyncBatch or GetHistory answer
// stops at about 1 MiB and says has_more), so the default is ample for it;
// raise the limit for a server that sends more. A frame over the limit
// ends a Session with ErrFrameTooLarge (a reconnect would be sent the same
// frame) and fails a unary call with codes.ResourceExhausted.
func WithMaxRecvBytes(n int) Option {
	return func(c *dialConfig) { c.maxRecv = n }
}

// WithToken sets the token sent with every call; the same as SetToken.
func WithToken(token string) Option {
	return func(c *dialConfig) { c.token = token }
}

// WithLogger sets where the client and its sessions log. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *dialConfig) { c.log = l }
}

// Dial prepares a client for target (host:port). Like grpc.NewClient it does
// not connect: the first call does, so a server that is down shows up as a
// codes.Unavailable error from that call.
func Dial(target string, opts ...Option) (*Client, error) {
	cfg := dialConfig{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{
		log:      cfg.log,
		token:    cfg.token,
		sessions: make(map[*Session]struct{}),
	}
	creds := insecure.NewCredentials()
	if cfg.useTLS {
		creds = credentials.NewTLS(cfg.tls)
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// The token is read at each call, so SetToken/Login take effect on
		// the calls and streams that start after them.
		grpc.WithPerRPCCredentials(bearer{c}),
	}, cfg.dialOpts...)
	if cfg.maxRecv > 0 {
		// Before the caller's options, which win.
		dialOpts = append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.maxRecv))}, dialOpts...)
	}
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("starling: dial %s: %w", target, err)
	}
	c.conn = conn
	c.auth = starlingv1.NewAuthServiceClient(conn)
	c.users = starlingv1.NewUserServiceClient(conn)
	c.groups = starlingv1.NewGroupServiceClient(conn)
	c.chat = starlingv1.NewChatServiceClient(conn)
	return c, nil
}

// bearer sends the client's current token as "authorization: Bearer <token>".
type bearer struct{ c *Client }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok := b.c.Token()
	if tok == "" {
		// Register and Login need no token; the server answers
		// Unauthenticated to anything else, which is the clear error.
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity is false so that plaintext loopback works; use
// WithTLS for anything that crosses a network.
func (bearer) RequireTransportSecurity() bool { return false }

// Token returns the token sent with calls ("" if none).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// SetToken sets the token sent with calls from now on.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
}

// Conn is the underlying gRPC connection, for services this package does
// not wrap. Calls on it carry the token too.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// AuthService is the generated AuthService client on this connection.
func (c *Client) AuthService() starlingv1.AuthServiceClient { return c.auth }

// UserService is the generated UserService client on this connection.
func (c *Client) UserService() starlingv1.UserServiceClient { return c.users }

// GroupService is the generated GroupService client on this connection.
func (c *Client) GroupService() starlingv1.GroupServiceClient { return c.groups }

// ChatService is the generated ChatService client on this connection.
func (c *Client) ChatService() starlingv1.ChatServiceClient { return c.chat }

// Close ends every Session opened on the client (their Err becomes
// ErrClosed) and closes the connection. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sessions := make([]*Session, 0, len(c.sessions))
	for s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()

	for _, s := range sessions {
		s.Close()
	}
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("starling: close connection: %w", err)
	}
	return nil
}

// track records an open session so Close can end it; false once closed.
func (c *Client) track(s *Session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.sessions[s] = struct{}{}
	return true
}

func (c *Client) untrack(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s)
}
