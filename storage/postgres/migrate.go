package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage/migrations"
)

// The schema lives in embedded, numbered files (0001_init.sql,
// 0002_….sql), applied in order at start-up, each in its own transaction
// together with its row in schema_migrations.
//
// Why not golang-migrate or goose: both serialise concurrent migrators
// with PostgreSQL advisory locks, which CockroachDB does not have
// (golang-migrate has a separate CockroachDB driver with its own lock
// table; goose has none), and neither runs its transactions through our
// retry loop. Here nothing needs a lock: each migration runs in a
// SERIALIZABLE transaction through inTx that checks its version row, runs
// the DDL (CREATE … IF NOT EXISTS) and inserts the row with ON CONFLICT DO
// NOTHING. Two nodes starting at once conflict, one retries and finds the
// version applied (see applyMigration). That is a few dozen lines, the same
// on both servers, and no dependency.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// loadMigrations returns the embedded migrations ordered by version.
func loadMigrations() ([]migrations.Migration, error) {
	return migrations.Load(migrationFiles, "migrations")
}

// migrate brings the database up to the newest embedded version. Running
// it again, or on several nodes at once, is harmless.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if err := s.createMigrationsTable(ctx); err != nil {
		return err
	}
	// A database migrated by a newer binary may have a schema this one
	// misreads: refuse it rather than corrupt it.
	var newest int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if known := ms[len(ms)-1].Version; newest > known {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", newest, known)
	}
	for _, m := range ms {
		if newest >= m.Version {
			continue // applied by an earlier start
		}
		if err := s.inTx(ctx, func(tx pgx.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	return nil
}

// createMigrationsTable creates schema_migrations if it is missing. Its
// primary key is ever-increasing, but it has a row per schema version, not
// a hot range.
func (s *Store) createMigrationsTable(ctx context.Context) error {
	const ddl = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		name       TEXT   NOT NULL,
		applied_at BIGINT NOT NULL
	)`
	var err error
	for range 3 {
		_, err = s.pool.Exec(ctx, ddl)
		// Two PostgreSQL sessions running CREATE TABLE IF NOT EXISTS at once
		// can both miss the table and the later one then fails on a catalog
		// row the other inserted (23505, 42P07 duplicate_table, 42710
		// duplicate_object for its row type); CockroachDB may ask for a
		// retry. Each time the table exists by the next try.
		switch sqlState(err) {
		case codeUniqueViolation, "42P07", "42710", codeSerializationFailure:
			continue
		}
		break
	}
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

// applyMigration runs one migration unless its version row exists.
//
// It reads before it writes: CockroachDB refuses a schema change after a
// write in the same transaction (in many versions), so the version row is
// inserted last. Two nodes may then both find the version missing and run
// the DDL at once; the later one either fails on an object the other has
// just created, or, on inserting the version row, with 40001 (the row is
// committed but not in its snapshot). Both are retried, and the retry
// finds the version applied. Migrations use IF NOT EXISTS, so a DDL that
// runs after the other node committed its tables is a no-op.
func applyMigration(ctx context.Context, tx pgx.Tx, m migrations.Migration) error {
	var applied bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&applied)
	if err != nil || applied {
		return err
	}
	// No arguments: pgx sends the file with the simple protocol, which
	// accepts several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		switch sqlState(err) {
		case codeUniqueViolation, // PostgreSQL: a catalog row the other node inserted
			"42P07", // duplicate_table
			"42710", // duplicate_object
			"42701": // duplicate_column
			return retryable{err}
		}
		return err
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)
		ON CONFLICT (version) DO NOTHING`,
		m.Version, m.Name, time.Now().UnixMilli())
	return err
}
