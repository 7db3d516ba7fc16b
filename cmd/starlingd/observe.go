package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/starling-im/starling/server"
)

// newLogger makes the node's logger: --log-format on logOut at --log-level.
func newLogger(c config, logOut io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(logOut, opts))
	}
	return slog.New(slog.NewTextHandler(logOut, opts))
}

// startupLine logs, once, how this node runs: what an operator checks
// first when something is off. No secrets: the database URL is reduced to
// its host and database.
func startupLine(log *slog.Logger, c config, cfg server.Config, lis, metricsLis net.Listener, secretGenerated bool) {
	attrs := []any{"node", cfg.NodeID, "listen", lis.Addr().String(), "tls", c.TLSCert != ""}
	if c.DB != "" {
		attrs = append(attrs, "backend", "postgres", "db", dbHost(c.DB))
	} else {
		dir, _ := filepath.Abs(c.DataDir)
		attrs = append(attrs, "backend", "sqlite", "data_dir", dir)
	}
	if c.Redis != "" {
		attrs = append(attrs, "mode", "cluster", "redis", dbHost(c.Redis), "redis_prefix", c.RedisPrefix)
	} else {
		attrs = append(attrs, "mode", "single")
	}
	if metricsLis != nil {
		attrs = append(attrs, "metrics", metricsLis.Addr().String())
	}
	attrs = append(attrs, "token_secret_generated", secretGenerated, "tracing", c.OTLPEndpoint != "")
	log.Info("starlingd starting", attrs...)
}

// dbHost is the host and database of a database or Redis URL, without
// credentials.
func dbHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Host + u.Path
}

// newTracerProvider exports traces over OTLP/gRPC to --otlp-endpoint. The
// exporter connects lazily: a collector that is down costs dropped spans,
// never a failed start.
func newTracerProvider(ctx context.Context, c config, node string) (*sdktrace.TracerProvider, error) {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.OTLPEndpoint)}
	if c.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("starlingd"), semconv.ServiceInstanceID(node))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// shutdownTracing flushes the spans still buffered, briefly.
func shutdownTracing(tp *sdktrace.TracerProvider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("flushing traces failed", "err", err)
	}
}
