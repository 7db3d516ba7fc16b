// Package push tells a backend about what happened while a user was
// away: offline notifications (a message to a user with no device online)
// and event webhooks, as signed HTTP POSTs that never slow the send path.
package push

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Headers of every webhook call. The signature is
// "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)); a receiver
// recomputes it, compares in constant time, and refuses a timestamp far
// from its clock (replays). See README, "From your backend".
const (
	HeaderTimestamp = "X-Starling-Timestamp"
	HeaderSignature = "X-Starling-Signature"
	HeaderEvent     = "X-Starling-Event"
)

// Sign returns the signature header value of body sent at timestamp
// (unix seconds, as in HeaderTimestamp).
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a webhook call's signature and that its timestamp is
// within maxAge of now: what a receiver does (Go receivers may call it).
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, maxAge time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("push: bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxAge || d < -maxAge {
		return errors.New("push: timestamp too far from now")
	}
	if !hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature)) {
		return errors.New("push: bad signature")
	}
	return nil
}

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	URL    string
	Secret []byte
	// Timeout bounds one attempt (0: 5 s).
	Timeout time.Duration
	// Attempts is how many times a call is tried (0: 5); waits between
	// attempts double from Backoff (0: 500 ms), with jitter.
	Attempts int
	Backoff  time.Duration
	// QueueSize bounds the calls waiting (0: 10,000); past it a call is
	// dropped and counted, so a slow receiver never slows a send.
	QueueSize int
	// Workers is how many calls are in flight at once (0: 4).
	Workers int
	Client  *http.Client // nil: a client with Timeout
}

// Webhook posts signed JSON bodies to one URL from a bounded queue.
type Webhook struct {
	cfg   WebhookConfig
	log   *slog.Logger
	queue chan call
	stats WebhookStats
}

type call struct {
	event string
	body  []byte
}

// WebhookStats counts what became of the calls since start.
type WebhookStats struct {
	Sent, Failed, Dropped, Retried atomic.Int64
}

// NewWebhook returns a webhook; Run sends its calls.
func NewWebhook(cfg WebhookConfig, log *slog.Logger) (*Webhook, error) {
	if cfg.URL == "" {
		return nil, errors.New("push: webhook URL is empty")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("push: webhook secret must be at least 16 bytes")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	return &Webhook{cfg: cfg, log: log, queue: make(chan call, cfg.QueueSize)}, nil
}

// Stats returns the webhook's counters.
func (w *Webhook) Stats() *WebhookStats { return &w.stats }

// Enqueue queues a call without ever waiting: false (and counted as
// dropped) when the queue is full.
func (w *Webhook) Enqueue(event string, body []byte) bool {
	select {
	case w.queue <- call{event: event, body: body}:
		return true
	default:
		if n := w.stats.Dropped.Add(1); n&(n-1) == 0 { // log 1, 2, 4, 8, … drops
			w.log.Warn("webhook: queue full; call dropped", "event", event, "dropped", n)
		}
		return false
	}
}

// Run sends queued calls until ctx ends; calls still queued then are
// dropped (counted).
func (w *Webhook) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range w.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-w.queue:
					w.deliver(ctx, c)
				}
			}
		}()
	}
	wg.Wait()
	w.stats.Dropped.Add(int64(len(w.queue)))
}

// deliver tries a call until it is accepted (2xx), refused for good
// (4xx other than 408 and 429), or out of attempts.
func (w *Webhook) deliver(ctx context.Context, c call) {
	wait := w.cfg.Backoff
	var err error
	for attempt := 1; attempt <= w.cfg.Attempts; attempt++ {
		if attempt > 1 {
			w.stats.Retried.Add(1)
			// Full jitter over [wait/2, wait): receivers coming back are
			// not hit by every node at once.
			d := wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
			select {
			case <-ctx.Done():
				w.stats.Failed.Add(1)
				return
			case <-time.After(d):
			}
			wait *= 2
		}
		var retry bool
		retry, err = w.post(ctx, c)
		if err == nil {
			w.stats.Sent.Add(1)
			return
		}
		if !retry {
			break
		}
	}
	w.stats.Failed.Add(1)
	w.log.Warn("webhook: call failed", "event", c.event, "url", w.cfg.URL, "err", err)
}

func (w *Webhook) post(ctx context.Context, c call) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(c.body))
	if err != nil {
		return false, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, c.body))
	req.Header.Set(HeaderEvent, c.event)
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	}
	return false, fmt.Errorf("status %d (not retried)", resp.StatusCode)
}
