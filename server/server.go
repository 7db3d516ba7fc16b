package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/gateway"
	"github.com/starling-im/starling/server/hub"
	"github.com/starling-im/starling/server/nodelease"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/server/readstate"
	"github.com/starling-im/starling/server/wire"
	"github.com/starling-im/starling/storage"
)

// Server is one Starling node.
type Server struct {
	cfg      Config
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	hub      *hub.Hub
	chat     *chat.Service
	bus      bus.Bus // Serve subscribes the node to what is published to it
	router   *bus.Router
	pres     presence.Presence
	gateway  *gateway.ChatServer
	reads    *readstate.Tracker
	resync   chan struct{} // cap 1: re-read what every stream is behind on
	accounts *auth.Accounts
	lease    *nodelease.Keeper // the node number of message ids
	backend  backend           // offline notifications and events (server/push)

	connsMu sync.Mutex
	conns   *connListener // the listener Serve accepts on

	store storage.Store
	ready readiness
}

// New builds a node on store. Extra grpc.ServerOptions (TLS credentials,
// say) are appended to Starling's own.
func New(cfg Config, store storage.Store, log *slog.Logger, opts ...grpc.ServerOption) (*Server, error) {
	tokens, err := auth.NewTokens(cfg.TokenSecret, cfg.TokenTTL)
	if err != nil {
		return nil, err
	}
	accounts, err := auth.NewAccounts(store, tokens, cfg.BcryptCost, cfg.AuthLimits, log)
	if err != nil {
		return nil, err
	}
	lease := nodelease.New(store, nodelease.Config{Node: cfg.NodeID, TTL: cfg.NodeLeaseTTL, Exclusive: cfg.SingleNode, UniqueName: cfg.Redis != nil}, log)
	ids := lease.IDs() // makes no id until Serve leases a number
	if cfg.Window <= 0 || cfg.QueueSize <= cfg.Window {
		return nil, fmt.Errorf("server: queue size (%d) must exceed the push window (%d)", cfg.QueueSize, cfg.Window)
	}
	h := hub.New(hub.Config{
		Window:              cfg.Window,
		QueueSize:           cfg.QueueSize,
		MaxDevices:          cfg.MaxDevices,
		IdleTimeout:         3 * cfg.HeartbeatInterval,
		CursorFlushInterval: cfg.CursorFlushInterval,
		MaxPushBytes:        cfg.MaxResponseBytes,
		MaxQueueBytes:       cfg.MaxQueueBytes,
		// Only the in-process presence and bus of one node offer every
		// message to every stream, in order.
		OffersMayBeLost: cfg.Redis != nil || cfg.Presence != nil || cfg.Bus != nil,
	}, store, log)
	// The seam between the send path and the devices: presence says which
	// node holds a device, the bus hands each node its recipients, and this
	// node's hub takes what is published to it. In-process by default (one
	// node); cluster versions plug in behind the same interfaces.
	// With Redis, the node is one of a cluster: the same interfaces,
	// shared through Redis.
	resync := make(chan struct{}, 1)
	askResync := func() {
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	pres, b := cfg.Presence, cfg.Bus
	if cfg.Redis != nil && pres == nil {
		pres = presence.NewRedis(cfg.Redis, presence.RedisConfig{
			Node:           cfg.NodeID,
			Prefix:         cfg.RedisPrefix,
			TTL:            cfg.PresenceTTL,
			ResyncInterval: cfg.ResyncInterval,
			OnReplaced: func(k bus.DeviceKey) {
				h.Kick(bus.Kick{UserID: k.UserID, DeviceID: k.DeviceID, Session: k.Session, Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED})
			},
			OnLost: askResync,
		}, log)
	}
	if cfg.Redis != nil && b == nil {
		b = bus.NewRedis(cfg.Redis, cfg.RedisPrefix, log)
	}
	if pres == nil {
		pres = presence.NewLocal(cfg.NodeID)
	}
	if b == nil {
		b = bus.NewLocal()
	}
	router := bus.NewRouter(cfg.NodeID, pres, b, log)
	backend, err := newBackend(cfg, router, pres, h, store, log)
	if err != nil {
		return nil, err
	}
	var (
		nm       *nodeMetrics
		observer chat.Observer
	)
	if cfg.Registerer != nil {
		if nm, err = newNodeMetrics(cfg.Registerer); err != nil {
			return nil, err
		}
		observer = nm
	}
	var tracer trace.Tracer
	if cfg.TracerProvider != nil {
		tracer = cfg.TracerProvider.Tracer("github.com/starling-im/starling/server/chat")
	}
	c := chat.New(chat.Config{
		Observer:         observer,
		Tracer:           tracer,
		MaxContentBytes:  cfg.MaxContentBytes,
		MaxGroupMembers:  cfg.MaxGroupMembers,
		MaxResponseBytes: cfg.MaxResponseBytes,
		SendRate:         cfg.SendRate,
		SendBurst:        cfg.SendBurst,
		DMPolicy:         cfg.DMPolicy,
		Presence:         pres,
		SendShards:       cfg.SendShards,
		MaxBatch:         cfg.MaxBatch,
		BatchLinger:      cfg.BatchLinger,
		QueuePerShard:    4 * cfg.MaxBatch,
	}, store, backend.offline, ids, log)

	s := &Server{cfg: cfg, log: log, hub: h, chat: c, bus: b, router: router, pres: pres, resync: resync, accounts: accounts, health: health.NewServer(), store: store, lease: lease, backend: backend}
	s.setServing(true)

	var metrics *grpcprom.ServerMetrics
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered))}
	// Interceptors of the streams other than the chat Stream (see
	// skipForChatStream).
	var streams []grpc.StreamServerInterceptor
	if cfg.Registerer != nil {
		metrics = grpcprom.NewServerMetrics()
		if err := cfg.Registerer.Register(metrics); err != nil {
			return nil, fmt.Errorf("server: register gRPC metrics: %w", err)
		}
		unary = append(unary, metrics.UnaryServerInterceptor())
		// Not on the chat Stream: the middleware counts every message of a
		// stream through a labelled counter, ~7 % of the server's CPU under
		// chat load; the hub's own atomic counters cover streams instead.
		streams = append(streams, metrics.StreamServerInterceptor())
	}
	adminSrv := &admin.Server{Keys: cfg.AdminKeys, ClientCAs: cfg.AdminClientCAs, Accounts: accounts, Chat: c, Kicker: router, Presence: pres, Hub: h, NodeID: cfg.NodeID, Log: log}
	if adminSrv.Keys == nil {
		adminSrv.Keys = &admin.Keys{} // no key opens AdminService
	}
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(callLevel)}
	authFn := s.authenticate
	unary = append(unary,
		logging.UnaryServerInterceptor(interceptorLogger(log), logOpts...),
		selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authFn), selector.MatchFunc(needsAuth)),
		// AdminService: API keys only (server/admin).
		selector.UnaryServerInterceptor(adminSrv.Interceptor, selector.MatchFunc(isAdmin)),
	)
	streams = append(streams,
		logging.StreamServerInterceptor(interceptorLogger(log), logOpts...),
		selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(authFn), selector.MatchFunc(needsAuth)),
	)

	base := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
			skipForChatStream(chainStreams(streams)),
		),
		grpc.MaxRecvMsgSize(cfg.MaxFrameBytes),
		// Protobuf, plus pushes encoded once for all their recipients.
		grpc.ForceServerCodecV2(wire.NewCodec()),
		// An idle connection gives its write buffer back to a pool.
		grpc.SharedWriteBuffer(true),
		// Clients keep no HPACK dynamic table for their requests here: a
		// table costs every connection its entries and their maps (~1 KiB
		// of an idle phone's memory), for a saving of a few header bytes
		// per stream opened.
		grpc.HeaderTableSize(0),
		// Fixed receive windows (gRPC's defaults), which turns off its
		// bandwidth-delay estimator: it pings the client after every
		// read that follows an answered ping — at ordinary load that is
		// every PushAck, a write and a read more per delivery. A chat
		// client uploads little; 64 KiB per round trip is plenty.
		grpc.InitialWindowSize(65535),
		grpc.InitialConnWindowSize(65535),
		// Keepalive under the app heartbeat: detects dead TCP peers, and
		// tolerates clients that ping as often as every 10 s.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Minute,
			Timeout: 20 * time.Second,
			// Connections that hold no RPC go; long-lived ones are
			// recycled (GOAWAY, then cut after the grace) so that load
			// rebalances after a deploy. Clients reconnect and resync.
			MaxConnectionIdle:     cfg.MaxConnectionIdle,
			MaxConnectionAge:      orInfinity(cfg.MaxConnectionAge),
			MaxConnectionAgeGrace: orInfinity(cfg.MaxConnectionAgeGrace),
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A device needs one Stream and a few unary calls at a time; a
		// connection cannot open thousands of streams that wait for Auth.
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		// A connection that never sends its HTTP/2 preface (or finishes
		// its TLS handshake) is closed after this.
		grpc.ConnectionTimeout(cfg.ConnectionTimeout),
	}
	if cfg.TracerProvider != nil {
		// A span per RPC (the chat Stream is one long span; sends have
		// their own, see chat.Config.Tracer), no per-message events.
		base = append(base, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(cfg.TracerProvider))))
	}
	s.grpc = grpc.NewServer(append(base, opts...)...)

	starlingv1.RegisterAuthServiceServer(s.grpc, &gateway.AuthServer{Accounts: accounts, Kicker: router, Log: log})
	starlingv1.RegisterUserServiceServer(s.grpc, &gateway.UserServer{Chat: c, Log: log})
	starlingv1.RegisterGroupServiceServer(s.grpc, &gateway.GroupServer{Chat: c, Log: log})
	starlingv1.RegisterFriendServiceServer(s.grpc, &gateway.FriendServer{Chat: c, Log: log})
	s.reads = readstate.New(store, router, cfg.ReadFlushInterval, log)
	s.reads.SetBlocks(c) // receipts are not told across a block
	starlingv1.RegisterPushServiceServer(s.grpc, &gateway.PushServer{Store: store, Log: log})
	starlingv1.RegisterAdminServiceServer(s.grpc, adminSrv)
	chatServer := &gateway.ChatServer{
		Reads:    s.reads,
		Signals:  router,
		Accounts: accounts,
		Chat:     c,
		Hub:      h,
		Kicker:   router,
		// Friends hear when a user comes online or goes offline.
		Presence:          backend.presence(c.WatchPresence(pres)),
		Log:               log,
		NodeID:            cfg.NodeID,
		HeartbeatInterval: cfg.HeartbeatInterval,
		AuthTimeout:       cfg.AuthTimeout,
		MaxInflightSends:  cfg.MaxInflightSends,
		WriteTimeout:      cfg.WriteTimeout,
		AbortConn:         s.closeConn,
		MaxUnauthStreams:  cfg.MaxUnauthStreams,
		RecheckAfter:      cfg.RecheckAfter,
	}
	s.gateway = chatServer
	if nm != nil {
		chatServer.OnRefuse = nm.refused
		if err := registerStateMetrics(cfg.Registerer, h, chatServer, accounts, store, router, pres); err != nil {
			return nil, err
		}
	}
	starlingv1.RegisterChatServiceServer(s.grpc, chatServer)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if metrics != nil {
		metrics.InitializeMetrics(s.grpc)
	}
	return s, nil
}

// Methods reachable without a token. The Stream is absent on purpose: it is
// authenticated by metadata here OR by its first frame in the handler.
var public = map[string]bool{
	starlingv1.AuthService_Register_FullMethodName: true,
	starlingv1.AuthService_Login_FullMethodName:    true,
	starlingv1.ChatService_Stream_FullMethodName:   true,
}

func needsAuth(_ context.Context, c interceptors.CallMeta) bool {
	if public[c.FullMethod()] || admin.IsAdminMethod(c.FullMethod()) {
		return false
	}
	svc := c.Service
	return !strings.HasPrefix(svc, "grpc.health.") && !strings.HasPrefix(svc, "grpc.reflection.")
}

// authenticate is the auth interceptor's function: the bearer token from
// the "authorization" metadata becomes an auth.Identity in the context.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	token, err := grpcauth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, err
	}
	id, err := s.accounts.Authenticate(ctx, token)
	if err != nil {
		// Unauthenticated for a bad token; Unavailable when the session
		// could not be read.
		return nil, gateway.ToError(s.log, err)
	}
	return auth.WithIdentity(ctx, id), nil
}

func isAdmin(_ context.Context, c interceptors.CallMeta) bool {
	return admin.IsAdminMethod(c.FullMethod())
}

// skipForChatStream runs next on every stream but the chat Stream, which
// authenticates itself (from its metadata or its first frame, see
// gateway.ChatServer.Stream) and logs its own open and close. Every
// interceptor level would stay on the stack of each open stream's handler
// goroutine for the stream's whole life, and that stack is most of what an
// idle phone costs the node.
func skipForChatStream(next grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod == starlingv1.ChatService_Stream_FullMethodName {
			return handler(srv, ss)
		}
		return next(srv, ss, info, handler)
	}
}

// chainStreams runs ints in order around a stream's handler.
func chainStreams(ints []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		h := handler
		for i := len(ints) - 1; i >= 0; i-- {
			ic, next := ints[i], h
			h = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
		}
		return h(srv, ss)
	}
}

func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.Error("panic in handler", "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// Serve serves on lis until ctx ends, then shuts down gracefully, in an
// order that loses no answer:
//
//  1. health turns NOT_SERVING (load balancers stop sending new devices);
//  2. the send pipeline stops taking sends — a Send frame is refused with
//     Unavailable (ShuttingDown), which the client resends elsewhere — and
//     commits, fans out and answers every send it had taken, in batches;
//  3. every stream is sent what was queued for it (those SendAcks), then
//     Disconnect{SHUTDOWN, reconnect}; new streams are refused;
//  4. gRPC stops (GracefulStop, forced after shutdownGrace);
//  5. the acknowledged cursors are written.
//
// The store stays open: its owner closes it after Serve returns. Before
// serving, Serve leases the node's number (server/nodelease); it releases
// it last.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if err := s.lease.Start(ctx); err != nil { // a node number before any send
		lis.Close()
		return err
	}
	defer s.lease.Stop() // runs last: the pipeline has made its last id
	// A cluster's presence makes the node live before any stream opens,
	// and takes it out after the last one closed.
	if lc, ok := s.pres.(lifecycle); ok {
		if err := lc.Start(ctx); err != nil {
			lis.Close()
			return fmt.Errorf("server: presence: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			lc.Stop(sctx)
		}()
	}
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	// The hub takes this node's deliveries before the first send can
	// commit, and until the pipeline has answered its last.
	unsubscribe, err := s.bus.Subscribe(bg, s.cfg.NodeID, nodeHandler{Hub: s.hub, chat: s.chat, lost: s.askResync})
	if err != nil {
		lis.Close()
		return fmt.Errorf("server: subscribe the node to the bus: %w", err)
	}
	routerCtx, stopRouter := context.WithCancel(bg)
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		s.router.Run(routerCtx)
	}()
	resyncCtx, stopResync := context.WithCancel(bg)
	resyncDone := make(chan struct{})
	go func() {
		defer close(resyncDone)
		s.runResync(resyncCtx)
	}()
	chatCtx, stopChat := context.WithCancel(bg)
	chatDone := make(chan struct{})
	go func() {
		defer close(chatDone)
		s.chat.Run(chatCtx)
	}()
	stopPush := s.runPush(bg)
	defer stopPush() // after the pipeline's last delivery
	hubCtx, stopHub := context.WithCancel(bg)
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		_ = s.hub.Run(hubCtx)
	}()
	// Read positions are written behind; the last ones when the streams
	// are gone, before the router stops carrying their receipts.
	readsCtx, stopReads := context.WithCancel(bg)
	readsDone := make(chan struct{})
	go func() {
		defer close(readsDone)
		s.reads.Run(readsCtx)
	}()
	// Expired and revoked login sessions are deleted in the background.
	gcCtx, stopSessionGC := context.WithCancel(bg)
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		s.accounts.RunSessionCollector(gcCtx, s.cfg.SessionGCInterval, s.cfg.SessionGCBatch)
	}()

	probeDone := make(chan struct{})
	probeCtx, stopProbe := context.WithCancel(bg)
	go func() {
		defer close(probeDone)
		if p, ok := s.store.(pinger); ok {
			s.probe(probeCtx, p)
		}
	}()

	tracked := newConnListener(lis)
	s.connsMu.Lock()
	s.conns = tracked
	s.connsMu.Unlock()
	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(tracked) }()
	s.log.Info("serving", "addr", lis.Addr().String(), "node", s.cfg.NodeID)

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	s.ready.mu.Lock()
	s.ready.draining = true
	s.ready.mu.Unlock()
	stopProbe()
	<-probeDone
	stopSessionGC()
	<-gcDone
	stopResync()
	<-resyncDone
	s.health.Shutdown()
	stopChat()
	<-chatDone
	unsubscribe()
	s.hub.CloseAll(&starlingv1.Disconnect{
		Reason:    starlingv1.DisconnectReason_DISCONNECT_REASON_SHUTDOWN,
		Message:   "server shutting down",
		Reconnect: true,
	})
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		s.grpc.Stop()
		<-stopped
	}
	stopHub()
	<-hubDone
	stopReads()
	<-readsDone
	stopRouter()
	<-routerDone
	s.log.Info("stopped", "node", s.cfg.NodeID)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("server: serve: %w", err)
	}
	return nil
}

// lifecycle is a Presence that runs while the node serves
// (presence.Redis).
type lifecycle interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context)
}

// nodeHandler is what the bus hands this node: deliveries, announcements
// and kicks go to the hub, group changes to chat's member cache; a lost
// stretch of the bus makes every stream re-read what it is behind on.
type nodeHandler struct {
	*hub.Hub
	chat *chat.Service
	lost func()
}

func (n nodeHandler) GroupChanged(group string) { n.chat.ForgetGroup(group) }
func (n nodeHandler) Lost()                     { n.lost() }

func (s *Server) askResync() {
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

// resyncParallel bounds the catch-up reads of one resync.
const resyncParallel = 4

// runResync re-reads what every stream of the node is behind on when
// asked (the bus or presence lost something) and every ResyncInterval,
// until ctx ends.
func (s *Server) runResync(ctx context.Context) {
	var tick <-chan time.Time
	if s.cfg.ResyncInterval > 0 {
		t := time.NewTicker(s.cfg.ResyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		reason := "periodic"
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-s.resync:
			reason = "deliveries may have been lost"
		}
		start := time.Now()
		checked, failed := s.hub.Resync(ctx, s.gateway.Behind, resyncParallel)
		level := slog.LevelDebug
		if reason != "periodic" || failed > 0 {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "resync: streams re-read what they are behind on", "reason", reason, "streams", checked, "failed", failed, "took", time.Since(start))
	}
}

// orInfinity maps 0 (off) to gRPC's "never".
func orInfinity(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return d
}

// shutdownGrace bounds how long streams get to say goodbye before gRPC
// cuts them.
const shutdownGrace = 10 * time.Second

// closeConn closes a client connection (see gateway.ChatServer.AbortConn).
func (s *Server) closeConn(addr net.Addr) bool {
	s.connsMu.Lock()
	l := s.conns
	s.connsMu.Unlock()
	return l != nil && l.closeConn(addr)
}

// callLevel logs finished unary calls at debug, unless they failed in a
// way an operator should see (a server fault, the database down).
func callLevel(code codes.Code) logging.Level {
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return logging.LevelError
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return logging.LevelWarn
	}
	return logging.LevelDebug
}

// interceptorLogger adapts slog to the logging interceptor.
func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
