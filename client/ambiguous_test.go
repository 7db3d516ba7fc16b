package client_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/starling-im/starling/client"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// ambiguousStore is a real store whose first commits succeed but report an
// unknown outcome, as a database whose connection drops during COMMIT does.
// (storage/postgres tests the real thing with a proxy that cuts the
// connection; here the point is what the client does about it.)
type ambiguousStore struct {
	storage.Store
	failures atomic.Int32
}

func (s *ambiguousStore) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	res, err := s.Store.AppendMessages(ctx, msgs)
	if err == nil && s.failures.Add(-1) >= 0 {
		return nil, fmt.Errorf("test: %w", storage.ErrAmbiguousCommit)
	}
	return res, err
}

func TestSendRetriesAnAmbiguousCommit(t *testing.T) {
	var flaky *ambiguousStore
	open0 := servertest.SQLite(t)
	srv := servertest.Start(t, servertest.WithStore(func(t testing.TB) storage.Store {
		flaky = &ambiguousStore{Store: open0(t)}
		flaky.failures.Store(2)
		return flaky
	}))
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))

	ack, err := alice.SendText(t.Context(), client.ToUser(bobID), "stored once")
	if err != nil {
		t.Fatalf("send: %v (the client should have resent after Unavailable)", err)
	}
	// The first attempt was stored; the resends were absorbed by dedup.
	if !ack.GetDuplicate() || ack.GetSeq() != 1 {
		t.Fatalf("ack %v, want the first copy (seq 1, duplicate)", ack)
	}
	if latest, _ := srv.Store().LatestSeq(t.Context(), ack.GetConversationId()); latest != 1 {
		t.Fatalf("latest seq %d, want exactly one stored message", latest)
	}
}
