package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/auth"
)

func TestParseConfigDefaultsEnvAndFlags(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7070" || c.DataDir != "./data" || c.DB != "" || c.Window != 64 || c.DMPolicy != "anyone" {
		t.Fatalf("defaults: %+v", c)
	}
	env := map[string]string{"STARLING_LISTEN": "127.0.0.1:9000", "STARLING_DATA_DIR": "/tmp/x", "STARLING_SEND_RATE": "5", "STARLING_DM_POLICY": "friends"}
	c, err = parseConfig([]string{"--listen", "127.0.0.1:9001"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.DataDir != "/tmp/x" || c.SendRate != 5 || c.DMPolicy != "friends" {
		t.Fatalf("flag must win over env, env over default: %+v", c)
	}
}

// The login and register limits default to the server's production
// values, and each has a flag and an environment variable.
func TestParseConfigAuthLimits(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.authLimits(), server.DefaultAuthLimits(); got != want {
		t.Fatalf("default limits %+v; want %+v", got, want)
	}
	d := server.DefaultConfig()
	if c.SessionGCInterval != d.SessionGCInterval || c.SessionGCBatch != d.SessionGCBatch {
		t.Fatalf("session collection %v/%d; want %v/%d", c.SessionGCInterval, c.SessionGCBatch, d.SessionGCInterval, d.SessionGCBatch)
	}
	env := map[string]string{"STARLING_LOGIN_RATE": "0", "STARLING_MAX_BCRYPT": "3"}
	c, err = parseConfig([]string{"--register-rate", "0.5", "--register-burst", "4", "--login-burst", "7",
		"--login-failures", "3", "--login-failure-window", "1m", "--login-backoff", "2s", "--login-backoff-max", "1m",
		"--bcrypt-wait", "1s", "--auth-tracked", "99", "--session-cache-ttl", "250ms", "--session-gc-interval", "1m", "--session-gc-batch", "10"},
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Limits{LoginRate: 0, LoginBurst: 7, RegisterRate: 0.5, RegisterBurst: 4, FailedLogins: 3, FailureWindow: time.Minute,
		LoginBackoff: 2 * time.Second, MaxLoginBackoff: time.Minute, MaxBcrypt: 3, BcryptWait: time.Second, SessionCacheTTL: 250 * time.Millisecond, MaxTracked: 99}
	if got := c.authLimits(); got != want {
		t.Fatalf("limits %+v; want %+v", got, want)
	}
	if c.SessionGCInterval != time.Minute || c.SessionGCBatch != 10 {
		t.Fatalf("session collection %v/%d", c.SessionGCInterval, c.SessionGCBatch)
	}
	// 0 turns each off; the window takes its maximum.
	if _, err := parseConfig([]string{"--login-rate", "0", "--register-rate", "0", "--login-failures", "0", "--max-bcrypt", "0",
		"--session-gc-interval", "0", "--session-cache-ttl", "0", "--window", "10000"}, func(string) string { return "" }); err != nil {
		t.Fatalf("limits off: %v", err)
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
		"bad log format":    {args: []string{"--log-format", "xml"}},
		"bad dm policy":     {args: []string{"--dm-policy", "strangers"}},
		"otlp without host": {args: []string{"--otlp-insecure"}},
		"bad otlp endpoint": {args: []string{"--otlp-endpoint", "collector"}},

		"negative token ttl":          {args: []string{"--token-ttl", "-1h"}},
		"zero token ttl":              {args: []string{"--token-ttl", "0s"}},
		"negative token ttl in env":   {env: map[string]string{"STARLING_TOKEN_TTL": "-5m"}},
		"huge window":                 {args: []string{"--window", "1099511627776"}},
		"window above the maximum":    {args: []string{"--window", "10001"}},
		"zero window":                 {args: []string{"--window", "0"}},
		"NaN send rate":               {args: []string{"--send-rate", "NaN"}},
		"infinite send rate":          {args: []string{"--send-rate", "+Inf"}},
		"absurd send rate":            {args: []string{"--send-rate", "1e300"}},
		"listen without port":         {args: []string{"--listen", "nonsense"}},
		"metrics listen without port": {args: []string{"--metrics-listen", "localhost"}},
		"negative login rate":         {args: []string{"--login-rate", "-1"}},
		"NaN login rate":              {args: []string{"--login-rate", "NaN"}},
		"login rate without burst":    {args: []string{"--login-burst", "0"}},
		"negative register rate":      {args: []string{"--register-rate", "-0.5"}},
		"register rate without burst": {args: []string{"--register-burst", "0"}},
		"negative login failures":     {args: []string{"--login-failures", "-1"}},
		"negative failure window":     {args: []string{"--login-failure-window", "-1m"}},
		"zero failure window":         {args: []string{"--login-failure-window", "0s"}},
		"negative backoff":            {args: []string{"--login-backoff", "-1s"}},
		"backoff max below backoff":   {args: []string{"--login-backoff", "1m", "--login-backoff-max", "1s"}},
		"negative max bcrypt":         {args: []string{"--max-bcrypt", "-1"}},
		"negative bcrypt wait":        {args: []string{"--bcrypt-wait", "-1s"}},
		"nothing tracked":             {args: []string{"--auth-tracked", "0"}},
		"negative tracked":            {args: []string{"--auth-tracked", "-5"}},
		"negative gc interval":        {args: []string{"--session-gc-interval", "-1m"}},
		"negative session cache ttl":  {args: []string{"--session-cache-ttl", "-1s"}},
		"zero gc batch":               {args: []string{"--session-gc-batch", "0"}},
		"bad login rate in env":       {env: map[string]string{"STARLING_LOGIN_RATE": "-3"}},
		"redis without db":            {args: []string{"--redis", "redis://127.0.0.1:6379/0"}},
		"redis not a redis url":       {args: []string{"--db", "postgres://h/db", "--redis", "http://127.0.0.1:6379"}},
		"redis url unparsable":        {args: []string{"--db", "postgres://h/db", "--redis", "redis://127.0.0.1:6379/notadb"}},
		"negative resync interval":    {args: []string{"--resync-interval", "-1s"}},
		"node id with a space":        {args: []string{"--node-id", "node a"}},
		"node id too long":            {args: []string{"--node-id", strings.Repeat("n", 65)}},
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
	return startLogging(t, c, io.Discard)
}

// startLogging is start with the node's log written to logOut.
func startLogging(t *testing.T, c config, logOut io.Writer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, logOut) }()
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
	token := registerAndLogin(t, c.Listen, "alice").token
	cc := dialNode(t, c.Listen)
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
	ctx := contextWithToken(t.Context(), token)
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
	// Cluster mode on the embedded database is refused, not ignored.
	if _, err := parseConfig([]string{"--listen", freeAddr(t), "--redis", "redis://127.0.0.1:6379", "--data-dir", t.TempDir()}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "--db") {
		t.Fatalf("redis without db: %v", err)
	}
	// A port in use.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	c, _ = parseConfig([]string{"--listen", l.Addr().String(), "--data-dir", t.TempDir()}, func(string) string { return "" })
	if err := run(t.Context(), c, io.Discard); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("port in use: %v", err)
	}
}

// dialNode connects to the node at addr (closed at cleanup).
func dialNode(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func contextWithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// A start that fails leaves no data dir, token secret or database behind:
// flags, TLS files and the listen sockets are checked before the disk is
// touched.
func TestFailedStartsLeaveNothingBehind(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args   []string
		change func(*config) // for values parseConfig refuses: run must refuse them too
		want   string
	}{
		"port in use":         {args: []string{"--listen", busy.Addr().String()}, want: "listen"},
		"metrics port in use": {args: []string{"--metrics-listen", busy.Addr().String()}, want: "metrics"},
		"port out of range":   {args: []string{"--listen", "127.0.0.1:99999"}, want: "listen"},
		"missing TLS files":   {args: []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, want: "TLS"},
		"junk TLS files":      {args: []string{"--tls-cert", junk, "--tls-key", junk}, want: "TLS"},
		"bad listen":          {change: func(c *config) { c.Listen = "nonsense" }, want: "listen"},
		"negative token ttl":  {change: func(c *config) { c.TokenTTL = -time.Hour }, want: "token-ttl"},
		"huge window":         {change: func(c *config) { c.Window = 1 << 40 }, want: "window"},
		"negative login rate": {change: func(c *config) { c.LoginRate = -1 }, want: "login-rate"},
		"bad backoff":         {change: func(c *config) { c.LoginBackoff = -time.Second }, want: "login-backoff"},
		"redis without db":    {change: func(c *config) { c.Redis = "redis://127.0.0.1:6379" }, want: "redis"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"--listen", freeAddr(t), "--data-dir", dir, "--bcrypt-cost", "4"}, tc.args...)
			c, err := parseConfig(args, func(string) string { return "" })
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if tc.change != nil {
				tc.change(&c)
			}
			err = run(t.Context(), c, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run: %v; want an error about %s", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the failed start left %s behind (%v)", dir, err)
			}
		})
	}

	// An existing data dir is left as it was.
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "token-secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--listen", busy.Addr().String(), "--data-dir", dir}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), c, io.Discard); err == nil {
		t.Fatal("port in use: started")
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "token-secret" {
		t.Fatalf("data dir after a failed start: %v %v; want only the token secret", entries, err)
	}
	// And the sockets were released: a good start on the same flags works.
	c.Listen = freeAddr(t)
	c.BcryptCost = 4
	c.LogLevel = slog.LevelError
	start(t, c)()
}

// The limit flags reach the server: a username's failed logins back off,
// an address's logins are rate limited.
func TestRunAppliesAuthLimits(t *testing.T) {
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--data-dir", t.TempDir(), "--bcrypt-cost", "4", "--log-level", "error",
		"--login-failures", "2", "--login-backoff", "1h", "--login-backoff-max", "1h", "--login-rate", "0.001", "--login-burst", "5"},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, c)
	defer stop()
	cc, err := grpc.NewClient(c.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	authc := starlingv1.NewAuthServiceClient(cc)
	if _, err := authc.Register(t.Context(), &starlingv1.RegisterRequest{Username: "alice", Password: "password1"}); err != nil {
		t.Fatal(err)
	}
	login := func(pw string) error {
		_, err := authc.Login(t.Context(), &starlingv1.LoginRequest{Username: "alice", Password: pw, DeviceId: "d"})
		return err
	}
	for i, want := range []struct {
		code codes.Code
		msg  string
	}{
		{codes.Unauthenticated, "wrong username or password"},
		{codes.Unauthenticated, "wrong username or password"},
		{codes.ResourceExhausted, "too many failed logins; retry later"},
		{codes.ResourceExhausted, "too many failed logins; retry later"},
		{codes.ResourceExhausted, "too many failed logins; retry later"},
		{codes.ResourceExhausted, "too many login attempts; retry later"}, // the 6th attempt: past the burst of 5
	} {
		st := status.Convert(login("wrong-password"))
		if st.Code() != want.code || st.Message() != want.msg {
			t.Fatalf("attempt %d: %v %q; want %v %q", i+1, st.Code(), st.Message(), want.code, want.msg)
		}
	}
}
