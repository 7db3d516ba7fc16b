package main

import (
	"context"
	"time"
)

// runGroup: one group of --members users, the first --online fraction of
// them connected, the first --senders of those sending to the group.
// Measures fan-out (deliveries/s over every online member) and
// send→push latency across all receivers.
func runGroup(ctx context.Context, e *env) (*Report, error) {
	m, online, s := e.cfg.Members, e.cfg.onlineMembers(), e.cfg.Senders
	rep := e.newReport()
	setupStart := time.Now()
	accts, err := e.setupUsers(ctx, "m", m, online)
	if err != nil {
		return nil, err
	}
	gid, err := e.createGroup(ctx, accts[0], accts)
	if err != nil {
		return nil, err
	}
	conv := "grp:" + gid
	devs := make([]*device, online)
	for i := range devs {
		devs[i] = e.newDevice(i, accts[i], roundRobin(i, len(e.cfg.Targets)))
		e.check.expect(conv, devs[i].recv)
	}
	e.startHeartbeats(devs)
	if _, err := e.connectAll(ctx, devs, "group", false); err != nil {
		return nil, err
	}
	rep.SetupUsers, rep.SetupSeconds = m, time.Since(setupStart).Seconds()
	rep.Group = &GroupReport{GroupID: gid, Members: m, Online: online, Senders: s}
	e.superviseAll(devs)

	w := e.begin()
	stopLive := e.progress(e.liveLine("group"))
	e.sendAll(devs[:s], func(int) target { return target{group: gid} })
	w.finish(e)
	e.drain(ctx, devs[:s])
	stopLive()
	w.fill(e, rep)
	return rep, nil
}
