// Command starlingd is the Starling server. With no flags it runs a
// complete single node on an embedded SQLite file in ./data:
//
//	go run ./cmd/starlingd
//
// Every flag can also be set as an environment variable STARLING_<NAME>
// (upper case, '-' as '_'): --data-dir is STARLING_DATA_DIR.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starlingd:", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "starlingd:", err)
		os.Exit(1)
	}
}
