package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Hooks for the tests in package postgres_test.

// Attempts returns how many transaction attempts s has made.
func Attempts(s *Store) int64 { return s.attempts.Load() }

// CommitConflicts returns how many COMMITs failed with 40001 on s.
func CommitConflicts(s *Store) int64 { return s.commitConflicts.Load() }

// InTx runs fn through s's transaction runner.
func InTx(ctx context.Context, s *Store, fn func(pgx.Tx) error) error { return s.inTx(ctx, fn) }

// Pool returns s's connection pool.
func Pool(s *Store) *pgxpool.Pool { return s.pool }

// IsCockroach tells whether s detected CockroachDB, and what the server said.
func IsCockroach(s *Store) (bool, string) { return s.cockroach, s.serverVersion }

// ForceCockroach makes s use the CockroachDB retry protocol whatever the
// server, to show what it does on PostgreSQL.
func ForceCockroach(s *Store, on bool) { s.cockroach = on }

// DetectCockroach is isCockroach.
var DetectCockroach = isCockroach
