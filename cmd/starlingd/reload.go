package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// reloadable is a file starlingd re-reads on SIGHUP: load reads it and,
// when it loads, puts it in use; an error leaves what was in use.
type reloadable struct {
	what, file string
	load       func() error
}

// reloadOnHangUp re-reads every item on each SIGHUP until ctx ends, so a
// rotated certificate or CA and an added or revoked API key take effect
// without a restart. A file that does not load is logged and the one
// before it stays in use. The returned func stops it.
func reloadOnHangUp(ctx context.Context, log *slog.Logger, items ...reloadable) func() {
	if len(items) == 0 {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			for _, it := range items {
				if err := it.load(); err != nil {
					log.Error(it.what+": reload failed; keeping the ones before", "file", it.file, "err", err)
					continue
				}
				log.Info(it.what+": reloaded", "file", it.file)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
