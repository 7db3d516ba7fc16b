package client_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/internal/testproxy"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// A database outage in the middle of a conversation costs the user no
// failed send: the server answers Unavailable (never Internal) while the
// database is unreachable, the client resends with the same client_msg_id
// until it is back, and every message is stored and delivered once, in
// order.
func TestDatabaseOutageIsRetried(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	proxy, viaProxy := testproxy.NewProxy(t, dbURL)
	srv := servertest.Start(t, servertest.WithStore(func(t testing.TB) storage.Store { return pgtest.Open(t, viaProxy) }))
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	bob := open(t, login(t, srv, "bob", "phone"))

	const total, cutAt = 30, 10
	restored := make(chan struct{})
	var conv string
	for i := range total {
		if i == cutAt {
			proxy.Cut()
			go func() {
				defer close(restored)
				time.Sleep(time.Second) // any outage shorter than Send's deadline
				proxy.Restore()
			}()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		ack, err := alice.SendText(ctx, client.ToUser(bobID), fmt.Sprint(i))
		cancel()
		if err != nil {
			t.Fatalf("send %d during the outage failed for the user: %v", i, err)
		}
		if ack.GetSeq() != int64(i+1) {
			t.Fatalf("send %d got seq %d", i, ack.GetSeq())
		}
		conv = ack.GetConversationId()
	}
	<-restored
	got := receive(t, bob, total)
	for i, m := range got {
		if m.GetSeq() != int64(i+1) || m.GetContent().GetText() != fmt.Sprint(i) {
			t.Fatalf("bob's message %d is seq %d %q", i, m.GetSeq(), m.GetContent().GetText())
		}
	}
	direct := pgtest.Open(t, dbURL)
	if latest, err := direct.LatestSeq(t.Context(), conv); err != nil || latest != total {
		t.Fatalf("stored %d messages (%v), want exactly %d", latest, err, total)
	}
}

// A Sync refused Unavailable (the database did not answer the read) leaves
// the conversation in pull mode on the server, which sends no further
// Notify for it: the client must Sync again by itself. Three refusals in a
// row are more than the Notify and the list after connecting can each
// retry once, so only the client's own retry gets the backlog through.
func TestSyncRetriedAfterUnavailable(t *testing.T) {
	faults := &servertest.Faults{}
	srv := servertest.Start(t, servertest.WithFaults(servertest.SQLite(t), faults))
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	conv := send(t, alice, client.ToUser(bobID), "while bob was away").GetConversationId()
	send(t, alice, client.ToUser(bobID), "and more")

	var refused atomic.Int32
	faults.Set(servertest.Hooks{ListMessages: func(id string) error {
		if id == conv && refused.Add(1) <= 3 {
			return fmt.Errorf("test: %w", storage.ErrUnavailable)
		}
		return nil
	}})
	tp := &tap{}
	var errs counter
	tp.setOnRecv(func(f *starlingv1.StreamResponse) (int, error) {
		if f.GetError().GetCode() == uint32(codes.Unavailable) {
			errs.inc()
		}
		return 1, nil
	})
	bob := open(t, login(t, srv, "bob", "phone", client.WithDialOptions(tp.dialOption())))
	wantTexts(t, receive(t, bob, 2), "while bob was away", "and more")
	if n := errs.n.Load(); n != 3 {
		t.Fatalf("%d Syncs refused Unavailable, want 3", n)
	}
	if syncs := tp.sentFrames(isSync); len(syncs) < 4 {
		t.Fatalf("%d Syncs sent, want at least 4 (3 refused, then the one answered)", len(syncs))
	}
	// Out of pull mode: the next message is pushed.
	send(t, alice, client.ToUser(bobID), "live")
	wantTexts(t, receive(t, bob, 1), "live")
}
