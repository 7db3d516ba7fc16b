package chat

import (
	"testing"
	"time"
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
