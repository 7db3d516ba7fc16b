package main

import (
	"context"
	"math"
	"os"
	"testing"
	"time"

	"github.com/starling-im/starling/server/redistest"
)

// commandStats is an INFO commandstats reply as Redis 7 writes it.
const commandStats = "# Commandstats\r\n" +
	"cmdstat_publish:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_client|setinfo:calls=2,usec=3,usec_per_call=1.50,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_info:calls=7,usec=700,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_evalsha:calls=1234567890123,usec=5,usec_per_call=0.00,rejected_calls=1,failed_calls=2\r\n" +
	"\r\n"

func TestParseCommandStats(t *testing.T) {
	got, err := parseCommandStats(commandStats)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"publish": 12, "client|setinfo": 2, "info": 7, "evalsha": 1234567890123}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d calls, want %d", k, got[k], v)
		}
	}
	// Redis before 6.2 had fewer fields, and LF line ends are taken too.
	old, err := parseCommandStats("# Commandstats\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00\n")
	if err != nil || old["get"] != 3 {
		t.Errorf("Redis 6 format: %v, %v", old, err)
	}
	// An empty section (a fresh server) is no commands, not an error.
	if none, err := parseCommandStats("# Commandstats\r\n"); err != nil || len(none) != 0 {
		t.Errorf("empty section: %v, %v", none, err)
	}
	checkRefused(t, "parseCommandStats", parseCommandStats,
		"cmdstat_get:usec=9,usec_per_call=3.00\r\n",
		"cmdstat_get:calls=x,usec=9\r\n",
		"cmdstat_get:calls=,usec=9\r\n",
		"cmdstat_get:\r\n")
}

func TestParseRedisCPU(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.500000\r\n" +
		"used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n" +
		"used_cpu_sys_main_thread:1.000000\r\nused_cpu_user_main_thread:2.000000\r\n"
	got, err := parseRedisCPU(info)
	if err != nil || math.Abs(got-3.75) > 1e-9 {
		t.Errorf("parseRedisCPU = %v, %v; want 3.75 (children and main-thread lines left out)", got, err)
	}
	checkRefused(t, "parseRedisCPU", parseRedisCPU,
		"# CPU\r\nused_cpu_sys:1.0\r\n",
		"# CPU\r\nused_cpu_sys:1.0\r\nused_cpu_user:abc\r\n",
		"")
}

// TestRedisReport: deltas per command, less the bench's own INFO calls,
// ranked by calls, per acked message.
func TestRedisReport(t *testing.T) {
	before := redisSample{calls: map[string]int64{"publish": 100, "info": 50, "get": 7, "hset": 4}, cpu: 10}
	after := redisSample{calls: map[string]int64{
		"publish": 300,    // +200
		"info":    50 + 2, // only the bench's own: left out
		"get":     7,      // not called in the window: left out
		"hset":    4 + 50, // +50, ties with sadd: by name
		"sadd":    50,     // first called in the window
		"evalsha": 10,
	}, cpu: 10.5}
	r := redisReport(before, after, 100)
	if r.Commands != 310 || math.Abs(r.CommandsPerAcked-3.1) > 1e-9 {
		t.Errorf("commands %d (%.2f per acked), want 310 (3.10)", r.Commands, r.CommandsPerAcked)
	}
	want := []RedisCommand{{"publish", 200, 2}, {"hset", 50, 0.5}, {"sadd", 50, 0.5}, {"evalsha", 10, 0.1}}
	if len(r.Top) != len(want) {
		t.Fatalf("top = %+v, want %+v", r.Top, want)
	}
	for i, w := range want {
		if g := r.Top[i]; g.Name != w.Name || g.Calls != w.Calls || math.Abs(g.PerAcked-w.PerAcked) > 1e-9 {
			t.Errorf("top[%d] = %+v, want %+v", i, g, w)
		}
	}
	if math.Abs(r.CPUSeconds-0.5) > 1e-9 || math.Abs(r.CPUPerAckedUs-5000) > 1e-6 {
		t.Errorf("cpu %vs, %v µs per acked; want 0.5 s, 5000 µs", r.CPUSeconds, r.CPUPerAckedUs)
	}

	// Nothing acked: no per-message figures (omitted, not infinite).
	if r := redisReport(before, after, 0); r.CommandsPerAcked != 0 || r.CPUPerAckedUs != 0 || r.Top[0].PerAcked != 0 {
		t.Errorf("nothing acked: %+v", r)
	}

	// Many commands: only the top ones are named.
	many := redisSample{calls: map[string]int64{}}
	for i := range 2 * redisTopCommands {
		many.calls[string(rune('a'+i))] = int64(i + 1)
	}
	if r := redisReport(redisSample{}, many, 1); len(r.Top) != redisTopCommands || r.Top[0].Name != string(rune('a'+2*redisTopCommands-1)) {
		t.Errorf("top of %d commands: %+v", len(many.calls), r.Top)
	}
}

// TestRedisStatsLive samples a real Redis around commands of the test's
// own and finds them in the delta (other tests may share the server, so
// it checks "at least").
func TestRedisStatsLive(t *testing.T) {
	client, prefix := redistest.Client(t) // skips without a Redis
	url := testRedisURL()
	ctx := context.Background()
	r, err := newRedisStats(ctx, url, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	before, err := r.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := client.Publish(ctx, prefix+"bench", "x").Err(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := r.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := redisReport(before, after, 5)
	var publish int64
	for _, c := range rep.Top {
		if c.Name == "publish" {
			publish = c.Calls
		}
	}
	if publish < 5 || rep.Commands < 5 || rep.CPUSeconds < 0 {
		t.Errorf("report %+v, want ≥ 5 publish calls", rep)
	}
}

func TestRedisNotLoopback(t *testing.T) {
	if _, err := newRedisStats(context.Background(), "redis://192.0.2.1:6379/0", time.Second); err == nil {
		t.Error("a Redis off this machine was accepted")
	}
}

// TestC2CRedis: a run with --redis reports Redis figures for its window.
func TestC2CRedis(t *testing.T) {
	redistest.Client(t) // skips without a Redis
	url := testRedisURL()
	code, rep, stderr := runBench(t, "--scenario", "c2c", "--pairs", "2", "--duration", "500ms", "--redis", url)
	checkSane(t, code, rep, stderr)
	if r := rep.Redis; r == nil || r.Commands < 0 || r.CPUSeconds < 0 {
		t.Errorf("redis = %+v; notes %q", rep.Redis, rep.Notes)
	}
}

// testRedisURL is the Redis redistest.Client connects to.
func testRedisURL() string {
	if url := os.Getenv("STARLING_TEST_REDIS_URL"); url != "" {
		return url
	}
	return redistest.DefaultURL
}
