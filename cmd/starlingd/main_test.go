package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

func TestParseConfigDefaultsEnvAndFlags(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7070" || c.DataDir != "./data" || c.DB != "" || c.Window != 64 {
		t.Fatalf("defaults: %+v", c)
	}
	env := map[string]string{"STARLING_LISTEN": "127.0.0.1:9000", "STARLING_DATA_DIR": "/tmp/x", "STARLING_SEND_RATE": "5"}
	c, err = parseConfig([]string{"--listen", "127.0.0.1:9001"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.DataDir != "/tmp/x" || c.SendRate != 5 {
		t.Fatalf("flag must win over env, env over default: %+v", c)
	}
}

func TestParseConfigRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"db not postgres":   {args: []string{"--db", "mysql://x"}},
		"tls half":          {args: []string{"--tls-cert", "c.pem"}},
		"short secret":      {args: []string{"--token-secret", "short"}},
		"bad level":         {args: []string{"--log-level", "loud"}},
		"stray argument":    {args: []string{"serve"}},
		"unknown flag":      {args: []string{"--nope"}},
		"bad env duration":  {env: map[string]string{"STARLING_TOKEN_TTL": "forever"}},
		"negative rate":     {args: []string{"--send-rate", "-1"}},
		"bcrypt cost range": {args: []string{"--bcrypt-cost", "2"}},
	} {
		if _, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the real program's run() and returns a stop function that
// waits for it to return.
func start(t *testing.T, c config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, io.Discard) }()
	cc, err := grpc.NewClient(c.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("starlingd exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("starlingd not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() error {
		cancel()
		return <-done
	}
}

func TestRunServesAndKeepsItsSecretAcrossRestarts(t *testing.T) {
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--data-dir", t.TempDir(), "--bcrypt-cost", "4", "--log-level", "error"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	cc, err := grpc.NewClient(c.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	authc := starlingv1.NewAuthServiceClient(cc)
	if _, err := authc.Register(t.Context(), &starlingv1.RegisterRequest{Username: "alice", Password: "password1"}); err != nil {
		t.Fatal(err)
	}
	login, err := authc.Login(t.Context(), &starlingv1.LoginRequest{Username: "alice", Password: "password1", DeviceId: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v on shutdown", err)
	}
	fi, err := os.Stat(filepath.Join(c.DataDir, "token-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token secret file: %v %v", fi, err)
	}
	// Same data dir: the user and the token (same secret) still work.
	stop = start(t, c)
	defer stop()
	ctx := contextWithToken(t.Context(), login.GetToken())
	if _, err := starlingv1.NewChatServiceClient(cc).ListConversations(ctx, &starlingv1.ListConversationsRequest{}); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
}

func TestRunReportsBadSetupClearly(t *testing.T) {
	// An unreachable database: a clear error, quickly, no panic.
	c, _ := parseConfig([]string{"--listen", freeAddr(t), "--db", "postgres://postgres@127.0.0.1:1/starling?sslmode=disable&connect_timeout=2", "--token-secret", strings.Repeat("s", 32)}, func(string) string { return "" })
	begin := time.Now()
	err := run(t.Context(), c, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("unreachable db: %v", err)
	}
	if time.Since(begin) > 15*time.Second {
		t.Fatalf("took %v to report an unreachable database", time.Since(begin))
	}
	// --db without a shared secret.
	c, _ = parseConfig([]string{"--listen", freeAddr(t), "--db", "postgres://postgres@127.0.0.1:1/x"}, func(string) string { return "" })
	if err := run(t.Context(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "token-secret") {
		t.Fatalf("db without secret: %v", err)
	}
	// Cluster mode is refused rather than silently ignored.
	c, _ = parseConfig([]string{"--listen", freeAddr(t), "--redis", "redis://127.0.0.1:6379", "--data-dir", t.TempDir()}, func(string) string { return "" })
	if err := run(t.Context(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("redis: %v", err)
	}
	// A port in use.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	c, _ = parseConfig([]string{"--listen", l.Addr().String(), "--data-dir", t.TempDir()}, func(string) string { return "" })
	if err := run(t.Context(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("port in use: %v", err)
	}
}

func contextWithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
