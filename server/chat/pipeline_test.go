package chat

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

func TestFillLingersOnlyUnderLoad(t *testing.T) {
	p := &pipeline{maxBatch: 2, linger: time.Minute}
	in := make(chan *pending, 4)

	// After a lone send, nothing waits: the batch is what is queued now.
	if b := p.fill([]*pending{{}}, in, 1); len(b) != 1 {
		t.Fatalf("low load: batch of %d, want 1", len(b))
	}
	in <- &pending{}
	if b := p.fill([]*pending{{}}, in, 1); len(b) != 2 {
		t.Fatalf("low load with one queued: batch of %d, want 2", len(b))
	}

	// Under load (the last batch held several), a send arriving during the
	// linger joins the batch; a full batch returns without waiting out the
	// linger (a minute here, so reaching the end proves it).
	go func() {
		time.Sleep(10 * time.Millisecond)
		in <- &pending{}
	}()
	if b := p.fill([]*pending{{}}, in, 5); len(b) != 2 {
		t.Fatalf("under load: batch of %d, want 2", len(b))
	}

	// No linger configured: never waits.
	p.linger = 0
	if b := p.fill([]*pending{{}}, in, 5); len(b) != 1 {
		t.Fatalf("no linger: batch of %d, want 1", len(b))
	}
}

// Once the pipeline has stopped, a send is refused with ShuttingDown (the
// client resends elsewhere) rather than queued where nobody would commit or
// answer it.
func TestSubmitAfterStopIsRefused(t *testing.T) {
	p := &pipeline{shards: []chan *pending{make(chan *pending, 4)}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
	}()
	cancel()
	<-done
	err := p.submit(t.Context(), &pending{msg: storage.NewMessage{ConversationID: "c2c:a:b"}})
	if !errors.Is(err, apierr.ShuttingDown) {
		t.Fatalf("submit after stop: %v, want ShuttingDown", err)
	}
}

// fill stops at a closed queue instead of spinning on it.
func TestFillStopsAtClosedQueue(t *testing.T) {
	p := &pipeline{maxBatch: 10, linger: time.Minute}
	in := make(chan *pending, 4)
	in <- &pending{}
	close(in)
	if b := p.fill([]*pending{{}}, in, 5); len(b) != 2 {
		t.Fatalf("batch of %d, want 2", len(b))
	}
}
