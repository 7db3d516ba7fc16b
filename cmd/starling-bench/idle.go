package main

import (
	"context"
	"fmt"
	"time"
)

// runIdle: open --conns authenticated streams (one user and, by default,
// one TCP connection each, like phones), hold them for --duration with
// heartbeats, and report the server's memory per connection and how fast
// streams were authenticated while opening. Streams the server ends are
// not reopened: they count as not held.
func runIdle(ctx context.Context, e *env) (*Report, error) {
	n := e.cfg.Conns
	rep := e.newReport()
	setupStart := time.Now()
	accts, err := e.setupUsers(ctx, "i", n, n)
	if err != nil {
		return nil, err
	}
	devs := make([]*device, n)
	for i := range devs {
		devs[i] = e.newDevice(i, accts[i], roundRobin(i, len(e.cfg.Targets)))
	}
	rep.SetupUsers, rep.SetupSeconds = n, time.Since(setupStart).Seconds()
	idle := &IdleReport{Conns: n}
	rep.Idle = idle

	rssBefore := e.serverRSS()
	e.startHeartbeats(devs)
	openStart := time.Now()
	cpuBefore, errBefore := e.serverCPU()
	opened, err := e.connectAll(ctx, devs, "idle", true)
	if cpuAfter, errAfter := e.serverCPU(); len(e.cfg.ServerPIDs) > 0 && errBefore == nil && errAfter == nil && opened > 0 {
		idle.CPUPerConnectUs = float64((cpuAfter.CPU - cpuBefore.CPU).Microseconds()) / float64(opened)
	}
	idle.OpenSeconds = time.Since(openStart).Seconds()
	idle.Opened = opened
	idle.AuthPerSec = float64(opened) / idle.OpenSeconds
	idle.Connections = totalSize(e.conns)
	if err != nil {
		idle.OpenError = err.Error()
	}
	if opened == 0 {
		return nil, fmt.Errorf("no stream opened: %w", err)
	}
	// Let the server finish what opening started (goroutines, buffers)
	// before reading its memory.
	sleepCtx(ctx, time.Second)
	if rssBefore > 0 {
		// Reading /proc may fail when the bench itself ran out of file
		// descriptors opening streams; then there is no figure.
		idle.RSSBefore, idle.RSSOpen = rssBefore, e.serverRSS()
		if idle.RSSOpen > 0 {
			idle.BytesPerConn = float64(idle.RSSOpen-idle.RSSBefore) / float64(opened)
		}
	}

	live := devs[:0:0]
	for _, d := range devs {
		if d.live() {
			live = append(live, d)
		}
	}
	w := e.begin()
	stopLive := e.progress(func(el time.Duration) string {
		held := 0
		for _, d := range live {
			if d.live() {
				held++
			}
		}
		return fmt.Sprintf("idle %3.0fs  held %d/%d streams  pongs %d  disconnects %d", el.Seconds(), held, n, e.c.pongs.Load(), e.c.disconnects.Load())
	})
	sleepCtx(ctx, e.cfg.Duration)
	stopLive()
	w.finish(e)
	w.fill(e, rep)
	for _, d := range live {
		if d.live() {
			idle.Held++
		}
	}
	idle.RSSEnd = e.serverRSS()
	return rep, nil
}

// serverRSS is the servers' resident memory, summed over --server-pid; 0
// without it or when one cannot be read.
func (e *env) serverRSS() int64 {
	var total int64
	for _, pid := range e.cfg.ServerPIDs {
		rss, err := readRSS(pid)
		if err != nil {
			e.note("server memory: " + err.Error())
			return 0
		}
		total += rss
	}
	return total
}

// live reports whether the device's stream is open.
func (d *device) live() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sess != nil && !d.sess.ended()
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
