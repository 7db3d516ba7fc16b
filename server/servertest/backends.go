package servertest

import (
	"testing"

	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// Backend is a database the end-to-end suites run on.
type Backend struct {
	Name string
	// New makes a fresh database for one test (it may skip the test, see
	// pgtest.NewDatabase) and returns its Opener.
	New func(t testing.TB) Opener
}

// Backends lists every backend: the embedded SQLite default, and
// PostgreSQL (the CockroachDB wire), which skips when no server is
// reachable unless STARLING_TEST_REQUIRE_SERVICES=1.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", New: SQLite},
		{Name: "postgres", New: func(t testing.TB) Opener { return pgtest.Factory(t) }},
	}
}
