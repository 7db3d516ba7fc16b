package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/client"
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
