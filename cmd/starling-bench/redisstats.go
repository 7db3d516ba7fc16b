package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The cost of cluster mode in Redis: INFO commandstats and INFO cpu read
// before and after the measured window give the commands the nodes ran
// and the CPU Redis spent, per acked message. They count every client of
// that Redis, not only the nodes under test: use a Redis of their own.

// redisTopCommands is how many commands the report names.
const redisTopCommands = 8

// ownInfoCalls is how many of the bench's own INFO calls a window's
// commandstats delta holds: Redis counts a command after running it, so
// the first sample's "INFO commandstats" and "INFO cpu" show up in the
// second sample's commandstats, and the second's own do not.
const ownInfoCalls = 2

// redisStats samples one Redis server.
type redisStats struct {
	client *redis.Client
}

// redisSample is a Redis server's counters at one moment.
type redisSample struct {
	calls map[string]int64 // command (as commandstats names it) → calls
	cpu   float64          // used_cpu_sys + used_cpu_user, seconds
}

// newRedisStats connects to the Redis at url, which must be on this
// machine, and checks that it answers.
func newRedisStats(ctx context.Context, url string, timeout time.Duration) (*redisStats, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis: %w", err)
	}
	if opts.Network != "unix" {
		if err := checkLoopback(ctx, "--redis", opts.Addr); err != nil {
			return nil, err
		}
	}
	// One connection and no CLIENT SETINFO: the bench's own commands are
	// then only the INFO calls that ownInfoCalls accounts for.
	opts.PoolSize, opts.DisableIdentity = 1, true
	r := &redisStats{client: redis.NewClient(opts)}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.client.Ping(pctx).Err(); err != nil {
		r.client.Close()
		return nil, fmt.Errorf("--redis %s: %w", opts.Addr, err)
	}
	return r, nil
}

func (r *redisStats) close() error { return r.client.Close() }

// sample reads INFO commandstats, then INFO cpu (two calls: Redis before 7
// takes one section per INFO).
func (r *redisStats) sample(ctx context.Context) (redisSample, error) {
	stats, err := r.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisSample{}, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	cpuInfo, err := r.client.Info(ctx, "cpu").Result()
	if err != nil {
		return redisSample{}, fmt.Errorf("redis INFO cpu: %w", err)
	}
	var s redisSample
	if s.calls, err = parseCommandStats(stats); err != nil {
		return redisSample{}, err
	}
	if s.cpu, err = parseRedisCPU(cpuInfo); err != nil {
		return redisSample{}, err
	}
	return s, nil
}

// infoFields yields the "key:value" lines of an INFO reply, skipping
// section headers ("# CPU") and blank lines; lines end in CRLF.
func infoFields(info string) map[string]string {
	fields := make(map[string]string)
	for line := range strings.Lines(info) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// parseCommandStats reads the calls of every command from an INFO
// commandstats reply, whose lines look like
// "cmdstat_publish:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0"
// (subcommands as "cmdstat_client|setinfo").
func parseCommandStats(info string) (map[string]int64, error) {
	calls := make(map[string]int64)
	for k, v := range infoFields(info) {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		n, err := statField(v, "calls")
		if err != nil {
			return nil, fmt.Errorf("parse INFO commandstats %s: %w", k, err)
		}
		calls[name] = n
	}
	return calls, nil
}

// statField is the integer field name of a commandstats value
// "calls=12,usec=34,...".
func statField(v, name string) (int64, error) {
	for kv := range strings.SplitSeq(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s=%q: %w", name, val, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no %s in %q", name, v)
}

// parseRedisCPU is used_cpu_sys + used_cpu_user of an INFO cpu reply, in
// seconds: the server's own CPU, without its children (background saves).
func parseRedisCPU(info string) (float64, error) {
	fields := infoFields(info)
	var total float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, ok := fields[k]
		if !ok {
			return 0, fmt.Errorf("parse INFO cpu: no %s", k)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("parse INFO cpu %s: %w", k, err)
		}
		total += f
	}
	return total, nil
}

// RedisReport is what Redis did over the measured window, per message
// acked in it.
type RedisReport struct {
	Commands         int64          `json:"commands"`
	CommandsPerAcked float64        `json:"commands_per_acked,omitempty"`
	Top              []RedisCommand `json:"top_commands,omitempty"`
	CPUSeconds       float64        `json:"cpu_s"`
	CPUPerAckedUs    float64        `json:"cpu_us_per_acked,omitempty"`
}

// RedisCommand is one command's calls over the window.
type RedisCommand struct {
	Name     string  `json:"name"`
	Calls    int64   `json:"calls"`
	PerAcked float64 `json:"per_acked,omitempty"`
}

// redisReport compares two samples, less the bench's own INFO calls.
func redisReport(before, after redisSample, acked int64) *RedisReport {
	var cmds []RedisCommand
	var total int64
	for name, n := range after.calls {
		n -= before.calls[name] // a command first seen in after was at 0
		if name == "info" {
			n -= ownInfoCalls
		}
		if n <= 0 {
			continue
		}
		total += n
		cmds = append(cmds, RedisCommand{Name: name, Calls: n, PerAcked: perMessage(float64(n), acked)})
	}
	slices.SortFunc(cmds, func(a, b RedisCommand) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Name, b.Name))
	})
	cpu := after.cpu - before.cpu
	return &RedisReport{
		Commands:         total,
		CommandsPerAcked: perMessage(float64(total), acked),
		Top:              cmds[:min(len(cmds), redisTopCommands)],
		CPUSeconds:       cpu,
		CPUPerAckedUs:    perMessage(1e6*cpu, acked),
	}
}
