package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/starling-im/starling/internal/flagusage"
)

// config is starling-bench's command line.
type config struct {
	Target        string   // as given: one address or a comma-separated list
	Targets       []string // Target's addresses, one per slot
	Split         bool     // c2c: the two ends of a pair on different targets
	TLS           bool
	TLSCA         string
	TLSSkipVerify bool

	Scenario string
	Duration time.Duration
	Timeout  time.Duration // bound on every wait: setup calls, drains, the reconnect storm

	// c2c
	Pairs    int
	Rate     float64 // messages/s per sender; 0 = as fast as Inflight allows
	Inflight int     // sends per stream awaiting their SendAck
	Payload  int     // text bytes per message
	NoAck    bool    // devices never send PushAck (the pull path under test)
	Read     bool    // receivers MarkRead as messages arrive (read receipts on)

	// group
	Members int
	Online  float64
	Senders int

	// idle
	Conns          int
	StreamsPerConn int
	SourceAddrs    int

	// reconnect
	Clients  int
	Messages int // messages each client is sent while it is away

	ServerPIDs       []int  // the servers' processes, one per node, to sample in /proc
	Redis            string // redis:// URL of the cluster's Redis, to sample with INFO
	SetupConcurrency int
	DialConcurrency  int
	SyncLimit        int

	Chaos chaosConfig // --scenario chaos (chaos.go)

	// A local webhook receiver that answers after SlowWebhookDelay, or
	// never when it is negative (see slowhook.go).
	SlowWebhook      string
	SlowWebhookDelay time.Duration

	JSON     bool
	Quiet    bool
	LogLevel slog.Level
}

var scenarios = []string{"c2c", "group", "idle", "reconnect", "chaos"}

const usageHead = `usage: starling-bench [flags]

starling-bench is a load generator for a running Starling server:

  starling-bench --target 127.0.0.1:7070 --scenario c2c --pairs 100 --duration 15s

Start the server for a benchmark with cheap passwords, no per-address login
and register limits and no per-user send limit, or setup crawls and c2c/group
runs hit the rate limiters:

  starlingd --bcrypt-cost 4 --send-rate 0 --login-rate 0 --register-rate 0 --log-level warn

Scenarios:
  c2c        --pairs P senders each send to their own receiver, at --rate msgs/s
             or as fast as --inflight unacknowledged sends allow.
  group      one group of --members users, --online of them connected,
             --senders of them sending; measures fan-out deliveries/s.
  idle       --conns authenticated streams held open with heartbeats for
             --duration; server memory per connection (--server-pid) and
             stream authentications per second while opening.
  chaos      starts its own starlingd nodes (--nodes, --starlingd; more than
             one needs --db and --redis), drives one-to-one and group
             traffic while group members come and go, injects --faults on a
             schedule, then checks the whole history (docs/reliability.md);
             --history out.jsonl keeps it. Exits 1 on any violation.
  reconnect  --clients connected clients all drop, are sent --messages each,
             and reconnect at once; time until every one has caught up.

Every run checks that each acknowledged message reached every online
recipient exactly once and in seq order, and exits 1 if not (2 on errors).
Targets must be loopback addresses.

Cluster mode: list every node (and, to sample them, every node's pid and
the Redis they share):

  starling-bench --target 127.0.0.1:7070,127.0.0.1:7071 --server-pid 4101,4102 \
      --redis redis://127.0.0.1:6379/0 --scenario c2c --pairs 100

Streams are spread over the targets round-robin (c2c: each pair's sender and
receiver on different targets, unless --split=false). The report adds, per
target, the devices on it and what they sent, got acked and received;
send→push latency of same-node and cross-node deliveries (same node: the
same address string in --target, so one node listed as both 127.0.0.1:7070
and localhost:7070 counts as two); CPU and memory per server pid and their
sum; and with --redis, Redis commands and CPU per acked message.

Environment: starling-bench reads no environment variable; the starlingd
nodes that --scenario chaos starts inherit its environment, so STARLING_*
variables set for it reach them (starlingd --help lists them).

Flags:
`

// parseConfig parses args. It returns flag.ErrHelp after printing usage
// for -h/--help.
func parseConfig(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("starling-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Target, "target", "127.0.0.1:7070", "server host:port (loopback only); several, comma-separated, are the nodes of one cluster: setup calls and device streams are spread over them round-robin")
	fs.BoolVar(&c.Split, "split", false, "c2c with several targets: each pair's sender on target i mod n and receiver on target (i+1) mod n, so every message crosses nodes; --split=false puts both on target i mod n (same-node figures from a cluster) (default true with more than one target)")
	fs.BoolVar(&c.TLS, "tls", false, "connect with TLS")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate (default: system roots)")
	fs.BoolVar(&c.TLSSkipVerify, "tls-skip-verify", false, "do not verify the server's certificate (self-signed test servers)")
	fs.StringVar(&c.Scenario, "scenario", "c2c", "c2c, group, idle, reconnect or chaos")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send (c2c, group) or hold (idle)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "bound on every wait: a setup call, the drain after sending, the reconnect storm")
	fs.IntVar(&c.Pairs, "pairs", 100, "c2c: sender/receiver pairs")
	fs.Float64Var(&c.Rate, "rate", 0, "c2c, group: messages/s per sender (0: as fast as --inflight allows)")
	fs.IntVar(&c.Inflight, "inflight", 16, "sends per stream awaiting their SendAck (the server allows 256)")
	fs.IntVar(&c.Payload, "payload", 50, "text bytes per message, besides the 8-byte send timestamp")
	fs.BoolVar(&c.NoAck, "no-ack", false, "devices never send PushAck, so each one's push window fills and delivery goes through Notify and Sync (the pull path)")
	fs.BoolVar(&c.Read, "read", false, "c2c, group: devices also MarkRead what they acknowledge, as an app that shows every message at once (read receipts on)")
	fs.IntVar(&c.Members, "members", 100, "group: members of the group")
	fs.Float64Var(&c.Online, "online", 1, "group: fraction of members with a stream open (0-1]")
	fs.IntVar(&c.Senders, "senders", 1, "group: members that send; reconnect: users that send to the clients")
	fs.IntVar(&c.Conns, "conns", 1000, "idle: streams to open")
	fs.IntVar(&c.StreamsPerConn, "streams-per-conn", 1, "streams sharing one gRPC connection (1 = one per stream, as phones)")
	fs.IntVar(&c.SourceAddrs, "source-addrs", 8, "spread connections over this many source addresses 127.0.0.1.. (each has its own ephemeral port range)")
	fs.IntVar(&c.Clients, "clients", 1000, "reconnect: clients that drop and reconnect")
	fs.IntVar(&c.Messages, "messages", 5, "reconnect: messages sent to each client while it is away")
	pids := fs.String("server-pid", "", "the server's process id, to report its CPU time, memory and CPU per message (from /proc); with a cluster, every node's pid, comma-separated: each is reported and so is their sum")
	fs.StringVar(&c.Redis, "redis", "", "redis://host:port/db of the Redis the cluster shares (loopback only): report its commands and CPU per acked message, from INFO commandstats and INFO cpu before and after the measured window")
	fs.IntVar(&c.SetupConcurrency, "setup-concurrency", 32, "parallel Register/Login calls while setting up")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 256, "streams opened in parallel (0: all at once)")
	fs.IntVar(&c.SyncLimit, "sync-limit", 200, "messages one Sync asks for (1-500)")
	fs.StringVar(&c.SlowWebhook, "slow-webhook", "", "run a webhook receiver on this address (e.g. 127.0.0.1:9090) that answers after --slow-webhook-delay; start starlingd with --push-webhook or --event-webhook http://ADDR/ to measure sends with a slow receiver")
	fs.DurationVar(&c.SlowWebhookDelay, "slow-webhook-delay", time.Second, "how long --slow-webhook waits before answering; negative: it never answers")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON instead of a table")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress or live lines on stderr")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	var faults string
	c.Chaos.addFlags(fs, &faults)

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, usageHead)
			flagusage.Print(out, fs, nil)
		}
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.Chaos.parse(faults); err != nil {
		return config{}, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return config{}, fmt.Errorf("--log-level: %w", err)
	}
	var err error
	if c.Targets, err = parseTargets(c.Target); err != nil {
		return config{}, err
	}
	if c.ServerPIDs, err = parsePIDs(*pids); err != nil {
		return config{}, err
	}
	if !flagSet(fs, "split") {
		c.Split = len(c.Targets) > 1
	}
	return c, c.validate()
}

// validate keeps every run bounded: sizes and durations have ceilings, so
// a typo cannot start a run that never ends.
func (c config) validate() error {
	var errs []string
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, msg)
		}
	}
	check(slices.Contains(scenarios, c.Scenario), "--scenario must be one of "+strings.Join(scenarios, ", "))
	if c.Scenario == "chaos" { // soaks run for hours
		check(c.Duration > 0 && c.Duration <= 24*time.Hour, "--duration must be in (0, 24h] with --scenario chaos")
		errs = append(errs, c.validateChaos()...)
	} else {
		check(c.Duration > 0 && c.Duration <= 10*time.Minute, "--duration must be in (0, 10m]")
	}
	check(c.Timeout > 0 && c.Timeout <= 10*time.Minute, "--timeout must be in (0, 10m]")
	check(c.Pairs >= 1 && c.Pairs <= 100_000, "--pairs must be 1-100000")
	check(c.Rate >= 0 && !math.IsInf(c.Rate, 0) && c.Rate <= 1e6, "--rate must be 0-1000000")
	check(c.Inflight >= 1 && c.Inflight <= 256, "--inflight must be 1-256 (the server refuses more)")
	check(c.Payload >= 0 && c.Payload <= 60_000, "--payload must be 0-60000 (the server limits content to 64 KiB)")
	check(c.Members >= 2 && c.Members <= 100_000, "--members must be 2-100000")
	check(c.Online > 0 && c.Online <= 1, "--online must be in (0, 1]")
	check(c.Senders >= 1, "--senders must be at least 1")
	check(c.Conns >= 1 && c.Conns <= 1_000_000, "--conns must be 1-1000000")
	check(c.StreamsPerConn >= 1 && c.StreamsPerConn <= 10_000, "--streams-per-conn must be 1-10000")
	check(c.SourceAddrs >= 1 && c.SourceAddrs <= 250, "--source-addrs must be 1-250")
	check(c.Clients >= 1 && c.Clients <= 1_000_000, "--clients must be 1-1000000")
	check(c.Messages >= 0 && c.Messages <= 10_000, "--messages must be 0-10000")
	check(c.SetupConcurrency >= 1 && c.SetupConcurrency <= 4096, "--setup-concurrency must be 1-4096")
	check(c.DialConcurrency >= 0, "--dial-concurrency must not be negative")
	check(c.SyncLimit >= 1 && c.SyncLimit <= 500, "--sync-limit must be 1-500")
	if c.Scenario == "group" {
		check(c.Senders <= c.onlineMembers(), "--senders must not exceed the online members")
	}
	if c.Redis != "" {
		_, err := redis.ParseURL(c.Redis)
		check(err == nil, fmt.Sprintf("--redis: %v", err))
	}
	if c.TLSCA != "" || c.TLSSkipVerify {
		check(c.TLS, "--tls-ca and --tls-skip-verify need --tls")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// flagSet reports whether the command line gave flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parsePIDs parses --server-pid: empty or "0" (no server to sample, as
// before pids could be listed) or positive pids, comma-separated.
func parsePIDs(s string) ([]int, error) {
	if s == "" || s == "0" {
		return nil, nil
	}
	var pids []int
	for f := range strings.SplitSeq(s, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--server-pid %q: %q is not a process id", s, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// onlineMembers is how many group members open a stream.
func (c config) onlineMembers() int {
	return max(1, int(math.Ceil(float64(c.Members)*c.Online)))
}
