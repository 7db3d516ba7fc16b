// Package pgtest gives tests a fresh PostgreSQL (or CockroachDB) database.
//
// The server is named by STARLING_TEST_POSTGRES_URL, by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. When it
// cannot be reached the test is skipped, unless
// STARLING_TEST_REQUIRE_SERVICES=1 (as in CI), where it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres"
)

// DefaultURL is the server tests use when STARLING_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the URL of the test server.
func ServerURL() string {
	if u := os.Getenv("STARLING_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewDatabase creates a fresh, uniquely named database on the test server,
// drops it (with any connection still open) when the test ends, and
// returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := ServerURL()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: STARLING_TEST_POSTGRES_URL must be a postgres:// URL, got %q", server)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(server)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", u.Redacted(), err)
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 3*time.Second {
		cfg.ConnectTimeout = 3 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		msg := "PostgreSQL not reachable at " + u.Redacted() + " (" + err.Error() +
			"); set STARLING_TEST_POSTGRES_URL or start it"
		if os.Getenv("STARLING_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	defer conn.Close(ctx)

	name := "starling_test_" + randomHex(8)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("pgtest: server version: %v", err)
	}
	drop := "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"
	if strings.Contains(version, "CockroachDB") {
		drop = "DROP DATABASE IF EXISTS " + name + " CASCADE"
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, drop); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})

	u.Path = "/" + name
	return u.String()
}

// Factory creates a fresh database and returns a function that opens a
// Store on it, closed when that function's test ends. It has the shape of
// storagetest.Factory: open may be called several times (a restart).
func Factory(t testing.TB) func(t testing.TB) storage.Store {
	dbURL := NewDatabase(t)
	return func(t testing.TB) storage.Store {
		t.Helper()
		s := Open(t, dbURL)
		return s
	}
}

// Open opens a postgres.Store on dbURL and closes it when the test ends.
func Open(t testing.TB, dbURL string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
