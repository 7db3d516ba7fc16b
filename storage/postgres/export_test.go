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

// MapError is mapError, the one place database errors become sentinels.
var MapError = mapError

// Migrations returns how many migrations the binary embeds.
func Migrations() (int, error) {
	ms, err := loadMigrations()
	return len(ms), err
}

// MigrateTo migrates the database at dbURL up to version and no further,
// as an older binary would have left it.
func MigrateTo(ctx context.Context, dbURL string, version int64) error {
	cfg, err := parseURL(dbURL)
	if err != nil {
		return err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	s := &Store{pool: pool}
	if err := pool.QueryRow(ctx, `SELECT version()`).Scan(&s.serverVersion); err != nil {
		return err
	}
	s.cockroach = isCockroach(s.serverVersion)
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if err := s.createMigrationsTable(ctx); err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version > version {
			break
		}
		if err := s.inTx(ctx, func(tx pgx.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return err
		}
	}
	return nil
}
