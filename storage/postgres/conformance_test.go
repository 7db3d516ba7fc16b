package postgres_test

import (
	"testing"

	"github.com/starling-im/starling/storage/postgres/pgtest"
	"github.com/starling-im/starling/storage/storagetest"
)

// TestConformance runs the suite every backend must pass.
func TestConformance(t *testing.T) {
	storagetest.Run(t, pgtest.Factory)
}
