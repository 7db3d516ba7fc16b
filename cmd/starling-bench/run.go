package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// env is one run: its configuration, connections, counters, histograms
// and checker, and every goroutine it starts (in wg).
type env struct {
	cfg   config
	log   *slog.Logger
	out   io.Writer // progress and live lines
	tty   bool      // out is a terminal: redraw one line instead of printing many
	runID string    // prefix of every user name and client_msg_id of this run
	base  time.Time // zero of the send timestamps in message content
	text  string    // message text

	heartbeat atomic.Int64 // heartbeat interval from the latest Welcome, in ns

	ctx    context.Context // ends when the run is over: every stream and loop stops
	cancel context.CancelFunc
	wg     sync.WaitGroup

	setup []*pool // Register/Login/CreateGroup calls, a pool per target slot
	conns []*pool // the devices' streams, a pool per target slot
	pools []*pool // every pool, closed at the end

	nodes []*nodeStats // per target slot
	redis *redisStats  // with --redis

	c   counters
	lat struct {
		ack, push, sync *latency
		pushByNode      *nodeLatency
	}
	check *checker

	notesMu sync.Mutex
	notes   map[string]int64 // distinct errors and events, counted
}

// run runs the configured scenario and returns its report. An error means
// the run could not be carried out (setup failed, server unreachable); a
// delivery failure is in the report's Check instead.
func run(ctx context.Context, cfg config, stderr io.Writer, log *slog.Logger) (*Report, error) {
	e, err := newEnv(ctx, cfg, stderr, log)
	if err != nil {
		return nil, err
	}
	scenario := map[string]func(context.Context, *env) (*Report, error){
		"c2c":       runC2C,
		"group":     runGroup,
		"idle":      runIdle,
		"reconnect": runReconnect,
	}[cfg.Scenario]
	rep, err := scenario(ctx, e)
	// Stop everything before verifying: the receivers must not change
	// while the checker reads them.
	if cerr := e.stop(); cerr != nil {
		log.Warn("closing connections", "err", cerr)
	}
	if err != nil {
		return nil, err
	}
	e.fill(rep)
	return rep, nil
}

func newEnv(ctx context.Context, cfg config, out io.Writer, log *slog.Logger) (*env, error) {
	e := &env{
		cfg:   cfg,
		log:   log,
		out:   out,
		tty:   isTerminal(out),
		runID: newRunID(),
		base:  time.Now(),
		text:  strings.Repeat("x", cfg.Payload),
		check: newChecker(),
		notes: make(map[string]int64),
	}
	e.lat.ack, e.lat.push, e.lat.sync = newLatency(), newLatency(), newLatency()
	e.lat.pushByNode = newNodeLatency(cfg.Targets)
	for range cfg.Targets {
		e.nodes = append(e.nodes, &nodeStats{})
	}
	var err error
	setupCfg := cfg
	setupCfg.StreamsPerConn, setupCfg.SourceAddrs = 1, 1
	if e.setup, err = newPools(ctx, setupCfg, cfg.Targets, false); err != nil {
		return nil, err
	}
	if e.conns, err = newPools(ctx, cfg, cfg.Targets, cfg.Scenario == "idle" || cfg.Scenario == "reconnect"); err != nil {
		return nil, err
	}
	e.pools = append(slices.Clone(e.setup), e.conns...)
	if cfg.Redis != "" {
		if e.redis, err = newRedisStats(ctx, cfg.Redis, cfg.Timeout); err != nil {
			return nil, err
		}
	}
	e.ctx, e.cancel = context.WithCancel(ctx)
	return e, nil
}

// stop ends every stream and loop of the run, waits for their goroutines
// and closes the connections.
func (e *env) stop() error {
	e.cancel()
	e.wg.Wait()
	errs := []error{closePools(e.pools)}
	if e.redis != nil {
		errs = append(errs, e.redis.close())
	}
	return errors.Join(errs...)
}

// now is the time since the run's base: what send timestamps hold.
func (e *env) now() time.Duration { return time.Since(e.base) }

// note counts an error or event by its text, for the report.
func (e *env) note(msg string) {
	e.notesMu.Lock()
	defer e.notesMu.Unlock()
	if _, ok := e.notes[msg]; !ok && len(e.notes) >= 50 {
		msg = "(other)"
	}
	e.notes[msg]++
	if e.notes[msg] == 1 {
		e.log.Debug("event", "what", msg)
	}
}

func newRunID() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	rand.Read(b) // crypto/rand.Read never fails on supported platforms
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	b[0] = 'b' // usernames must start with a letter in some validators
	return string(b)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress prints line(elapsed) every second (redrawn in place on a
// terminal) until the returned stop is called, which prints it a last
// time.
func (e *env) progress(line func(elapsed time.Duration) string) (stop func()) {
	if e.cfg.Quiet {
		return func() {}
	}
	start := time.Now()
	done, finished := make(chan struct{}), make(chan struct{})
	every := time.Second
	if e.tty {
		every = 250 * time.Millisecond
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				e.printLine(line(time.Since(start)), true)
				return
			case <-t.C:
				e.printLine(line(time.Since(start)), false)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

func (e *env) printLine(s string, final bool) {
	switch {
	case !e.tty:
		fmt.Fprintln(e.out, s)
	case final:
		fmt.Fprintf(e.out, "\r\033[K%s\n", s)
	default:
		fmt.Fprintf(e.out, "\r\033[K%s", s)
	}
}

// connectAll opens the devices' streams, --dial-concurrency at a time,
// with a progress line. With tolerate, failures are counted rather than
// fatal (the idle scenario reports how far it got), and opening stops
// after 100 failures in a row. It returns how many streams opened and the
// first error.
func (e *env) connectAll(ctx context.Context, devs []*device, what string, tolerate bool) (int, error) {
	var opened, failed, streak atomic.Int64
	stop := e.progress(func(el time.Duration) string {
		o := opened.Load()
		line := fmt.Sprintf("connecting %s: %d/%d streams (%.0f/s)", what, o, len(devs), float64(o)/el.Seconds())
		if f := failed.Load(); f > 0 {
			line += fmt.Sprintf(", %d failed", f)
		}
		return line
	})
	defer stop()
	var firstErr atomic.Pointer[error]
	err := parallel(ctx, len(devs), e.cfg.DialConcurrency, func(ctx context.Context, i int) error {
		d := devs[i]
		cc, err := d.pool.conn(d.slot)
		if err == nil {
			// The stream lives as long as the run, not this call.
			err = d.connect(e.ctx, cc)
		}
		if err == nil {
			opened.Add(1)
			d.ns.connected.Add(1)
			streak.Store(0)
			return nil
		}
		firstErr.CompareAndSwap(nil, &err)
		if !tolerate {
			return err
		}
		failed.Add(1)
		e.note("connect: " + status.Code(err).String())
		if streak.Add(1) >= 100 {
			return fmt.Errorf("100 streams in a row failed to open: %w", err)
		}
		return nil
	})
	if p := firstErr.Load(); p != nil && err == nil {
		err = *p
	}
	return int(opened.Load()), err
}

// startHeartbeats pings every device with an open stream once per
// heartbeat interval (as announced in Welcome), spread evenly over the
// interval, from one goroutine: a phone pings on its own timer, and a
// thousand timers firing in step would be a burst no phone population
// makes. Start it before opening streams: opening many can take longer
// than the server's idle timeout (three intervals).
func (e *env) startHeartbeats(devs []*device) {
	if len(devs) == 0 {
		return
	}
	const step = 10 * time.Millisecond
	e.wg.Go(func() {
		t := time.NewTicker(step)
		defer t.Stop()
		owed := 0.0
		for i := 0; ; {
			select {
			case <-t.C:
			case <-e.ctx.Done():
				return
			}
			interval := time.Duration(e.heartbeat.Load())
			if interval <= 0 {
				interval = 30 * time.Second // until a Welcome says
			}
			// Pings due per step, often below 1.
			for owed += float64(len(devs)) * float64(step) / float64(interval); owed >= 1; owed-- {
				devs[i%len(devs)].ping()
				i++
			}
		}
	})
}

// superviseAll keeps every device's stream open until the run ends.
func (e *env) superviseAll(devs []*device) {
	for _, d := range devs {
		e.wg.Go(func() { d.supervise(e.ctx) })
	}
}

// drain waits until every send of devs is acknowledged and every promised
// delivery has arrived, at most --timeout; it reports whether it got
// there. What is still missing then is a loss the checker reports.
func (e *env) drain(ctx context.Context, devs []*device) bool {
	deadline := time.Now().Add(e.cfg.Timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var unacked int
		for _, d := range devs {
			unacked += d.inflight()
		}
		missing := e.check.missing()
		if unacked == 0 && missing == 0 {
			return true
		}
		if time.Now().After(deadline) {
			e.note(fmt.Sprintf("drain gave up after %v: %d sends unacknowledged, %d deliveries missing", e.cfg.Timeout, unacked, missing))
			return false
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
}

// window is the measured part of a run: rates and CPU are over it.
type window struct {
	start, end   time.Time
	acked, deliv [2]int64
	self         [2]time.Duration
	srv          [2][]procSample // per --server-pid
	srvErr       error
	redis        [2]redisSample // with --redis
	redisErr     error
}

// begin starts the measured window.
func (e *env) begin() *window {
	w := &window{start: time.Now()}
	w.sample(e, 0)
	return w
}

// finish ends the measured window.
func (w *window) finish(e *env) {
	w.end = time.Now()
	w.sample(e, 1)
}

// sample reads the counters at the window's start (i = 0) or end (1). A
// failed server or Redis sample is kept: the report then leaves that
// section out, with a note.
func (w *window) sample(e *env, i int) {
	w.acked[i], w.deliv[i] = e.c.acked.Load(), e.c.delivered.Load()
	w.self[i] = selfCPU()
	if len(e.cfg.ServerPIDs) > 0 && w.srvErr == nil {
		w.srv[i], w.srvErr = readProcs(e.cfg.ServerPIDs)
	}
	if e.redis != nil && w.redisErr == nil {
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Timeout)
		w.redis[i], w.redisErr = e.redis.sample(ctx)
		cancel()
	}
}

// fill writes the window's rates, CPU and Redis figures into rep.
func (w *window) fill(e *env, rep *Report) {
	secs := w.end.Sub(w.start).Seconds()
	acked, deliv := w.acked[1]-w.acked[0], w.deliv[1]-w.deliv[0]
	rep.Seconds = secs
	rep.AckedPerSec = float64(acked) / secs
	rep.DeliveredPerSec = float64(deliv) / secs
	cpu := (w.self[1] - w.self[0]).Seconds()
	rep.Client = ProcReport{CPUSeconds: cpu, CPUPercent: 100 * cpu / secs}
	switch {
	case len(e.cfg.ServerPIDs) == 0:
	case w.srvErr != nil:
		e.note("server stats: " + w.srvErr.Error())
	default:
		rep.Servers, rep.Server = serverReports(e.cfg.ServerPIDs, w.srv[0], w.srv[1], secs, acked, deliv)
	}
	switch {
	case e.redis == nil:
	case w.redisErr != nil:
		e.note("redis stats: " + w.redisErr.Error())
	default:
		rep.Redis = redisReport(w.redis[0], w.redis[1], acked)
	}
}

// liveLine returns the once-a-second line of a sending run: rates over the
// last second, latency percentiles of the last second, trouble counters.
func (e *env) liveLine(what string) func(time.Duration) string {
	var sent, acked, deliv rateMeter
	now := time.Now()
	sent.rate(now, e.c.sent.Load())
	acked.rate(now, e.c.acked.Load())
	deliv.rate(now, e.c.delivered.Load())
	srv, _ := e.serverCPU()
	self := selfCPU()
	return func(el time.Duration) string {
		now := time.Now()
		ack, push := summarize(e.lat.ack.takeWindow()), summarize(e.lat.push.takeWindow())
		line := fmt.Sprintf("%s %3.0fs  sent %6.0f/s  acked %6.0f/s  delivered %7.0f/s  ack p50/p99 %s/%s  push p50/p99 %s/%s  notify %d  err %d",
			what, el.Seconds(),
			sent.rate(now, e.c.sent.Load()), acked.rate(now, e.c.acked.Load()), deliv.rate(now, e.c.delivered.Load()),
			fmtMS(ack.P50), fmtMS(ack.P99), fmtMS(push.P50), fmtMS(push.P99),
			e.c.notifies.Load(), e.c.sendErrors.Load()+e.c.frameErrors.Load())
		line += e.cpuLine(now, &srv, &self)
		return line
	}
}

// serverCPU samples the servers of --server-pid as one: their summed CPU
// time and memory.
func (e *env) serverCPU() (procSample, error) {
	if len(e.cfg.ServerPIDs) == 0 {
		return procSample{}, nil
	}
	s, err := readProcs(e.cfg.ServerPIDs)
	return sumProcs(s), err
}

// cpuLine is the live CPU use of the servers (with --server-pid; all of
// them together) and of the bench since the previous call, in % of one
// core.
func (e *env) cpuLine(now time.Time, srv *procSample, self *time.Duration) string {
	s := selfCPU()
	dt := now.Sub(srv.At).Seconds()
	line := ""
	if len(e.cfg.ServerPIDs) > 0 && !srv.At.IsZero() {
		if cur, err := e.serverCPU(); err == nil {
			line += fmt.Sprintf("  server cpu %3.0f%%", 100*(cur.CPU-srv.CPU).Seconds()/cur.At.Sub(srv.At).Seconds())
			*srv = cur
		}
	} else {
		srv.At = now
	}
	if dt > 0 {
		line += fmt.Sprintf("  bench cpu %3.0f%%", 100*(s-*self).Seconds()/dt)
	}
	*self = s
	return line
}

func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}

// fill completes rep with what every scenario reports: counters,
// latencies, notes and the delivery check.
func (e *env) fill(rep *Report) {
	c := &e.c
	rep.Counts = Counts{
		Sent:          c.sent.Load(),
		Resent:        c.resent.Load(),
		Acked:         c.acked.Load(),
		DuplicateAcks: c.dupAcks.Load(),
		SendErrors:    c.sendErrors.Load(),
		Expected:      c.expected.Load(),
		Delivered:     c.delivered.Load(),
		ViaPush:       c.viaPush.Load(),
		ViaSync:       c.viaSync.Load(),
		PushFrames:    c.pushFrames.Load(),
		Notifies:      c.notifies.Load(),
		StaleNotifies: c.staleNotifies.Load(),
		Syncs:         c.syncs.Load(),
		FrameErrors:   c.frameErrors.Load(),
		Pongs:         c.pongs.Load(),
		Welcomes:      c.welcomes.Load(),
		Disconnects:   c.disconnects.Load(),
		Reconnects:    c.reconnects.Load(),
		MarkReads:     c.markReads.Load(),
		Receipts:      c.receipts.Load(),
	}
	if rep.Latency == nil {
		rep.Latency = make(map[string]Percentiles)
	}
	lats := map[string]*latency{"send_ack": e.lat.ack, "send_push": e.lat.push, "send_sync": e.lat.sync}
	if rep.Scenario == "reconnect" {
		// Send→sync there is how long the clients were away.
		delete(lats, "send_sync")
	}
	for name, l := range lats {
		if p := summarize(l.merged()); p.Count > 0 {
			rep.Latency[name] = p
		}
	}
	if byNode := e.lat.pushByNode.summary(); len(byNode) > 0 {
		rep.PushByNode = byNode
	}
	rep.Placement = placement(rep.Scenario, len(e.cfg.Targets), e.cfg.Split)
	for i, ns := range e.nodes {
		rep.Targets = append(rep.Targets, ns.report(i, e.cfg.Targets[i]))
	}
	e.notesMu.Lock()
	keys := make([]string, 0, len(e.notes))
	for k := range e.notes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%dx %s", e.notes[k], k))
	}
	e.notesMu.Unlock()
	rep.Check = e.check.verify()
}
