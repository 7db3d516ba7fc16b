package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestChaosConfig: the chaos flags parse, and every combination that
// cannot run is refused with a message naming the flag.
func TestChaosConfig(t *testing.T) {
	c, err := parseConfig([]string{"--scenario", "chaos", "--nodes", "3", "--db", "postgres://p@127.0.0.1:5432/x",
		"--redis", "redis://127.0.0.1:6379/0", "--faults", "kill, term,pause,db,redis,net,slow", "--duration", "30m", "--history", "h.jsonl"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Chaos.Faults, chaosFaults) || c.Chaos.Nodes != 3 || c.Duration != 30*time.Minute || c.Chaos.History != "h.jsonl" {
		t.Errorf("parsed %+v", c.Chaos)
	}
	if _, err := parseConfig([]string{"--scenario", "chaos"}, io.Discard); err != nil {
		t.Errorf("the defaults (one node, kill and term) are refused: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--faults", "kill,meteor"}, `unknown fault "meteor"`},
		{[]string{"--nodes", "3"}, "--nodes > 1 needs --db"},
		{[]string{"--nodes", "3", "--db", "postgres://x"}, "--nodes > 1 needs --redis"},
		{[]string{"--nodes", "2", "--db", "mysql://x", "--redis", "redis://127.0.0.1:6379"}, "needs --db postgres://"},
		{[]string{"--db", "postgres://x"}, "--db needs --nodes > 1"},
		{[]string{"--faults", "db"}, "--faults db needs --nodes > 1"},
		{[]string{"--faults", "redis"}, "--faults redis needs --nodes > 1"},
		{[]string{"--nodes", "0"}, "--nodes must be 1-16"},
		{[]string{"--users", "2"}, "--users must be 4-1000"},
		{[]string{"--duration", "25h"}, "(0, 24h]"},
		{[]string{"--pause", "0s"}, "--pause"},
	} {
		_, err := parseConfig(append([]string{"--scenario", "chaos"}, tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to say %q", tc.args, err, tc.want)
		}
	}
	// Other scenarios keep their 10-minute ceiling.
	if _, err := parseConfig([]string{"--scenario", "c2c", "--duration", "30m"}, io.Discard); err == nil {
		t.Error("c2c accepted --duration 30m")
	}
}

// TestCheckHistoryFile: --check-history judges a saved history: 0 when it
// holds, 1 with the violation printed when not, 2 when it cannot be read.
func TestCheckHistoryFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, evs []event) string {
		var b bytes.Buffer
		h := newHistory(&b)
		for _, e := range evs {
			h.add(e)
		}
		if err := h.flush(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.jsonl", goodHistory())
	evs := goodHistory()
	bad := write("bad.jsonl", remove(evs, find(t, evs, evDeliver, "b1", "g", 3)))
	torn := filepath.Join(dir, "torn.jsonl")
	if err := os.WriteFile(torn, []byte("{\"kind\":"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		code int
		out  string
	}{
		{good, exitOK, "verdict: OK"},
		{bad, exitCheckFailed, `not-delivered: device="b1"`},
		{torn, exitError, ""},
		{filepath.Join(dir, "missing.jsonl"), exitError, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := realMain(context.Background(), []string{"--scenario", "chaos", "--check-history", tc.path}, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("%s: exit %d (want %d), stdout:\n%s\nstderr:\n%s", filepath.Base(tc.path), code, tc.code, stdout.String(), stderr.String())
		}
	}
}
