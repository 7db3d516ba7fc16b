package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseTargets(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:7070", []string{"127.0.0.1:7070"}},
		{"127.0.0.1:1,127.0.0.1:2", []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{" 127.0.0.1:1 , localhost:2 ", []string{"127.0.0.1:1", "localhost:2"}},
		{"a:1,a:1", []string{"a:1", "a:1"}}, // one node in two slots
	} {
		got, err := parseTargets(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseTargets(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	checkRefused(t, "parseTargets", parseTargets, "", ",", "a:1,", "a:1,,b:2", " , a:1")
}

// checkRefused asserts that parse refuses every input.
func checkRefused[T any](t *testing.T, name string, parse func(string) (T, error), inputs ...string) {
	t.Helper()
	for _, in := range inputs {
		if got, err := parse(in); err == nil {
			t.Errorf("%s(%q) = %v, want an error", name, in, got)
		}
	}
}

// TestRoundRobin: a population spread over n targets puts equally many
// (give or take one) on each, in order.
func TestRoundRobin(t *testing.T) {
	for n := 1; n <= 5; n++ {
		per := make([]int, n)
		for i := range 17 {
			s := roundRobin(i, n)
			if s != i%n {
				t.Fatalf("roundRobin(%d, %d) = %d", i, n, s)
			}
			per[s]++
		}
		if lo, hi := slices.Min(per), slices.Max(per); hi-lo > 1 {
			t.Errorf("n=%d: devices per target %v, want even", n, per)
		}
	}
}

func TestPairTargetsSplit(t *testing.T) {
	for n := 2; n <= 5; n++ {
		senders, receivers := make([]int, n), make([]int, n)
		for i := range 23 {
			s, r := pairTargets(i, n, true)
			if s == r {
				t.Fatalf("n=%d pair %d: sender and receiver both on target %d", n, i, s)
			}
			if s != i%n || r != (i+1)%n {
				t.Fatalf("n=%d pair %d: targets (%d, %d), want (%d, %d)", n, i, s, r, i%n, (i+1)%n)
			}
			senders[s]++
			receivers[r]++
		}
		if slices.Max(senders)-slices.Min(senders) > 1 || slices.Max(receivers)-slices.Min(receivers) > 1 {
			t.Errorf("n=%d: senders per target %v, receivers %v; want even", n, senders, receivers)
		}
	}
	// One target: there is nowhere else to go.
	if s, r := pairTargets(3, 1, true); s != 0 || r != 0 {
		t.Errorf("one target, split: (%d, %d), want (0, 0)", s, r)
	}
}

func TestPairTargetsNoSplit(t *testing.T) {
	for n := 1; n <= 4; n++ {
		for i := range 10 {
			if s, r := pairTargets(i, n, false); s != r || s != i%n {
				t.Fatalf("n=%d pair %d, --split=false: targets (%d, %d), want both %d", n, i, s, r, i%n)
			}
		}
	}
}

// TestClusterFlags: --split is on by default with several targets only,
// and --split=false turns it off; --server-pid takes a list ("0": none).
func TestClusterFlags(t *testing.T) {
	for _, c := range []struct {
		args      []string
		split     bool
		nTargets  int
		serverPID []int
	}{
		{[]string{}, false, 1, nil},
		{[]string{"--target", "127.0.0.1:1,127.0.0.1:2"}, true, 2, nil},
		{[]string{"--target", "127.0.0.1:1,127.0.0.1:2", "--split=false"}, false, 2, nil},
		{[]string{"--target", "127.0.0.1:1", "--split"}, true, 1, nil},
		{[]string{"--server-pid", "0"}, false, 1, nil},
		{[]string{"--server-pid", "12"}, false, 1, []int{12}},
		{[]string{"--server-pid", "12, 13,14"}, false, 1, []int{12, 13, 14}},
	} {
		cfg, err := parseConfig(c.args, io.Discard)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if cfg.Split != c.split || len(cfg.Targets) != c.nTargets || !slices.Equal(cfg.ServerPIDs, c.serverPID) {
			t.Errorf("%q: split %v, targets %q, pids %v; want %v, %d targets, pids %v",
				c.args, cfg.Split, cfg.Targets, cfg.ServerPIDs, c.split, c.nTargets, c.serverPID)
		}
	}
	checkRefused(t, "parsePIDs", parsePIDs, "x", "1,,2", "-3", "1,0", ",")
}

func TestNodeIDs(t *testing.T) {
	got := nodeIDs([]string{"a:1", "b:1", "a:1", "localhost:1", "b:1"})
	if want := []int{0, 1, 0, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("nodeIDs = %v, want %v", got, want)
	}
}

// TestNodeLatency: deliveries are classed by the sender's and the
// receiver's node (the address of their slots), and only classes with
// samples are reported.
func TestNodeLatency(t *testing.T) {
	l := newNodeLatency([]string{"a:1", "b:1", "a:1"})
	for _, c := range []struct {
		from, to int
		class    int
		ok       bool
	}{
		{0, 0, sameNode, true},
		{0, 2, sameNode, true}, // two slots, one address
		{1, 1, sameNode, true},
		{0, 1, crossNode, true},
		{2, 1, crossNode, true},
		{3, 0, 0, false}, // no such slot
		{-1, 0, 0, false},
		{0, 3, 0, false},
	} {
		class, ok := l.class(c.from, c.to)
		if class != c.class || ok != c.ok {
			t.Errorf("class(%d, %d) = %d, %v; want %d, %v", c.from, c.to, class, ok, c.class, c.ok)
		}
	}

	l.record(0, 0, 2, 2*time.Millisecond)
	l.record(1, 2, 0, 4*time.Millisecond)
	if s := l.summary(); len(s) != 1 || s["same_node"].Count != 2 {
		t.Fatalf("only same-node samples: summary %+v", s)
	}
	for i := range 10 {
		l.record(i, 1, 0, time.Duration(10+i)*time.Millisecond)
	}
	l.record(0, 9, 0, time.Second) // not the bench's: ignored
	s := l.summary()
	same, cross := s["same_node"], s["cross_node"]
	if len(s) != 2 || same.Count != 2 || cross.Count != 10 {
		t.Fatalf("summary %+v, want 2 same-node and 10 cross-node samples", s)
	}
	if same.P50 < 1.9 || same.P50 > 2.1 || cross.P50 < 13.9 || cross.P50 > 15.1 || cross.Max > 19.1 {
		t.Errorf("same-node p50 %.2f ms, cross-node p50 %.2f ms max %.2f ms; want about 2, 14-15, 19", same.P50, cross.P50, cross.Max)
	}
}

func TestStamp(t *testing.T) {
	at, node, ok := unstamp(stamp(1234567*time.Microsecond, 7))
	if !ok || at != 1234567*time.Microsecond || node != 7 {
		t.Errorf("unstamp(stamp(1.234567s, 7)) = %v, %d, %v", at, node, ok)
	}
	if _, _, ok := unstamp([]byte("12345678")); ok {
		t.Error("unstamp of 8 bytes: ok")
	}
}

func TestPlacement(t *testing.T) {
	for _, c := range []struct {
		scenario string
		n        int
		split    bool
		want     string
	}{
		{"c2c", 1, false, "one target"},
		{"c2c", 3, true, "c2c pair i: sender on target i mod 3, receiver on target (i+1) mod 3"},
		{"c2c", 2, false, "c2c pair i: sender and receiver on target i mod 2"},
		{"group", 2, true, "device i on target i mod 2 (round-robin)"},
	} {
		if got := placement(c.scenario, c.n, c.split); got != c.want {
			t.Errorf("placement(%s, %d, %v) = %q, want %q", c.scenario, c.n, c.split, got, c.want)
		}
	}
}
