package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// slowHook is a webhook receiver that answers slowly or never
// (--slow-webhook): point starlingd's --push-webhook or --event-webhook at
// it to show that a slow receiver does not slow the send path.
type slowHook struct {
	srv      *http.Server
	received atomic.Int64
	done     chan struct{}
}

// startSlowHook listens on addr and answers each call after delay, or
// never (delay < 0: it holds the call until the caller gives up).
func startSlowHook(addr string, delay time.Duration) (*slowHook, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--slow-webhook: %w", err)
	}
	h := &slowHook{done: make(chan struct{})}
	h.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.received.Add(1)
		var wait <-chan time.Time
		if delay >= 0 {
			wait = time.After(delay)
		}
		select {
		case <-wait:
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done(): // the caller's timeout, or shutdown
		case <-h.done:
		}
	})}
	go func() { _ = h.srv.Serve(lis) }()
	return h, nil
}

// stop closes the receiver and returns how many calls it received.
func (h *slowHook) stop() int64 {
	close(h.done)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.srv.Close()
	}
	return h.received.Load()
}
