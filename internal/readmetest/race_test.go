//go:build race

package readmetest

// raceEnabled: this test binary is race-built (go test -race), so the
// binaries it builds are too (see build).
const raceEnabled = true
