package postgres

import (
	"context"
	"fmt"

	"github.com/starling-im/starling/storage"
)

// Ping checks that the database answers: one round trip on a pooled
// connection (opening one if none is idle). For readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", mapError(err))
	}
	return nil
}

// TxStats counts write transactions, their attempts and the COMMITs
// refused with 40001, for metrics.
func (s *Store) TxStats() storage.TxStats {
	return storage.TxStats{
		Transactions:    s.transactions.Load(),
		Attempts:        s.attempts.Load(),
		CommitConflicts: s.commitConflicts.Load(),
	}
}
