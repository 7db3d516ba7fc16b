package sqlite

import (
	"context"
	"fmt"
)

// Ping checks that the database file can be read. For readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.reads.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", mapErr(err))
	}
	return nil
}
