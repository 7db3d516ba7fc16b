// Package postgres is Starling's production storage backend: CockroachDB or
// PostgreSQL, spoken to over the PostgreSQL wire protocol with pgx.
//
// The same SQL runs on both servers (see docs/storage.md for what that rules
// out). The one place where they are treated differently is the
// transaction retry loop, in tx.go: CockroachDB's savepoint-based retry
// protocol ignores the outcome of the final COMMIT, which PostgreSQL needs
// checked.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/starling-im/starling/storage"
)

// defaultConnectTimeout bounds each connection attempt when the URL does not
// set connect_timeout: an unreachable database must fail start-up in
// seconds, not hang on the kernel's TCP timeout.
const defaultConnectTimeout = 5 * time.Second

// Store is a storage.Store on CockroachDB or PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// cockroach is true when the server is CockroachDB; it picks the
	// transaction retry protocol (see inTx).
	cockroach bool
	// serverVersion is what `select version()` said, for logs and tests.
	serverVersion string
	// transactions counts inTx calls; attempts - transactions are retries.
	transactions atomic.Int64
	// attempts counts transaction attempts, first tries and retries alike,
	// so tests can prove a retry happened.
	attempts atomic.Int64
	// commitConflicts counts COMMITs that PostgreSQL refused with 40001:
	// the failures crdbpgx.ExecuteTx would have lost.
	commitConflicts atomic.Int64
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database at url (postgres:// or postgresql://, any
// parameter pgx understands, e.g. sslmode, sslrootcert, pool_max_conns,
// connect_timeout), creates the database if it does not exist and the
// credentials allow it, and brings its schema up to date.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	pool, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// init detects the server and migrates the schema.
func (s *Store) init(ctx context.Context) error {
	if err := s.pool.QueryRow(ctx, `SELECT version()`).Scan(&s.serverVersion); err != nil {
		return fmt.Errorf("postgres: detect server version: %w", err)
	}
	s.cockroach = isCockroach(s.serverVersion)
	if s.cockroach {
		// CockroachDB accepts connections to a database that does not exist
		// (the name is only a session default), so create it here.
		if db := s.pool.Config().ConnConfig.Database; db != "" {
			if _, err := s.pool.Exec(ctx, `CREATE DATABASE IF NOT EXISTS `+pgx.Identifier{db}.Sanitize()); err != nil {
				return fmt.Errorf("postgres: create database %q: %w", db, err)
			}
		}
	}
	if err := s.migrate(ctx); err != nil {
		return fmt.Errorf("postgres: migrate schema: %w", err)
	}
	return nil
}

// isCockroach tells CockroachDB from PostgreSQL by its version string, e.g.
// "CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu, …)" versus
// "PostgreSQL 15.4 on x86_64-pc-linux-gnu, …".
func isCockroach(version string) bool {
	return strings.Contains(version, "CockroachDB")
}

// parseURL checks the URL and fills in Starling's defaults.
func parseURL(url string) (*pgxpool.Config, error) {
	// pgx also takes "key=value" strings; insisting on a URL scheme turns a
	// mistyped flag into a clear message instead of a puzzling parse error.
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return nil, errors.New("postgres: bad database URL: it must start with postgres:// or postgresql://")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL with the password redacted.
		return nil, fmt.Errorf("postgres: bad database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "starlingd"
	}
	return cfg, nil
}

// connect opens the pool and makes sure the database answers, creating it
// on PostgreSQL when it does not exist yet.
func connect(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	err = pool.Ping(ctx)
	if sqlState(err) == "3D000" { // invalid_catalog_name: no such database
		err = createDatabase(ctx, cfg.ConnConfig)
		if err == nil {
			err = pool.Ping(ctx)
		}
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: database unreachable at %s: %w", where(cfg.ConnConfig), mapError(err))
	}
	return pool, nil
}

// createDatabase creates cfg's database through the server's maintenance
// database "postgres", so that pointing starlingd at a fresh server works.
func createDatabase(ctx context.Context, cfg *pgx.ConnConfig) error {
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("database %q does not exist, and connecting to create it failed: %w", cfg.Database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{cfg.Database}.Sanitize())
	// Another node starting at the same moment may win the race: PostgreSQL
	// says duplicate_database, or, when both were inside CREATE DATABASE
	// at once, a unique violation on its catalog.
	if err != nil && sqlState(err) != "42P04" && sqlState(err) != "23505" {
		return fmt.Errorf("database %q does not exist and could not be created: %w", cfg.Database, err)
	}
	return nil
}

// where names the server and database for error messages, without the
// credentials.
func where(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if !strings.HasPrefix(host, "/") { // not a unix socket directory
		host = net.JoinHostPort(host, fmt.Sprint(cfg.Port))
	}
	return host + "/" + cfg.Database
}

// sqlState returns err's SQLSTATE code, or "" if the server did not send one.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Close closes every connection. Calls after Close fail.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
