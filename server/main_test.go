package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// server goroutine must have an owner that stops it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
