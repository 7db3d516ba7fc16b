package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runReconnect: --clients clients are connected and each gets one message
// (so each has a conversation and a cursor); then all drop at once, their
// connections closed, and --senders users send each of them --messages
// messages; then all reconnect at once. Measures the time until every
// client has its Welcome and until every one has pulled all it missed, and
// checks that none of it was lost or repeated.
func runReconnect(ctx context.Context, e *env) (*Report, error) {
	n, ns, m := e.cfg.Clients, e.cfg.Senders, e.cfg.Messages
	rep := e.newReport()
	setupStart := time.Now()
	caccts, err := e.setupUsers(ctx, "c", n, n)
	if err != nil {
		return nil, err
	}
	saccts, err := e.setupUsers(ctx, "s", ns, ns)
	if err != nil {
		return nil, err
	}
	// Senders get connections of their own, which the storm leaves alone.
	spools, err := newPools(ctx, e.cfg, e.cfg.Targets, false)
	if err != nil {
		return nil, err
	}
	e.pools = append(e.pools, spools...)
	nt := len(e.cfg.Targets)
	clients, senders := make([]*device, n), make([]*device, ns)
	for i := range senders {
		senders[i] = e.newDeviceOn(spools, n+i, saccts[i], roundRobin(i, nt))
		senders[i].ns.senders.Add(1)
	}
	convs := make([]string, n)
	for i := range clients {
		clients[i] = e.newDevice(i, caccts[i], roundRobin(i, nt))
		convs[i] = c2cConversation(caccts[i].UserID, saccts[i%ns].UserID)
		e.check.expect(convs[i], clients[i].recv)
	}
	all := append(append([]*device{}, clients...), senders...)
	e.startHeartbeats(all)
	if _, err := e.connectAll(ctx, all, "reconnect", false); err != nil {
		return nil, err
	}
	rep.SetupUsers, rep.SetupSeconds = n+ns, time.Since(setupStart).Seconds()
	e.superviseAll(senders)

	// Warm up: one message each, delivered and acknowledged.
	if err := e.sendRounds(ctx, senders, clients, 1, "warm-up"); err != nil {
		return nil, err
	}
	if !e.drain(ctx, senders) {
		return nil, fmt.Errorf("warm-up messages were not all delivered within %v", e.cfg.Timeout)
	}

	// Everyone drops at once: streams cancelled, TCP connections closed.
	var wg sync.WaitGroup
	for _, d := range clients {
		wg.Go(d.drop)
	}
	wg.Wait()
	if err := closePools(e.conns); err != nil {
		e.note("close client connections: " + err.Error())
	}
	if err := e.sendRounds(ctx, senders, clients, m, "while away"); err != nil {
		return nil, err
	}
	if !e.drainSends(ctx, senders) {
		return nil, fmt.Errorf("sends to the absent clients were not all acknowledged within %v", e.cfg.Timeout)
	}

	// The storm.
	rc := &ReconnectReport{Clients: n, Messages: m}
	rep.Reconnect = rc
	resync := newLatency()
	w := e.begin()
	t0 := e.now()
	var back, synced atomic.Int64
	stopLive := e.progress(func(el time.Duration) string {
		return fmt.Sprintf("storm %4.1fs  welcomed %d/%d  resynced %d/%d  syncs %d", el.Seconds(), back.Load(), n, synced.Load(), n, e.c.syncs.Load())
	})
	deadline := time.Now().Add(e.cfg.Timeout)
	stormCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var lastWelcome atomic.Int64
	wg.Go(func() { e.watchResync(stormCtx, clients, convs, t0, resync, &synced) })
	_ = parallel(stormCtx, n, e.cfg.DialConcurrency, func(ctx context.Context, i int) error {
		if e.reconnect(ctx, clients[i]) {
			back.Add(1)
			at := clients[i].welcomeAt.Load()
			for {
				cur := lastWelcome.Load()
				if at <= cur || lastWelcome.CompareAndSwap(cur, at) {
					break
				}
			}
		}
		return nil
	})
	wg.Wait()
	stopLive()
	w.finish(e)
	w.fill(e, rep)

	rc.Reconnected = int(back.Load())
	rc.Complete = rc.Reconnected == n && synced.Load() == int64(n)
	rc.AllWelcomedSec = (time.Duration(lastWelcome.Load()) - t0).Seconds()
	rc.AllSyncedSec = float64(resync.merged().Max()) / 1e6 // recorded in µs
	rc.AuthPerSec = float64(rc.Reconnected) / rc.AllWelcomedSec
	if rep.Server != nil && rc.Reconnected > 0 {
		rc.CPUPerReconnectUs = rep.Server.CPUSeconds * 1e6 / float64(rc.Reconnected)
	}
	rep.Latency = map[string]Percentiles{"resync": summarize(resync.merged())}
	if !rc.Complete {
		e.note(fmt.Sprintf("storm incomplete after %v: %d/%d welcomed, %d/%d resynced", e.cfg.Timeout, rc.Reconnected, n, synced.Load(), n))
	}
	return rep, nil
}

// sendRounds has each sender send rounds messages to each of its clients
// (client i belongs to sender i mod len(senders)), as fast as its window
// allows.
func (e *env) sendRounds(ctx context.Context, senders, clients []*device, rounds int, what string) error {
	var sent atomic.Int64
	total := int64(rounds * len(clients))
	stop := e.progress(func(el time.Duration) string {
		return fmt.Sprintf("sending %s: %d/%d", what, sent.Load(), total)
	})
	defer stop()
	return parallel(ctx, len(senders), 0, func(ctx context.Context, s int) error {
		d := senders[s]
		for r := range rounds {
			for i := s; i < len(clients); i += len(senders) {
				select {
				case <-d.slots:
				case <-ctx.Done():
					return fmt.Errorf("send %s (round %d): %w", what, r, ctx.Err())
				}
				d.send(target{user: clients[i].acct.UserID}, e.now())
				sent.Add(1)
			}
		}
		return nil
	})
}

// drainSends waits until every send of devs is acknowledged, at most
// --timeout.
func (e *env) drainSends(ctx context.Context, devs []*device) bool {
	deadline := time.Now().Add(e.cfg.Timeout)
	for time.Now().Before(deadline) {
		unacked := 0
		for _, d := range devs {
			unacked += d.inflight()
		}
		if unacked == 0 {
			return true
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	return false
}

// reconnect reopens d's stream on a new connection, retrying until ctx
// ends, as a phone whose network came back; it reports success.
func (e *env) reconnect(ctx context.Context, d *device) bool {
	for backoff := 50 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, time.Second) {
		cc, err := d.pool.conn(d.slot)
		if err == nil {
			err = d.connect(e.ctx, cc)
		}
		if err == nil {
			return true
		}
		e.note("storm connect failed: " + err.Error())
		sleepCtx(ctx, backoff)
	}
	return false
}

// watchResync records, for each client, when it first has every message
// acknowledged for its conversation, until all have or ctx ends.
func (e *env) watchResync(ctx context.Context, clients []*device, convs []string, t0 time.Duration, h *latency, synced *atomic.Int64) {
	waiting := make([]int, len(clients))
	for i := range waiting {
		waiting[i] = i
	}
	targets := make([]int64, len(clients))
	for i, conv := range convs {
		targets[i] = e.check.maxSeq(conv)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(waiting) > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		now := e.now()
		rest := waiting[:0]
		for _, i := range waiting {
			if clients[i].recv.last(convs[i]) >= targets[i] && clients[i].live() {
				h.record(i, now-t0)
				synced.Add(1)
				continue
			}
			rest = append(rest, i)
		}
		waiting = rest
	}
}
