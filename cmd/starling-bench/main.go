// Command starling-bench is a load generator for a running Starling
// server. It registers its own users, opens real Streams with the raw
// generated stubs (the client library would hide cost), drives one
// scenario (c2c, group, idle or reconnect), and reports throughput,
// HDR latency percentiles, CPU and memory. Every run also checks delivery:
// each acknowledged message must reach every online recipient exactly
// once, in seq order; a run that loses or duplicates one exits 1.
//
// Run `starling-bench --help` for the flags, and see docs/benchmarks.md for
// the figures and the command lines that produced them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0
	exitCheckFailed = 1 // a message was lost, duplicated or altered
	exitError       = 2 // bad flags, unreachable server, a failed setup
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain is main without the process around it, so tests run exactly
// what the binary runs: flags → config → run → report → exit code.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "starling-bench: %v (see 'starling-bench --help')\n", err)
		return exitError
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if cfg.SlowWebhook != "" {
		hook, err := startSlowHook(cfg.SlowWebhook, cfg.SlowWebhookDelay)
		if err != nil {
			fmt.Fprintf(stderr, "starling-bench: %v\n", err)
			return exitError
		}
		defer func() { fmt.Fprintf(stderr, "starling-bench: the slow webhook received %d calls\n", hook.stop()) }()
	}
	if cfg.Scenario == "chaos" {
		return runChaos(ctx, cfg, stdout, stderr, log)
	}
	rep, err := run(ctx, cfg, stderr, log)
	if rep != nil {
		if cfg.JSON {
			if werr := writeJSON(stdout, rep); werr != nil {
				fmt.Fprintf(stderr, "starling-bench: write report: %v\n", werr)
				return exitError
			}
		} else {
			writeTable(stdout, rep)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "starling-bench: %v\n", err)
		return exitError
	}
	if !rep.Check.OK {
		fmt.Fprintf(stderr, "starling-bench: DELIVERY CHECK FAILED: %d lost, %d duplicated, %d altered\n",
			rep.Check.Lost, rep.Check.Duplicates, rep.Check.Altered)
		for _, p := range rep.Check.Problems {
			fmt.Fprintf(stderr, "  %s\n", p)
		}
		return exitCheckFailed
	}
	return exitOK
}
