package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
	"github.com/starling-im/starling/storage/sqlite"
)

func noEnv(string) string { return "" }

// One node per database until cluster mode: a second starlingd on a
// database that a live node holds is refused at once with a clear
// message, and starts once the first has stopped (its lease released).
func TestRunRefusesASecondNodeOnOneDatabase(t *testing.T) {
	for name, db := range map[string]func(t *testing.T) []string{
		"sqlite": func(t *testing.T) []string { return []string{"--data-dir", t.TempDir()} },
		"postgres": func(t *testing.T) []string {
			return []string{"--db", pgtest.NewDatabase(t), "--token-secret", strings.Repeat("s", 32)}
		},
	} {
		t.Run(name, func(t *testing.T) {
			args := db(t)
			cfg := func(node string) config {
				c, err := parseConfig(append([]string{"--listen", freeAddr(t), "--node-id", node, "--bcrypt-cost", "4", "--log-level", "error"}, args...), noEnv)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			stop := start(t, cfg("node-a"))
			begin := time.Now()
			err := run(t.Context(), cfg("node-b"), io.Discard)
			if err == nil {
				t.Fatal("a second node on the same database started")
			}
			msg := err.Error()
			for _, want := range []string{"another starlingd (node node-a, number 0) holds this database until ", "one node per database until cluster mode", "stop it or wait "} {
				if !strings.Contains(msg, want) {
					t.Fatalf("refusal %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") || time.Since(begin) > 5*time.Second {
				t.Fatalf("refusal took %v: %q", time.Since(begin), msg)
			}
			if err := stop(); err != nil {
				t.Fatalf("first node: %v", err)
			}
			// Released on shutdown: the next node starts at once.
			if err := start(t, cfg("node-b"))(); err != nil {
				t.Fatalf("second node after the first stopped: %v", err)
			}
		})
	}
}

// A lease left by this node's own earlier run (killed, so never released)
// is waited out, not refused: the restart starts once it lapsed.
func TestRunWaitsOutItsOwnKilledRun(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "starling.db"))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 1500 * time.Millisecond
	if _, err := st.AcquireNodeLease(t.Context(), storage.LeaseRequest{Holder: "node-a/killed", Node: "node-a", TTL: ttl, Grace: storage.NodeLeaseGrace}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--node-id", "node-a", "--data-dir", dir, "--bcrypt-cost", "4", "--log-level", "error"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	stop := start(t, c)
	if waited := time.Since(begin); waited < ttl/2 {
		t.Fatalf("started after %v, before the killed run's lease (%v) lapsed", waited, ttl)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
