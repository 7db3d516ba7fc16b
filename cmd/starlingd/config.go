package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// config is starlingd's command line.
type config struct {
	Listen        string
	DataDir       string
	DB            string
	Redis         string
	MetricsListen string
	TLSCert       string
	TLSKey        string
	TokenSecret   string
	TokenTTL      time.Duration
	NodeID        string
	LogLevel      slog.Level
	SendRate      float64
	BcryptCost    int
	Pprof         bool
	Window        int
}

// parseConfig reads flags, each falling back to STARLING_<NAME> from
// getenv; a flag given on the command line wins over the environment.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("starlingd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7070", "gRPC listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded SQLite database (and the generated token secret)")
	fs.StringVar(&c.DB, "db", "", "postgres:// or postgresql:// URL of CockroachDB or PostgreSQL (default: embedded SQLite in --data-dir)")
	fs.StringVar(&c.Redis, "redis", "", "redis:// URL for cluster mode (presence and cross-node routing)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "address for Prometheus /metrics over HTTP (default: off)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves gRPC over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&c.TokenSecret, "token-secret", "", "secret that signs tokens, at least 32 bytes; generated and kept in --data-dir when empty (single node only)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 30*24*time.Hour, "lifetime of login tokens")
	fs.StringVar(&c.NodeID, "node-id", "", "this node's name in logs and Welcome frames (default: host name)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Float64Var(&c.SendRate, "send-rate", 100, "messages per second one user may send (0: unlimited)")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve /debug/pprof/ on --metrics-listen")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 10, "bcrypt cost of stored passwords (4-31); lower only for load tests that register many users")
	fs.IntVar(&c.Window, "window", 64, "pushes a device may leave unacknowledged before it is sent Notify instead")

	// Environment first, so the command line overrides it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "STARLING_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(flagOutput)
			fs.PrintDefaults()
		}
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return config{}, fmt.Errorf("--log-level: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return config{}, errors.New("--tls-cert and --tls-key go together")
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return config{}, errors.New("--db must be a postgres:// or postgresql:// URL (CockroachDB or PostgreSQL)")
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < 32 {
		return config{}, errors.New("--token-secret must be at least 32 bytes")
	}
	if c.Pprof && c.MetricsListen == "" {
		return config{}, errors.New("--pprof needs --metrics-listen")
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		return config{}, errors.New("--bcrypt-cost must be 4-31")
	}
	if c.SendRate < 0 || c.Window < 1 {
		return config{}, errors.New("--send-rate must be >= 0 and --window >= 1")
	}
	return c, nil
}
