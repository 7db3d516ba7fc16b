package readstate_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/readstate"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/sqlite"
)

// signals records what the tracker asks to send.
type signals struct {
	mu  sync.Mutex
	got []bus.Signal
}

func (s *signals) Signal(_ context.Context, users []string, except bus.DeviceKey, f *starlingv1.StreamResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, bus.Signal{Frame: f, Users: users, Except: except})
}

func (s *signals) take() []bus.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

func open(t *testing.T) *sqlite.Store {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, id := range []string{"a", "b"} {
		if err := st.CreateUser(t.Context(), storage.User{ID: id, Username: "u" + id, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// Many moves make one write and one receipt per (conversation, user),
// with the newest positions; the reading stream is left out only when it
// alone moved the cursor.
func TestFlushCoalesces(t *testing.T) {
	st := open(t)
	sig := &signals{}
	tr := readstate.New(st, sig, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ab := storage.C2CConversationID("a", "b")
	phone := bus.DeviceKey{UserID: "b", DeviceID: "phone", Session: 1}
	for seq := int64(1); seq <= 50; seq++ {
		tr.Delivered("b", ab, seq)
		tr.Read("b", ab, seq, phone)
	}
	tr.Delivered("b", "grp:g", 9) // group delivery is not tracked
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := sig.take()
	if len(got) != 1 {
		t.Fatalf("%d signals, want 1: %v", len(got), got)
	}
	r := got[0].Frame.GetReceipt()
	if r.GetReadSeq() != 50 || r.GetDeliveredSeq() != 50 || r.GetUserId() != "b" || got[0].Except != phone || len(got[0].Users) != 2 {
		t.Fatalf("signal %+v (receipt %v)", got[0], r)
	}
	if c, err := st.ReadCursorOf(t.Context(), "b", ab); err != nil || c.ReadSeq != 50 {
		t.Fatalf("stored cursor %+v %v", c, err)
	}
	// Two streams moved it: nobody is left out.
	tr.Read("b", ab, 51, phone)
	tr.Read("b", ab, 52, bus.DeviceKey{UserID: "b", DeviceID: "tablet", Session: 2})
	// A delivered-only move goes to the other user alone.
	tr.Delivered("a", ab, 3)
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, s := range sig.take() {
		switch r := s.Frame.GetReceipt(); r.GetUserId() {
		case "b":
			if !s.Except.IsZero() || r.GetReadSeq() != 52 {
				t.Fatalf("b's receipt %+v", s)
			}
		case "a":
			if len(s.Users) != 1 || s.Users[0] != "b" || r.GetReadSeq() != 0 {
				t.Fatalf("a's delivered receipt %+v", s)
			}
		}
	}
	// Nothing pending: nothing written, nothing sent.
	if err := tr.Flush(t.Context()); err != nil || len(sig.take()) != 0 {
		t.Fatalf("an empty flush: %v", err)
	}
}

// A failed write sends no receipt and keeps the moves for the next flush.
func TestFailedFlushKeepsMoves(t *testing.T) {
	st := open(t)
	sig := &signals{}
	tr := readstate.New(st, sig, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ab := storage.C2CConversationID("a", "b")
	tr.Read("a", ab, 4, bus.DeviceKey{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tr.Flush(ctx); err == nil {
		t.Fatal("a flush with a dead context succeeded")
	}
	if n := len(sig.take()); n != 0 {
		t.Fatalf("%d receipts for an unwritten move", n)
	}
	if err := tr.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := sig.take(); len(got) != 1 || got[0].Frame.GetReceipt().GetReadSeq() != 4 {
		t.Fatalf("after the retry: %v", got)
	}
}
