package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/nodelease"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres"
	"github.com/starling-im/starling/storage/sqlite"
)

// run wires the concrete backends together and serves until ctx ends.
//
// Everything that can fail without touching the disk comes first: the
// flag values, the TLS files, binding the listen sockets. Only then are
// the data dir, the token secret and the database created, so a start
// that fails on a bad flag, a port in use or a bad certificate leaves
// nothing behind.
func run(ctx context.Context, c config, logOut io.Writer) (err error) {
	log := newLogger(c, logOut)
	if err := c.validate(); err != nil {
		return err
	}
	if c.TokenSecretFile != "" {
		if c.TokenSecret, err = readSecretFile(c.TokenSecretFile, log); err != nil {
			return err
		}
	}
	if c.DB != "" && c.TokenSecret == "" {
		return errNoSharedSecret
	}
	cfg := server.DefaultConfig()
	cfg.NodeID = c.NodeID
	if cfg.AdminKeys, err = adminKeys(c); err != nil { // before anything is created
		return err
	}
	cfg.PushWindow, cfg.PushPreview = c.PushWindow, c.PushPreview
	if c.PushWebhook != "" {
		cfg.PushWebhook = &push.WebhookConfig{URL: c.PushWebhook, Secret: []byte(c.PushSecret)}
	}
	if c.EventWebhook != "" {
		cfg.EventWebhook = &push.WebhookConfig{URL: c.EventWebhook, Secret: []byte(c.EventSecret)}
		cfg.EventTypes, _ = push.ParseEventTypes(c.Events) // validated
	}
	if cfg.NodeID == "" {
		host, _ := os.Hostname()
		if !validNodeID(host) {
			return fmt.Errorf("the host name %q is no node id; set --node-id", host)
		}
		cfg.NodeID = host
	}
	cfg.TokenTTL = c.TokenTTL
	cfg.SendRate = rate.Limit(c.SendRate)
	cfg.SendBurst = max(1, int(2*c.SendRate))
	cfg.Window = c.Window
	cfg.HeartbeatInterval = c.Heartbeat
	if c.DMPolicy == "friends" {
		cfg.DMPolicy = chat.DMFriends
	}
	cfg.BcryptCost = c.BcryptCost
	cfg.QueueSize = max(cfg.QueueSize, 4*c.Window) // validate bounds the window, so this stays bounded too
	cfg.AuthLimits = c.authLimits()
	cfg.SessionGCInterval = c.SessionGCInterval
	cfg.SessionGCBatch = c.SessionGCBatch

	var opts []grpc.ServerOption
	var reloads []reloadable // what SIGHUP re-reads
	if c.TLSCert != "" {
		tc, cert, err := serverTLS(c, &cfg)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		reloads = append(reloads, cert)
	}
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	defer func() {
		if err != nil {
			lis.Close() // Serve closes it otherwise
		}
	}()
	var metricsLis net.Listener
	if c.MetricsListen != "" {
		if metricsLis, err = net.Listen("tcp", c.MetricsListen); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", c.MetricsListen, err)
		}
		defer func() {
			if err != nil {
				metricsLis.Close()
			}
		}()
	}

	// Now the disk.
	secret, generated, err := tokenSecret(c)
	if err != nil {
		return err
	}
	cfg.TokenSecret = secret

	store, err := openStore(ctx, c, &cfg)
	if err != nil {
		return err
	}
	defer store.Close()

	// Without Redis, one node per database: a second node is refused,
	// here and again once it holds its own lease (two started at once).
	// In a cluster, only a second node with this node's id is. A lease
	// left by this node's own earlier run, killed, is waited out (at most
	// its TTL, 15 s).
	if c.Redis == "" {
		if err := nodelease.WaitAlone(ctx, store, cfg.NodeID, log); err != nil {
			return err
		}
		cfg.SingleNode = true
	} else {
		if err := nodelease.WaitNameFree(ctx, store, cfg.NodeID, log); err != nil {
			return err
		}
		rc, err := redisClient(c.Redis)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		defer rc.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rc.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("--redis: cannot reach Redis: %w", err)
		}
		cfg.ResyncInterval = c.Resync
		cfg.ClusterDefaults(rc, c.RedisPrefix)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg

	if c.OTLPEndpoint != "" {
		tp, err := newTracerProvider(ctx, c, cfg.NodeID)
		if err != nil {
			return err
		}
		defer shutdownTracing(tp, log)
		cfg.TracerProvider = tp
	}

	reloads = append(reloads, adminReloads(c, cfg.AdminKeys, cfg.AdminClientCAs)...)
	defer reloadOnHangUp(ctx, log, reloads...)()
	srv, err := server.New(cfg, store, log, opts...)
	if err != nil {
		return err
	}
	startupLine(log, c, cfg, lis, metricsLis, generated)
	if metricsLis != nil {
		defer serveMetrics(metricsLis, reg, srv.HealthHandler(), c.Pprof, log)()
	}
	return srv.Serve(ctx, lis)
}

// serverTLS loads --tls-cert and --tls-key and, with --admin-client-ca,
// the CAs of admin client certificates: the handshake then requests a
// client certificate without requiring or verifying it (devices have
// none; one no admin CA signed is refused by AdminService with
// UNAUTHENTICATED, not by a failed handshake). The certificate is served
// from a pointer the returned reloadable replaces (SIGHUP), so a renewed
// certificate is served to new connections without a restart.
func serverTLS(c config, cfg *server.Config) (*tls.Config, reloadable, error) {
	var cert atomic.Pointer[tls.Certificate]
	load := func() error {
		kp, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		cert.Store(&kp)
		return nil
	}
	if err := load(); err != nil {
		return nil, reloadable{}, err
	}
	tc := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.Load(), nil }}
	if c.AdminClientCA != "" {
		pool, err := admin.LoadCAs(c.AdminClientCA)
		if err != nil {
			return nil, reloadable{}, fmt.Errorf("--admin-client-ca: %w", err)
		}
		cfg.AdminClientCAs = admin.NewCAs(pool)
		tc.ClientAuth = tls.RequestClientCert
	}
	return tc, reloadable{what: "TLS certificate", file: c.TLSCert, load: load}, nil
}

var errNoSharedSecret = errors.New("a token secret is required with --db (STARLING_TOKEN_SECRET, --token-secret-file or --token-secret; make one with: starlingd gen-secret): every node of a cluster must sign tokens with the same secret")

// readSecretFile reads --token-secret-file: the secret, without the
// trailing newline that `starlingd gen-secret > file` (or an editor)
// leaves. A file others may read is a warning, not an error: container
// platforms mount secrets world-readable inside a container of one user
// by default, and refusing them would make the safe option the hard one.
func readSecretFile(path string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-secret-file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if len(s) < 32 {
		return "", fmt.Errorf("--token-secret-file %s holds %d bytes; a token secret is at least 32 (make one with: starlingd gen-secret > %s)", path, len(s), path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("the token secret file is readable by every user of this machine: anyone who reads it can forge tokens; chmod 600 it (640 for a group)",
			"file", path, "mode", fi.Mode().Perm().String())
	}
	return s, nil
}

// openStore opens the database --db names, or the embedded SQLite file.
// It also picks the commit parallelism that suits the backend: SQLite has
// one writer, so one pipeline batches best; a server database commits
// transactions in parallel.
func openStore(ctx context.Context, c config, cfg *server.Config) (storage.Store, error) {
	if c.DB != "" {
		st, err := postgres.Open(ctx, c.DB)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		cfg.SendShards = 8
		return st, nil
	}
	path := filepath.Join(c.DataDir, "starling.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open embedded database: %w", err)
	}
	cfg.SendShards = 1
	return st, nil
}

// tokenSecret returns --token-secret, or the secret kept in the data dir,
// made on first start. Nodes of a cluster must share one secret, so the
// generated one is for a single node only.
func tokenSecret(c config) (secret []byte, generated bool, err error) {
	if c.TokenSecret != "" {
		return []byte(c.TokenSecret), false, nil
	}
	if c.DB != "" {
		return nil, false, errNoSharedSecret
	}
	path := filepath.Join(c.DataDir, "token-secret")
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, false, fmt.Errorf("%s holds fewer than 32 bytes; delete it to make a new one", path)
		}
		return []byte(s), false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("read token secret: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	s := hex.EncodeToString(raw)
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return nil, false, fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("write token secret: %w", err)
	}
	return []byte(s), true, nil
}

// serveMetrics serves /metrics, /healthz, /readyz (and /debug/pprof/) on
// lis until stop.
func serveMetrics(lis net.Listener, reg *prometheus.Registry, health http.Handler, pprofOn bool, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/healthz", health)
	mux.Handle("/readyz", health)
	if pprofOn {
		// Profiles of a live node, for performance work; off by default
		// since they expose internals.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	log.Info("metrics", "addr", lis.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		<-done
	}
}
