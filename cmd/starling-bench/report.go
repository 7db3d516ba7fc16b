package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is one run's outcome; --json prints it as is.
type Report struct {
	Scenario  string    `json:"scenario"`
	Target    string    `json:"target"`
	StartedAt time.Time `json:"started_at"`
	Config    config    `json:"config"`

	SetupUsers   int     `json:"setup_users"`
	SetupSeconds float64 `json:"setup_s"`

	// The measured window: sending (c2c, group), holding (idle), the
	// storm (reconnect).
	Seconds         float64 `json:"measured_s"`
	AckedPerSec     float64 `json:"acked_per_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"`

	Counts  Counts                 `json:"counts"`
	Latency map[string]Percentiles `json:"latency"`

	Server  *ProcReport  `json:"server,omitempty"`  // with --server-pid: the one server, or the sum of all
	Servers []ProcReport `json:"servers,omitempty"` // with --server-pid: each pid, in the order given
	Client  ProcReport   `json:"bench"`
	Redis   *RedisReport `json:"redis,omitempty"` // with --redis

	// Placement says which target each device's stream went to; Targets
	// has what the devices of each --target slot did.
	Placement string         `json:"placement"`
	Targets   []TargetReport `json:"targets"`
	// PushByNode is send→push latency by whether sender and receiver
	// were on one node (same address in --target): "same_node",
	// "cross_node"; a class without samples is left out.
	PushByNode map[string]Percentiles `json:"send_push_by_node,omitempty"`

	Group     *GroupReport     `json:"group,omitempty"`
	Idle      *IdleReport      `json:"idle,omitempty"`
	Reconnect *ReconnectReport `json:"reconnect,omitempty"`

	Notes []string    `json:"notes,omitempty"` // distinct errors and events, counted
	Check CheckResult `json:"check"`
}

// Counts are the run's event counts.
type Counts struct {
	Sent          int64 `json:"sent"`
	Resent        int64 `json:"resent"`
	Acked         int64 `json:"acked"`
	DuplicateAcks int64 `json:"duplicate_acks"`
	SendErrors    int64 `json:"send_errors"`
	Expected      int64 `json:"expected_deliveries"`
	Delivered     int64 `json:"delivered"`
	ViaPush       int64 `json:"via_push"`
	ViaSync       int64 `json:"via_sync"`
	PushFrames    int64 `json:"push_frames"`
	Notifies      int64 `json:"notifies"`
	StaleNotifies int64 `json:"stale_notifies"`
	Syncs         int64 `json:"syncs"`
	FrameErrors   int64 `json:"frame_errors"`
	Pongs         int64 `json:"pongs"`
	Welcomes      int64 `json:"welcomes"`
	Disconnects   int64 `json:"disconnects"`
	Reconnects    int64 `json:"reconnects"`
	MarkReads     int64 `json:"mark_reads"`
	Receipts      int64 `json:"receipts"`
}

// ProcReport is a process's CPU time (and memory, for the server) over
// the measured window. CPUPercent is of one core: 200 is both cores of a
// 2-core machine.
type ProcReport struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSBefore  int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter   int64   `json:"rss_after_bytes,omitempty"`
	// Server CPU per message acked and per delivery in the window, in
	// microseconds (on the server's figures; the sum with several).
	CPUPerAckedUs     float64 `json:"cpu_us_per_acked,omitempty"`
	CPUPerDeliveredUs float64 `json:"cpu_us_per_delivered,omitempty"`
}

// GroupReport describes the group of a group run.
type GroupReport struct {
	GroupID string `json:"group_id"`
	Members int    `json:"members"`
	Online  int    `json:"online"`
	Senders int    `json:"senders"`
}

// IdleReport is what an idle run measured.
type IdleReport struct {
	Conns       int     `json:"conns"`
	Opened      int     `json:"opened"`
	OpenError   string  `json:"open_error,omitempty"`
	Connections int     `json:"tcp_connections"`
	OpenSeconds float64 `json:"open_s"`
	AuthPerSec  float64 `json:"stream_auth_per_s"`
	Held        int     `json:"held"`
	RSSBefore   int64   `json:"server_rss_before_bytes,omitempty"`
	RSSOpen     int64   `json:"server_rss_open_bytes,omitempty"`
	RSSEnd      int64   `json:"server_rss_end_bytes,omitempty"`
	// Server memory per stream (per connection with one stream each,
	// the default).
	BytesPerConn float64 `json:"server_bytes_per_conn,omitempty"`
	// Server CPU per stream opened (a TCP+HTTP/2 connection, the token
	// check, the stream's registration and catch-up read), over the
	// opening phase, all --server-pid summed.
	CPUPerConnectUs float64 `json:"server_cpu_us_per_connect,omitempty"`
}

// ReconnectReport is what a reconnect run measured.
type ReconnectReport struct {
	Clients        int     `json:"clients"`
	Messages       int     `json:"messages_each"`
	Reconnected    int     `json:"reconnected"`
	AllWelcomedSec float64 `json:"all_welcomed_s"`
	AllSyncedSec   float64 `json:"all_synced_s"`
	AuthPerSec     float64 `json:"stream_auth_per_s"`
	Complete       bool    `json:"complete"`
	// Server CPU per client back over the storm: its connection, stream
	// and the Syncs of what it missed.
	CPUPerReconnectUs float64 `json:"server_cpu_us_per_reconnect,omitempty"`
}

func writeJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeTable prints the report for people.
func writeTable(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...))
	}
	c := rep.Counts
	row("scenario", "%s against %s (%s)", rep.Scenario, rep.Target, rep.StartedAt.Format(time.RFC3339))
	if len(rep.Targets) > 1 {
		row("placement", "%s", rep.Placement)
	}
	row("setup", "%d users in %.1fs", rep.SetupUsers, rep.SetupSeconds)
	row("measured", "%.1fs", rep.Seconds)
	switch rep.Scenario {
	case "c2c", "group":
		row("sent / acked", "%d / %d  (%.0f acked/s)", c.Sent, c.Acked, rep.AckedPerSec)
		row("delivered", "%d of %d promised  (%.0f/s; %d by push in %d frames, %d by sync)", c.Delivered, c.Expected, rep.DeliveredPerSec, c.ViaPush, c.PushFrames, c.ViaSync)
	case "reconnect":
		row("sent / acked", "%d / %d", c.Sent, c.Acked)
		row("delivered", "%d of %d promised  (%d by push, %d by sync)", c.Delivered, c.Expected, c.ViaPush, c.ViaSync)
	}
	if g := rep.Group; g != nil {
		row("group", "%d members, %d online, %d senders", g.Members, g.Online, g.Senders)
	}
	if id := rep.Idle; id != nil {
		row("streams", "%d/%d opened over %d TCP connections in %.1fs: %.0f stream auths/s", id.Opened, id.Conns, id.Connections, id.OpenSeconds, id.AuthPerSec)
		if id.OpenError != "" {
			row("open stopped", "%s", id.OpenError)
		}
		row("held", "%d still open at the end; %d pongs", id.Held, c.Pongs)
		if id.RSSOpen > 0 {
			row("server RSS", "%s before, %s open, %s at the end: %.1f KiB per stream", mib(id.RSSBefore), mib(id.RSSOpen), mib(id.RSSEnd), id.BytesPerConn/1024)
		}
		if id.CPUPerConnectUs > 0 {
			row("server cpu/connect", "%.0f µs per stream opened (connection, token check, register, catch-up)", id.CPUPerConnectUs)
		}
	}
	if r := rep.Reconnect; r != nil {
		row("storm", "%d/%d clients back; all welcomed in %.2fs (%.0f stream auths/s), all resynced in %.2fs", r.Reconnected, r.Clients, r.AllWelcomedSec, r.AuthPerSec, r.AllSyncedSec)
		if r.CPUPerReconnectUs > 0 {
			row("server cpu/reconnect", "%.0f µs per client back (connection, stream, and the Syncs of what it missed)", r.CPUPerReconnectUs)
		}
	}
	row("pull", "%d notifies (%d stale), %d syncs", c.Notifies, c.StaleNotifies, c.Syncs)
	if c.MarkReads > 0 || c.Receipts > 0 {
		row("read", "%d MarkRead frames sent, %d Receipt frames received", c.MarkReads, c.Receipts)
	}
	row("errors", "%d sends refused, %d other error frames, %d disconnects, %d reconnects, %d resent", c.SendErrors, c.FrameErrors, c.Disconnects, c.Reconnects, c.Resent)
	writeServers(row, rep)
	row("bench cpu", "%.1fs (%.0f%% of a core)", rep.Client.CPUSeconds, rep.Client.CPUPercent)
	writeRedis(row, rep.Redis)
	tw.Flush()
	writeTargets(w, rep.Targets)

	if len(rep.Latency) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\t")
		names := make([]string, 0, len(rep.Latency))
		for n := range rep.Latency {
			names = append(names, n)
		}
		sort.Strings(names)
		latencyRow := func(name string, p Percentiles) {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
		}
		for _, n := range names {
			latencyRow(n, rep.Latency[n])
			if n != "send_push" || len(rep.Targets) < 2 {
				continue
			}
			// With one target every delivery is same-node: the
			// split would only repeat send_push.
			for _, class := range []int{sameNode, crossNode} {
				if p, ok := rep.PushByNode[className(class)]; ok {
					latencyRow("send_push "+strings.ReplaceAll(className(class), "_", "-"), p)
				}
			}
		}
		tw.Flush()
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	ck := rep.Check
	verdict := "OK"
	if !ck.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "\ndelivery check: %s — %d acked messages; %d lost, %d duplicated, %d altered; %d gaps repaired, %d redundant, %d unverified\n",
		verdict, ck.Acked, ck.Lost, ck.Duplicates, ck.Altered, ck.Gaps, ck.Redundant, ck.Unverified)
	for _, p := range ck.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

// writeServers prints the servers' CPU and memory: their sum (the one
// server's figures with one pid), each pid's with several, and CPU per
// message.
func writeServers(row func(k, format string, args ...any), rep *Report) {
	s := rep.Server
	if s == nil {
		return
	}
	what := "server cpu"
	if len(rep.Servers) > 1 {
		what = fmt.Sprintf("server cpu (%d pids)", len(rep.Servers))
	}
	row(what, "%.1fs (%.0f%% of a core); RSS %s → %s", s.CPUSeconds, s.CPUPercent, mib(s.RSSBefore), mib(s.RSSAfter))
	if len(rep.Servers) > 1 {
		for _, p := range rep.Servers {
			row(fmt.Sprintf("  pid %d", p.PID), "%.1fs (%.0f%% of a core); RSS %s → %s", p.CPUSeconds, p.CPUPercent, mib(p.RSSBefore), mib(p.RSSAfter))
		}
	}
	if s.CPUPerAckedUs > 0 {
		row("server cpu/msg", "%.0f µs per acked message, %.0f µs per delivery", s.CPUPerAckedUs, s.CPUPerDeliveredUs)
	}
}

// writeRedis prints what Redis did in the window, per acked message.
func writeRedis(row func(k, format string, args ...any), r *RedisReport) {
	if r == nil {
		return
	}
	row("redis commands", "%d (%.3g per acked message)", r.Commands, r.CommandsPerAcked)
	for _, c := range r.Top {
		row("  "+c.Name, "%d (%.3g per acked message)", c.Calls, c.PerAcked)
	}
	row("redis cpu", "%.2fs (%.1f µs per acked message)", r.CPUSeconds, r.CPUPerAckedUs)
}

// writeTargets prints what the devices of each target did, when there
// are several.
func writeTargets(w io.Writer, targets []TargetReport) {
	if len(targets) < 2 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tdevices\tsenders\tconnected\tsent\tacked\tdelivered\tby push\tpush frames\tby sync\t")
	for _, t := range targets {
		fmt.Fprintf(tw, "#%d %s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			t.Slot, t.Addr, t.Devices, t.Senders, t.Connected, t.Sent, t.Acked, t.Delivered, t.ViaPush, t.PushFrames, t.ViaSync)
	}
	tw.Flush()
}

// perMessage is x per message, 0 when there were none (omitted from
// JSON rather than infinite).
func perMessage(x float64, messages int64) float64 {
	if messages <= 0 {
		return 0
	}
	return x / float64(messages)
}

func mib(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
