package main

import (
	"context"
	"time"
)

// runC2C: P pairs; each sender sends to its own receiver for --duration,
// at --rate or as fast as its window allows. Receivers ack every push
// (not with --no-ack) and pull on Notify. Measures send→SendAck and send→Push latency and
// delivered messages/s.
func runC2C(ctx context.Context, e *env) (*Report, error) {
	p := e.cfg.Pairs
	rep := e.newReport()
	setupStart := time.Now()
	accts, err := e.setupUsers(ctx, "u", 2*p, 2*p)
	if err != nil {
		return nil, err
	}
	senders, receivers := make([]*device, p), make([]*device, p)
	for i := range p {
		sn, rn := pairTargets(i, len(e.cfg.Targets), e.cfg.Split)
		senders[i] = e.newDevice(i, accts[i], sn)
		receivers[i] = e.newDevice(p+i, accts[p+i], rn)
		e.check.expect(c2cConversation(accts[i].UserID, accts[p+i].UserID), receivers[i].recv)
	}
	// Receivers first: they are online before anything is sent to them.
	all := append(append([]*device{}, receivers...), senders...)
	e.startHeartbeats(all)
	if _, err := e.connectAll(ctx, all, "c2c", false); err != nil {
		return nil, err
	}
	rep.SetupUsers, rep.SetupSeconds = 2*p, time.Since(setupStart).Seconds()
	e.superviseAll(all)

	w := e.begin()
	stopLive := e.progress(e.liveLine("c2c"))
	e.sendAll(senders, func(i int) target { return target{user: receivers[i].acct.UserID} })
	w.finish(e)
	e.drain(ctx, senders)
	stopLive()
	w.fill(e, rep)
	return rep, nil
}

// sendAll runs every sender's loop for --duration and returns when all
// have stopped. With a rate, senders start spread over one interval, so
// they do not send in lockstep.
func (e *env) sendAll(senders []*device, to func(i int) target) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Duration)
	defer cancel()
	var interval time.Duration
	if e.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / e.cfg.Rate)
	}
	done := make(chan struct{}, len(senders))
	for i, d := range senders {
		d.ns.senders.Add(1)
		phase := interval * time.Duration(i) / time.Duration(len(senders))
		e.wg.Go(func() {
			defer func() { done <- struct{}{} }()
			d.sendLoop(ctx, to(i), e.cfg.Rate, phase)
		})
	}
	for range senders {
		<-done
	}
}

// c2cConversation is the id of the one-to-one conversation of two users,
// as the API documents it: "c2c:<smaller uid>:<larger uid>".
func c2cConversation(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "c2c:" + a + ":" + b
}

// newReport starts a report with what is known before the run.
func (e *env) newReport() *Report {
	return &Report{Scenario: e.cfg.Scenario, Target: e.cfg.Target, StartedAt: time.Now(), Config: e.cfg}
}
