package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// renewFails fails node lease renewals while fail is set.
type renewFails struct {
	storage.Store
	fail atomic.Bool
}

func (r *renewFails) RenewNodeLease(ctx context.Context, l storage.Lease, ttl time.Duration) (storage.Lease, error) {
	if r.fail.Load() {
		return storage.Lease{}, storage.ErrUnavailable
	}
	return r.Store.RenewNodeLease(ctx, l, ttl)
}

// A node that cannot renew its number's lease refuses sends with
// UNAVAILABLE once it lapses, rather than make a msg_id that the number's
// next holder could make too; a renewal that gets through makes it send
// again.
func TestSendsStopWhenTheNodeLeaseLapses(t *testing.T) {
	const ttl = 300 * time.Millisecond
	st := &renewFails{}
	open := servertest.SQLite(t)
	srv := servertest.Start(t,
		servertest.WithStore(func(t testing.TB) storage.Store { st.Store = open(t); return st }),
		servertest.WithConfig(func(c *server.Config) { c.NodeLeaseTTL = ttl }))
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "m1", "one"))
	leases, err := srv.Store().ListNodeLeases(t.Context())
	if err != nil || len(leases) != 1 || !leases[0].Live() || leases[0].Number != 0 {
		t.Fatalf("leases of a serving node: %+v, %v", leases, err)
	}

	st.fail.Store(true)
	time.Sleep(ttl + 100*time.Millisecond)
	if e := expectError(t, alice, alice.Text(t, bobU.ID, "", "m2", "two"), codes.Unavailable); e.GetMessage() != apierr.Unavailable.Message {
		t.Fatalf("refused with %q", e.GetMessage())
	}
	st.fail.Store(false)
	// The next renewal comes within a third of the TTL, later on a loaded
	// machine: resend (the same client_msg_id, as a client does after
	// UNAVAILABLE) until it is taken, with a deadline. A refused send
	// stored nothing, so the one taken is new, at seq 2.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ref := alice.Text(t, bobU.ID, "", "m2", "two")
		f := alice.Next(t)
		for f.GetRef() != ref {
			f = alice.Next(t)
		}
		if e := f.GetError(); e != nil {
			if codes.Code(e.GetCode()) != codes.Unavailable || time.Now().After(deadline) {
				t.Fatalf("resend after the renewal refused: %v %s", codes.Code(e.GetCode()), e.GetMessage())
			}
			time.Sleep(ttl / 10)
			continue
		}
		if ack := f.GetSendAck(); ack == nil || ack.GetDuplicate() || ack.GetSeq() != 2 {
			t.Fatalf("resend after the renewal: %v", f)
		}
		return
	}
}
