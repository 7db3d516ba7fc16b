package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// TestMain fails the package if any goroutine outlives the tests: every
// goroutine a run starts must stop by the end of the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runBench runs the command as main does against a fresh in-process
// server (servertest's config: SendRate 0, bcrypt MinCost) and returns its
// exit code and JSON report.
func runBench(t *testing.T, args ...string) (int, *Report, string) {
	t.Helper()
	srv := servertest.Start(t)
	return runMain(t, append([]string{"--target", srv.Target(), "--json", "--server-pid", strconv.Itoa(os.Getpid())}, args...)...)
}

// runMain runs the command as main does with args, which must ask for
// --json, and returns its exit code, report and standard error.
func runMain(t *testing.T, args ...string) (int, *Report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), args, &stdout, &stderr)
	if testing.Verbose() {
		t.Logf("stderr:\n%s", stderr.String())
	}
	var rep *Report
	if stdout.Len() > 0 {
		rep = new(Report)
		if err := json.Unmarshal(stdout.Bytes(), rep); err != nil {
			t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
		}
	}
	return code, rep, stderr.String()
}

// checkSane asserts what every sending run must show: exit 0, a clean
// delivery check, and no errors.
func checkSane(t *testing.T, code int, rep *Report, stderr string) {
	t.Helper()
	if code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if rep == nil {
		t.Fatal("no report")
	}
	if !rep.Check.OK || rep.Check.Lost != 0 || rep.Check.Duplicates != 0 || rep.Check.Altered != 0 {
		t.Fatalf("delivery check failed: %+v", rep.Check)
	}
	c := rep.Counts
	if c.SendErrors != 0 || c.FrameErrors != 0 {
		t.Errorf("errors: %d sends refused, %d error frames; notes: %q", c.SendErrors, c.FrameErrors, rep.Notes)
	}
	// /proc counts CPU in 10 ms ticks: a window without traffic (idle) or
	// shorter than a few ticks (a reconnect storm of 20 clients) may see
	// none; only sending runs are sure to.
	sending := rep.Scenario == "c2c" || rep.Scenario == "group"
	if rep.Server == nil || rep.Server.CPUSeconds < 0 || rep.Server.RSSAfter <= 0 ||
		(sending && rep.Server.CPUSeconds == 0) {
		t.Errorf("server stats missing: %+v over %.3fs", rep.Server, rep.Seconds)
	}
}

func TestC2C(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "c2c", "--pairs", "3", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	c := rep.Counts
	if c.Acked == 0 || c.Delivered == 0 || c.Delivered != c.Expected || c.Delivered != c.Acked {
		t.Errorf("acked %d, delivered %d of %d promised; want all delivered, > 0", c.Acked, c.Delivered, c.Expected)
	}
	if rep.AckedPerSec <= 0 || rep.DeliveredPerSec <= 0 {
		t.Errorf("rates %v acked/s, %v delivered/s", rep.AckedPerSec, rep.DeliveredPerSec)
	}
	for _, name := range []string{"send_ack", "send_push"} {
		p, ok := rep.Latency[name]
		if !ok || p.Count == 0 || p.P50 <= 0 || p.P50 > p.P99 || p.P99 > p.Max {
			t.Errorf("latency %s = %+v, want ordered percentiles", name, p)
		}
	}
}

// TestC2CRateAndPull sends at a fixed rate to receivers that never ack a
// push (--no-ack), with the server's push window at 2: once a receiver
// has 2 unacknowledged pushes of its conversation, which happens by its
// third message whatever the machine's speed, the server must switch it to
// Notify, and the rest comes by Sync until the receiver has caught up
// (then pushes resume, and the window fills again). The delivery check
// still requires every message exactly once, in seq order.
func TestC2CRateAndPull(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.Window = 2; c.QueueSize = 64 }))
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"--target", srv.Target(), "--json", "--scenario", "c2c",
		"--pairs", "2", "--rate", "400", "--inflight", "64", "--duration", "1s", "--no-ack"}, &stdout, &stderr)
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stderr.String())
	}
	if code != exitOK || !rep.Check.OK {
		t.Fatalf("exit %d, check %+v\n%s", code, rep.Check, stderr.String())
	}
	c := rep.Counts
	t.Logf("counts: %+v", c)
	if c.Delivered == 0 || c.Delivered != c.Expected || c.Delivered != c.Acked {
		t.Errorf("delivered %d of %d expected, %d acked", c.Delivered, c.Expected, c.Acked)
	}
	if c.ViaPush+c.ViaSync != c.Delivered {
		t.Errorf("%d by push + %d by sync != %d delivered", c.ViaPush, c.ViaSync, c.Delivered)
	}
	// Each receiver gets its first 2 messages by push, then a Notify for
	// the third, which it fetches by Sync.
	if c.ViaPush < 2*2 || c.Notifies < 2 || c.ViaSync < 2 || c.Syncs < 2 {
		t.Errorf("%d by push, %d notifies, %d syncs, %d delivered by sync; want the window to fill and the pull path used for each receiver",
			c.ViaPush, c.Notifies, c.Syncs, c.ViaSync)
	}
	if c.Disconnects != 0 || c.Reconnects != 0 || c.SendErrors != 0 || c.FrameErrors != 0 {
		t.Errorf("%d disconnects, %d reconnects, %d send errors, %d error frames; notes %q",
			c.Disconnects, c.Reconnects, c.SendErrors, c.FrameErrors, rep.Notes)
	}
	// 2 senders at 400/s for 1 s: about 800 messages; never more than the
	// rate allows, and at least half even on a loaded CI machine (-race).
	if a := rep.Counts.Acked; a < 200 || a > 1000 {
		t.Errorf("acked %d messages at 2×400/s for 1s", a)
	}
}

func TestGroup(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "group", "--members", "10", "--online", "0.8", "--senders", "2", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	g := rep.Group
	if g == nil || g.Members != 10 || g.Online != 8 || g.Senders != 2 {
		t.Fatalf("group = %+v", g)
	}
	c := rep.Counts
	// Each message reaches the 7 other online members.
	if c.Acked == 0 || c.Expected != 7*c.Acked || c.Delivered != c.Expected {
		t.Errorf("acked %d, delivered %d of %d promised; want 7 per message", c.Acked, c.Delivered, c.Expected)
	}
}

func TestIdle(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "idle", "--conns", "20", "--streams-per-conn", "2", "--source-addrs", "2", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	id := rep.Idle
	if id == nil || id.Opened != 20 || id.Held != 20 || id.Connections != 10 {
		t.Fatalf("idle = %+v, want 20 streams opened and held over 10 connections", id)
	}
	if id.AuthPerSec <= 0 || id.RSSOpen <= 0 {
		t.Errorf("idle = %+v, want auth rate and memory", id)
	}
}

func TestReconnect(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "reconnect", "--clients", "20", "--senders", "3", "--messages", "4")
	checkSane(t, code, rep, stderr)
	r := rep.Reconnect
	if r == nil || !r.Complete || r.Reconnected != 20 || r.AllSyncedSec <= 0 || r.AllSyncedSec < r.AllWelcomedSec-0.01 {
		t.Fatalf("reconnect = %+v", r)
	}
	c := rep.Counts
	// 1 warm-up message and 4 sent while away, to each of 20 clients.
	if c.Acked != 100 || c.Delivered != 100 || c.ViaSync < 80 {
		t.Errorf("acked %d, delivered %d (%d by sync); want 100, 100, ≥ 80", c.Acked, c.Delivered, c.ViaSync)
	}
}

// TestReconnectNothingNew reconnects clients that already have every
// message while the server's cursors lag (never flushed): each gets a
// Notify for what it has and answers with one empty Sync, as the protocol
// asks, without looping.
func TestReconnectNothingNew(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.CursorFlushInterval = time.Hour }))
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"--target", srv.Target(), "--json", "--scenario", "reconnect",
		"--clients", "10", "--senders", "2", "--messages", "0"}, &stdout, &stderr)
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stderr.String())
	}
	if code != exitOK || !rep.Check.OK || rep.Reconnect == nil || !rep.Reconnect.Complete {
		t.Fatalf("exit %d, check %+v, reconnect %+v\n%s", code, rep.Check, rep.Reconnect, stderr.String())
	}
	c := rep.Counts
	if c.StaleNotifies != 10 || c.Notifies != 10 || c.Syncs != 10 {
		t.Errorf("%d notifies (%d stale), %d syncs; want 10 each: one empty Sync per client", c.Notifies, c.StaleNotifies, c.Syncs)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--inflight", "1000"},
		{"--target", "192.0.2.1:7070"}, // not loopback: never loaded
		{"--duration", "1h"},
		{"--target", "127.0.0.1:7070,192.0.2.1:7070"}, // one not loopback
		{"--target", "127.0.0.1:7070,"},
		{"--server-pid", "12,x"},
		{"--redis", "http://127.0.0.1:6379"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := realMain(context.Background(), args, &stdout, &stderr)
		// The loopback check resolves names, so it runs after parsing.
		hinted := strings.Contains(stderr.String(), "(see 'starling-bench --help')") || strings.Contains(stderr.String(), "only loopback")
		if code != exitError || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 || !hinted {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and one line pointing to --help", args, code, stdout.String(), stderr.String(), exitError)
		}
	}
	for _, arg := range []string{"--help", "-h"} {
		var stdout, stderr bytes.Buffer
		code := realMain(context.Background(), []string{arg}, &stdout, &stderr)
		help := stdout.String()
		if code != exitOK || stderr.Len() != 0 || !strings.HasPrefix(help, "usage: starling-bench") || !strings.Contains(help, "--bcrypt-cost 4 --send-rate 0") ||
			!strings.Contains(help, "Environment:") {
			t.Errorf("%s: exit %d, stderr %q, output:\n%s", arg, code, stderr.String(), help)
		}
		for _, f := range []string{"--target", "--scenario", "--pairs", "--duration", "--json", "--tls-ca"} {
			if !strings.Contains(help, "\n  "+f+" ") && !strings.Contains(help, "\n  "+f+"\n") {
				t.Errorf("%s does not show %s", arg, f)
			}
		}
	}
}

// twoNodes is --target naming one in-process server twice, by two
// addresses: two slots and, as the bench compares addresses, two nodes.
func twoNodes(srv *servertest.Server) string {
	_, port, _ := strings.Cut(srv.Target(), ":")
	return srv.Target() + ",localhost:" + port
}

// runBenchOn runs the command against a fresh in-process server with
// target(srv) as --target and the test process's pid twice as
// --server-pid.
func runBenchOn(t *testing.T, target func(*servertest.Server) string, args ...string) (int, *Report, string) {
	t.Helper()
	srv := servertest.Start(t)
	pid := strconv.Itoa(os.Getpid())
	return runMain(t, append([]string{"--target", target(srv), "--json", "--server-pid", pid + "," + pid}, args...)...)
}

// checkTargets asserts that the per-target figures add up to the run's.
func checkTargets(t *testing.T, rep *Report, devices ...int64) {
	t.Helper()
	if len(rep.Targets) != len(devices) {
		t.Fatalf("targets = %+v, want %d", rep.Targets, len(devices))
	}
	var sum TargetReport
	for i, tr := range rep.Targets {
		if tr.Slot != i || tr.Devices != devices[i] || tr.Connected != devices[i] {
			t.Errorf("target %d = %+v, want %d devices, all connected", i, tr, devices[i])
		}
		sum.Sent += tr.Sent
		sum.Acked += tr.Acked
		sum.Delivered += tr.Delivered
		sum.ViaPush += tr.ViaPush
		sum.PushFrames += tr.PushFrames
	}
	c := rep.Counts
	if sum.Sent != c.Sent || sum.Acked != c.Acked || sum.Delivered != c.Delivered || sum.ViaPush != c.ViaPush || sum.PushFrames != c.PushFrames {
		t.Errorf("targets add up to %+v; counts %+v", sum, c)
	}
}

// checkServers asserts per-pid figures and their sum, with CPU per message.
func checkServers(t *testing.T, rep *Report) {
	t.Helper()
	if len(rep.Servers) != 2 || rep.Server == nil {
		t.Fatalf("servers %+v, total %+v; want 2 and a total", rep.Servers, rep.Server)
	}
	s := rep.Server
	if got := rep.Servers[0].CPUSeconds + rep.Servers[1].CPUSeconds; math.Abs(s.CPUSeconds-got) > 1e-9 || s.RSSAfter != rep.Servers[0].RSSAfter+rep.Servers[1].RSSAfter {
		t.Errorf("total %+v is not the sum of %+v", s, rep.Servers)
	}
	if s.PID != 0 || s.CPUPerAckedUs <= 0 || s.CPUPerDeliveredUs <= 0 {
		t.Errorf("total %+v: want no pid and CPU per message", s)
	}
}

// TestC2CSplit: with two targets each pair's ends are on different
// targets, so every push is cross-node.
func TestC2CSplit(t *testing.T) {
	code, rep, stderr := runBenchOn(t, twoNodes, "--scenario", "c2c", "--pairs", "3", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	// Senders 0,1,0 and receivers 1,0,1.
	checkTargets(t, rep, 3, 3)
	if s := rep.Targets[0].Senders + rep.Targets[1].Senders; s != 3 {
		t.Errorf("%d senders over the targets, want 3", s)
	}
	checkServers(t, rep)
	push := rep.Latency["send_push"]
	if cross, ok := rep.PushByNode["cross_node"]; !ok || cross.Count != push.Count || len(rep.PushByNode) != 1 {
		t.Errorf("by node %+v, send_push count %d: want every push cross-node", rep.PushByNode, push.Count)
	}
	if !strings.Contains(rep.Placement, "(i+1) mod 2") {
		t.Errorf("placement %q", rep.Placement)
	}
}

// TestC2CNoSplit: --split=false keeps both ends of a pair on one target.
func TestC2CNoSplit(t *testing.T) {
	code, rep, stderr := runBenchOn(t, twoNodes, "--scenario", "c2c", "--pairs", "3", "--duration", "1s", "--split=false")
	checkSane(t, code, rep, stderr)
	checkTargets(t, rep, 4, 2)
	push := rep.Latency["send_push"]
	if same, ok := rep.PushByNode["same_node"]; !ok || same.Count != push.Count || len(rep.PushByNode) != 1 {
		t.Errorf("by node %+v, send_push count %d: want every push same-node", rep.PushByNode, push.Count)
	}
}

// TestGroupTwoTargets: members (senders too) alternate between targets,
// so deliveries are of both classes.
func TestGroupTwoTargets(t *testing.T) {
	code, rep, stderr := runBenchOn(t, twoNodes, "--scenario", "group", "--members", "10", "--online", "0.8", "--senders", "2", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	checkTargets(t, rep, 4, 4)
	if rep.Targets[0].Senders != 1 || rep.Targets[1].Senders != 1 {
		t.Errorf("senders per target %d, %d; want 1, 1", rep.Targets[0].Senders, rep.Targets[1].Senders)
	}
	checkServers(t, rep)
	same, cross := rep.PushByNode["same_node"], rep.PushByNode["cross_node"]
	if same.Count == 0 || cross.Count == 0 || same.Count+cross.Count != rep.Latency["send_push"].Count {
		t.Errorf("same-node %d + cross-node %d pushes, send_push %d", same.Count, cross.Count, rep.Latency["send_push"].Count)
	}
}

// TestIdleTwoTargets: streams alternate between the targets, each
// target's sharing its own connections.
func TestIdleTwoTargets(t *testing.T) {
	same := func(srv *servertest.Server) string { return srv.Target() + "," + srv.Target() }
	code, rep, stderr := runBenchOn(t, same, "--scenario", "idle", "--conns", "10", "--streams-per-conn", "2", "--duration", "1s")
	checkSane(t, code, rep, stderr)
	if rep.Idle == nil || rep.Idle.Held != 10 || rep.Idle.Connections != 6 {
		t.Fatalf("idle = %+v, want 10 streams held over 3+3 connections", rep.Idle)
	}
	checkTargets(t, rep, 5, 5)
}

// TestTableShowsCluster: the table prints the cluster sections.
func TestTableShowsCluster(t *testing.T) {
	srv := servertest.Start(t)
	pid := strconv.Itoa(os.Getpid())
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"--target", twoNodes(srv), "--server-pid", pid + "," + pid,
		"--scenario", "c2c", "--pairs", "2", "--duration", "500ms", "--quiet"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"placement", "server cpu (2 pids)", "  pid " + pid, "server cpu/msg", "µs per acked message",
		"#0 " + srv.Target(), "#1 localhost:", "send_push cross-node"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// --read: receivers mark read what they acknowledge; every message is
// still delivered once, no MarkRead is refused, and senders get coalesced
// receipts (fewer than one per message).
func TestC2CRead(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "c2c", "--pairs", "3", "--duration", "1s", "--read")
	checkSane(t, code, rep, stderr)
	c := rep.Counts
	if c.Delivered == 0 || c.Delivered != c.Expected || c.MarkReads == 0 || c.FrameErrors != 0 {
		t.Errorf("delivered %d of %d, %d MarkReads, %d error frames", c.Delivered, c.Expected, c.MarkReads, c.FrameErrors)
	}
	if c.Receipts == 0 || c.Receipts >= c.Acked {
		t.Errorf("%d receipts for %d messages: want some, coalesced", c.Receipts, c.Acked)
	}
}

func TestGroupRead(t *testing.T) {
	code, rep, stderr := runBench(t, "--scenario", "group", "--members", "10", "--senders", "2", "--duration", "1s", "--read")
	checkSane(t, code, rep, stderr)
	if c := rep.Counts; c.MarkReads == 0 || c.Delivered != c.Expected || c.FrameErrors != 0 {
		t.Errorf("%d MarkReads, delivered %d of %d, %d error frames", c.MarkReads, c.Delivered, c.Expected, c.FrameErrors)
	}
}
