package push_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-im/starling/server/push"
)

var secret = []byte("0123456789abcdef-webhook-secret")

// receiver verifies every call's signature and answers with respond.
func receiver(t *testing.T, respond func(n int64, w http.ResponseWriter)) (*httptest.Server, chan []byte) {
	t.Helper()
	got := make(chan []byte, 100)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := push.Verify(secret, r.Header.Get(push.HeaderTimestamp), r.Header.Get(push.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("call with a bad signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		respond(n.Add(1), w)
		got <- body
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func startWebhook(t *testing.T, cfg push.WebhookConfig) *push.Webhook {
	t.Helper()
	cfg.Secret = secret
	w, err := push.NewWebhook(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func waitBody(t *testing.T, got chan []byte) []byte {
	t.Helper()
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook call")
		return nil
	}
}

func TestWebhookSignedAndRetried(t *testing.T) {
	// First call: 500; second: too slow (past the timeout); third: 200.
	srv, got := receiver(t, func(n int64, w http.ResponseWriter) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			time.Sleep(300 * time.Millisecond)
		}
	})
	w := startWebhook(t, push.WebhookConfig{URL: srv.URL, Timeout: 100 * time.Millisecond, Backoff: 10 * time.Millisecond, Attempts: 5})
	if !w.Enqueue("test", []byte(`{"hello":1}`)) {
		t.Fatal("enqueue refused")
	}
	for range 3 {
		if b := waitBody(t, got); string(b) != `{"hello":1}` {
			t.Fatalf("body %s", b)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Sent.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, want 1", w.Stats().Sent.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := w.Stats().Retried.Load(); r != 2 {
		t.Fatalf("retried %d, want 2", r)
	}
}

func TestWebhookNotRetriedOn4xx(t *testing.T) {
	srv, got := receiver(t, func(_ int64, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	w := startWebhook(t, push.WebhookConfig{URL: srv.URL, Backoff: time.Millisecond})
	w.Enqueue("test", []byte(`{}`))
	waitBody(t, got)
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Failed.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refused call was not counted as failed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := w.Stats().Retried.Load(); r != 0 {
		t.Fatalf("a 400 was retried %d times", r)
	}
}

func TestWebhookQueueFullDrops(t *testing.T) {
	release := make(chan struct{})
	srv, _ := receiver(t, func(_ int64, w http.ResponseWriter) { <-release })
	defer close(release)
	w := startWebhook(t, push.WebhookConfig{URL: srv.URL, QueueSize: 4, Workers: 1, Timeout: time.Minute})
	start := time.Now()
	accepted := 0
	for range 1000 {
		if w.Enqueue("test", []byte(`{}`)) {
			accepted++
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 enqueues took %v: enqueue must never wait", d)
	}
	// At most the queue and the one call in flight were accepted.
	if accepted > 5 || w.Stats().Dropped.Load() != int64(1000-accepted) {
		t.Fatalf("accepted %d, dropped %d", accepted, w.Stats().Dropped.Load())
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := time.Now()
	ts := "1700000000"
	sig := push.Sign(secret, ts, []byte("body"))
	at := time.Unix(1700000000, 0)
	if err := push.Verify(secret, ts, sig, []byte("body"), at, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"other body":   push.Verify(secret, ts, sig, []byte("bodx"), at, time.Minute),
		"other secret": push.Verify([]byte("another secret of 16+"), ts, sig, []byte("body"), at, time.Minute),
		"old":          push.Verify(secret, ts, sig, []byte("body"), now, time.Minute),
		"bad ts":       push.Verify(secret, "x", sig, []byte("body"), at, time.Minute),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
