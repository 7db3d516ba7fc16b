package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// The chaos scenario: the bench starts its own starlingd nodes, drives
// one-to-one and group traffic from devices (the Go client library: what
// an app sees is what its Messages channel yields) that reconnect to any
// live node, changes the group's membership while messages flow, injects
// faults on a schedule, then reads every conversation back, waits for the
// devices to catch up and judges the whole history (history.go).

// chaosFaults are the faults --faults may name.
var chaosFaults = []string{"kill", "term", "pause", "db", "redis", "net", "slow"}

// chaosConfig is the chaos scenario's part of the command line.
type chaosConfig struct {
	Nodes      int
	Starlingd  string
	DB         string
	Faults     []string
	History    string
	Users      int
	FaultEvery time.Duration
	Pause      time.Duration
	Check      string // a history file to judge instead of running
}

func (c *chaosConfig) addFlags(fs *flag.FlagSet, faults *string) {
	fs.IntVar(&c.Nodes, "nodes", 1, "chaos: starlingd nodes the bench starts (1: embedded SQLite; more need --db and --redis)")
	fs.StringVar(&c.Starlingd, "starlingd", "", "chaos: the starlingd binary (default: starlingd next to starling-bench, else on PATH)")
	fs.StringVar(&c.DB, "db", "", "chaos: postgres:// URL of the database the nodes share (through a proxy the bench owns, for the db fault)")
	fs.StringVar(faults, "faults", "kill,term", "chaos: faults to inject, comma-separated: "+strings.Join(chaosFaults, ", "))
	fs.StringVar(&c.History, "history", "", "chaos: write the history (JSON lines) to this file")
	fs.StringVar(&c.Check, "check-history", "", "chaos: judge the history in this file (written by --history) instead of running")
	fs.IntVar(&c.Users, "users", 8, "chaos: users (each with a device; the first has two); half of them come and go in the group")
	fs.DurationVar(&c.FaultEvery, "fault-every", 5*time.Second, "chaos: time between one fault's recovery and the next fault")
	fs.DurationVar(&c.Pause, "pause", 15*time.Second, "chaos: how long the pause fault keeps a node stopped (SIGSTOP), and the slow fault a device from reading")
}

func (c *chaosConfig) parse(faults string) error {
	for f := range strings.SplitSeq(faults, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !slices.Contains(chaosFaults, f) {
			return fmt.Errorf("--faults: unknown fault %q (want %s)", f, strings.Join(chaosFaults, ", "))
		}
		c.Faults = append(c.Faults, f)
	}
	return nil
}

func (c config) validateChaos() []string {
	var errs []string
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, msg)
		}
	}
	ch := c.Chaos
	check(ch.Nodes >= 1 && ch.Nodes <= 16, "--nodes must be 1-16")
	check(ch.Users >= 4 && ch.Users <= 1000, "--users must be 4-1000")
	check(ch.FaultEvery > 0, "--fault-every must be positive")
	check(ch.Pause > 0 && ch.Pause <= 10*time.Minute, "--pause must be in (0, 10m]")
	if ch.Nodes > 1 {
		check(strings.HasPrefix(ch.DB, "postgres://") || strings.HasPrefix(ch.DB, "postgresql://"), "--nodes > 1 needs --db postgres://…")
		check(c.Redis != "", "--nodes > 1 needs --redis redis://…")
	} else {
		check(ch.DB == "", "--db needs --nodes > 1 (one node runs on embedded SQLite)")
		for _, f := range []string{"db", "redis"} {
			check(!slices.Contains(ch.Faults, f), "--faults "+f+" needs --nodes > 1")
		}
	}
	return errs
}

// chaos is one run of the scenario.
type chaos struct {
	cfg   config
	log   *slog.Logger
	out   io.Writer // progress lines
	h     *history
	run   string // prefix of usernames and Redis keys
	nodes []*chaosNode
	front []*chaosProxy // client-side proxies, one per node (the net fault)
	db    *chaosProxy
	rdb   *redis.Client
	pfx   string // the nodes' Redis key prefix

	users []*chaosUser
	devs  []*chaosDev
	group string // group id
	owner *chaosUser

	schemes atomic.Int64 // resolver schemes handed out (dial)

	mu      sync.Mutex
	members map[string]bool // the group's members as the churn believes
}

type chaosUser struct {
	name, id string
	cl       *client.Client // the user's first device's client, for RPCs
}

type chaosDev struct {
	name  string
	paths []*chaosProxy // its own way to each node, to stall (the slow fault)
	user  *chaosUser
	cl    *client.Client
	s     *client.Session
	done  chan struct{} // closed when its reader has stopped
}

// runChaos runs the chaos scenario and returns the exit code.
func runChaos(ctx context.Context, cfg config, stdout, stderr io.Writer, log *slog.Logger) int {
	if cfg.Chaos.Check != "" {
		return checkHistoryFile(cfg.Chaos.Check, stdout, stderr)
	}
	c := &chaos{cfg: cfg, log: log, out: stderr, members: make(map[string]bool)}
	if cfg.Quiet {
		c.out = io.Discard
	}
	var hw io.Writer
	if cfg.Chaos.History != "" {
		f, err := os.Create(cfg.Chaos.History)
		if err != nil {
			fmt.Fprintf(stderr, "starling-bench: %v\n", err)
			return exitError
		}
		defer f.Close()
		hw = f
	}
	c.h = newHistory(hw)
	v, err := c.execute(ctx)
	if ferr := c.h.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "starling-bench: chaos: %v\n", err)
		return exitError
	}
	writeVerdict(stdout, v)
	if !v.OK {
		return exitCheckFailed
	}
	return exitOK
}

// checkHistoryFile judges a saved history: --check-history.
func checkHistoryFile(path string, stdout, stderr io.Writer) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "starling-bench: %v\n", err)
		return exitError
	}
	defer f.Close()
	evs, err := readHistory(f)
	if err != nil {
		fmt.Fprintf(stderr, "starling-bench: %s: %v\n", path, err)
		return exitError
	}
	v := checkHistory(evs)
	writeVerdict(stdout, v)
	if !v.OK {
		return exitCheckFailed
	}
	return exitOK
}

func (c *chaos) progress(format string, args ...any) {
	fmt.Fprintf(c.out, "chaos: "+format+"\n", args...)
}

func (c *chaos) execute(ctx context.Context) (verdict, error) {
	tmp, err := os.MkdirTemp("", "starling-chaos-")
	if err != nil {
		return verdict{}, err
	}
	defer c.cleanup(tmp)
	if err := c.startNodes(ctx, tmp); err != nil {
		return verdict{}, err
	}
	if err := c.setup(ctx); err != nil {
		return verdict{}, err
	}
	c.progress("%d nodes, %d users, %d devices; traffic for %v with faults %v", len(c.nodes), len(c.users), len(c.devs), c.cfg.Duration, c.cfg.Chaos.Faults)

	tctx, stop := context.WithTimeout(ctx, c.cfg.Duration)
	var wg sync.WaitGroup
	for _, d := range c.devs {
		wg.Go(func() { c.sendLoop(tctx, d) })
	}
	wg.Go(func() { c.churn(tctx) })
	wg.Go(func() { c.faultLoop(tctx) })
	<-tctx.Done()
	wg.Wait()
	stop()
	if ctx.Err() != nil {
		return verdict{}, ctx.Err()
	}
	// Every node must be serving before the end: the faults left none down.
	for _, n := range c.nodes {
		if err := n.ready(ctx, c.cfg.Timeout); err != nil {
			c.h.add(event{Kind: evFault, Op: "final check " + n.name, Err: err.Error()})
		}
	}
	c.progress("traffic stopped; reading every conversation back")
	stored, err := c.readBack(ctx)
	if err != nil {
		return verdict{}, err
	}
	c.catchUp(ctx, stored)
	for _, d := range c.devs {
		d.s.Close()
		<-d.done
	}
	for _, e := range stored {
		c.h.add(e)
	}
	for _, d := range c.devs {
		if d.s.Err() == nil || errors.Is(d.s.Err(), client.ErrClosed) {
			c.h.add(event{Kind: evSynced, Device: d.name})
		}
	}
	return checkHistory(c.h.snapshot()), nil
}

func (c *chaos) cleanup(tmp string) {
	for _, d := range c.devs {
		d.s.Close()
		d.cl.Close()
	}
	for _, u := range c.users {
		u.cl.Close()
	}
	for _, n := range c.nodes {
		_ = n.stop(syscall.SIGKILL, 10*time.Second)
	}
	for _, p := range c.front {
		p.close()
	}
	for _, d := range c.devs {
		for _, p := range d.paths {
			p.close()
		}
	}
	if c.db != nil {
		c.db.close()
	}
	if c.rdb != nil {
		c.flushRedis(context.Background())
		c.rdb.Close()
	}
	os.RemoveAll(tmp)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *chaos) startNodes(ctx context.Context, tmp string) error {
	ch := c.cfg.Chaos
	bin := ch.Starlingd
	if bin == "" {
		var err error
		if bin, err = findStarlingd(); err != nil {
			return err
		}
	}
	c.run = "chaos" + randomHex(3)
	common := []string{"--bcrypt-cost", "4", "--send-rate", "0", "--login-rate", "0", "--register-rate", "0", "--log-level", "warn"}
	if ch.Nodes > 1 {
		u, err := url.Parse(ch.DB)
		if err != nil {
			return fmt.Errorf("--db: %w", err)
		}
		if c.db, err = newChaosProxy(u.Host); err != nil {
			return err
		}
		u.Host = c.db.addr()
		opt, err := redis.ParseURL(c.cfg.Redis)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		c.rdb = redis.NewClient(opt)
		c.pfx = c.run + ":"
		common = append(common, "--db", u.String(), "--redis", c.cfg.Redis, "--redis-prefix", c.pfx, "--token-secret", randomHex(32))
	}
	for i := range ch.Nodes {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		n := &chaosNode{
			name: fmt.Sprintf("%s-%d", c.run, i), bin: bin, addr: addr,
			args: append(slices.Clone(common), "--data-dir", filepath.Join(tmp, fmt.Sprintf("node%d", i))),
			log:  filepath.Join(tmp, fmt.Sprintf("node%d.log", i)),
		}
		if err := n.start(); err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
		front, err := newChaosProxy(addr)
		if err != nil {
			return err
		}
		c.front = append(c.front, front)
		// The first node creates the schema; the others start after it.
		if err := n.ready(ctx, c.cfg.Timeout); err != nil {
			return logTail(err, n.log)
		}
	}
	return nil
}

// logTail adds the end of a node's log to err.
func logTail(err error, path string) error {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Errorf("%w\n%s", err, b)
}

// dial is a client whose connection tries every node, first node home,
// then the others in order: a device reconnects to any live node. With
// paths (one per node), it goes through them.
func (c *chaos) dial(home int, paths []*chaosProxy) (*client.Client, error) {
	addrs := make([]resolver.Address, len(c.front))
	for i := range c.front {
		j := (home + i) % len(c.front)
		addrs[i] = resolver.Address{Addr: c.front[j].addr()}
		if paths != nil {
			addrs[i].Addr = paths[j].addr()
		}
	}
	// A scheme per client: each has its own resolver with its own order.
	scheme := fmt.Sprintf("chaos%d", c.schemes.Add(1))
	r := manual.NewBuilderWithScheme(scheme)
	r.InitialState(resolver.State{Addresses: addrs})
	return client.Dial(scheme+":///nodes", client.WithDialOptions(grpc.WithResolvers(r)))
}

func (c *chaos) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	const password = "chaos-password"
	for i := range c.cfg.Chaos.Users {
		u := &chaosUser{name: fmt.Sprintf("%s_u%d", c.run, i)}
		cl, err := c.dial(i, nil)
		if err != nil {
			return err
		}
		u.cl = cl
		c.users = append(c.users, u)
		usr, err := cl.Register(ctx, u.name, password, "")
		if err != nil {
			return err
		}
		u.id = usr.GetUserId()
		if _, err := cl.Login(ctx, u.name, password, "rpc"); err != nil {
			return err
		}
		ndev := 1
		if i == 0 {
			ndev = 2 // one user with two devices: both must get everything
		}
		for j := range ndev {
			d := &chaosDev{name: fmt.Sprintf("u%d.d%d", i, j), user: u, done: make(chan struct{})}
			for _, f := range c.front {
				p, err := newChaosProxy(f.addr())
				if err != nil {
					return err
				}
				d.paths = append(d.paths, p)
			}
			if d.cl, err = c.dial(i+j, d.paths); err != nil {
				return err
			}
			if _, err := d.cl.Login(ctx, u.name, password, fmt.Sprintf("d%d", j)); err != nil {
				return err
			}
			c.devs = append(c.devs, d)
			c.h.add(event{Kind: evDevice, Device: d.name, User: u.id})
		}
	}
	c.owner = c.users[0]
	// The group: the first half of the users stay; the rest come and go.
	var initial []string
	for _, u := range c.users[1 : len(c.users)/2] {
		initial = append(initial, u.id)
	}
	g, err := c.owner.cl.CreateGroup(ctx, c.run, initial...)
	if err != nil {
		return err
	}
	c.group = g.GetGroupId()
	conv := client.GroupConversationID(c.group)
	for _, id := range append(initial, c.owner.id) {
		c.members[id] = true
		c.h.add(event{Kind: evMember, Conv: conv, User: id, Op: "join"})
	}
	for i, u := range c.users {
		peer := c.users[(i+1)%len(c.users)]
		conv := client.DirectConversationID(u.id, peer.id)
		c.h.add(event{Kind: evMember, Conv: conv, User: u.id, Op: "join"})
		c.h.add(event{Kind: evMember, Conv: conv, User: peer.id, Op: "join"})
	}
	for _, d := range c.devs {
		s, err := d.cl.Open(context.WithoutCancel(ctx), client.WithBackoff(50*time.Millisecond, time.Second), client.WithResyncInterval(5*time.Second))
		if err != nil {
			return fmt.Errorf("open %s: %w", d.name, err)
		}
		d.s = s
		go c.readLoop(d) // ends when the session closes Messages
	}
	return nil
}

// readLoop records every message the device's app is handed.
func (c *chaos) readLoop(d *chaosDev) {
	defer close(d.done)
	for {
		select {
		case m, ok := <-d.s.Messages():
			if !ok {
				return
			}
			c.h.add(event{Kind: evDeliver, Device: d.name, Conv: m.GetConversationId(), Seq: m.GetSeq(), MsgID: m.GetMsgId(), Sender: m.GetSenderId(), ClientMsgID: m.GetClientMsgId()})
		case <-d.s.Done():
			return
		}
	}
}

// sendLoop sends from d until ctx ends, alternating its one-to-one peer
// and the group, about --rate messages a second (10 by default).
func (c *chaos) sendLoop(ctx context.Context, d *chaosDev) {
	idx := slices.Index(c.users, d.user)
	peer := c.users[(idx+1)%len(c.users)]
	rate := c.cfg.Rate
	if rate <= 0 {
		rate = 10
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		to, conv := client.ToUser(peer.id), client.DirectConversationID(d.user.id, peer.id)
		if n%2 == 1 {
			to, conv = client.ToGroup(c.group), client.GroupConversationID(c.group)
		}
		c.sendOne(ctx, d, to, conv, fmt.Sprintf("%s-%s-%d", c.run, d.name, n), "")
	}
}

// sendOne sends one message from d (its text the client_msg_id, then
// pad) and records the send and its outcome.
func (c *chaos) sendOne(ctx context.Context, d *chaosDev, to client.Recipient, conv, cmid, pad string) {
	c.h.add(event{Kind: evInvoke, Device: d.name, Conv: conv, ClientMsgID: cmid})
	before := d.s.Welcome()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	ack, err := d.s.SendWithID(sctx, to, cmid, &starlingv1.Content{Type: "text", Text: cmid + pad})
	cancel()
	switch {
	case err == nil:
		c.h.add(event{Kind: evOK, Device: d.name, Conv: conv, ClientMsgID: cmid, Seq: ack.GetSeq(), MsgID: ack.GetMsgId()})
	case definite(err) && d.s.Welcome() == before:
		// Refused on the stream it was first written to: nothing stored.
		c.h.add(event{Kind: evFail, Device: d.name, Conv: conv, ClientMsgID: cmid, Err: err.Error()})
	default:
		// A refusal after a reconnect may answer a resend of a message
		// stored before it (a member kicked meanwhile): not definite.
		c.h.add(event{Kind: evUnknown, Device: d.name, Conv: conv, ClientMsgID: cmid, Err: err.Error()})
	}
}

// definite reports whether err is the server refusing a send (nothing
// stored) rather than a lost answer.
func definite(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.NotFound, codes.FailedPrecondition:
		return true
	}
	return false
}

// churn changes the group's membership while messages flow: the second
// half of the users are added, kicked and leave, about twice a second.
func (c *chaos) churn(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	movers := c.users[len(c.users)/2:]
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		u := movers[mrand.IntN(len(movers))]
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c.mu.Lock()
		member := c.members[u.id]
		c.mu.Unlock()
		var err error
		switch {
		case !member:
			_, err = c.owner.cl.AddMembers(rctx, c.group, u.id)
		case mrand.IntN(2) == 0:
			err = c.owner.cl.KickMember(rctx, c.group, u.id)
		default:
			err = u.cl.LeaveGroup(rctx, c.group)
		}
		if err == nil {
			c.mu.Lock()
			c.members[u.id] = !member
			c.mu.Unlock()
		} else if _, ids, gerr := c.owner.cl.GetGroup(rctx, c.group); gerr == nil {
			// The change's answer was lost (a fault): look again.
			c.mu.Lock()
			c.members[u.id] = slices.Contains(ids, u.id)
			c.mu.Unlock()
		}
		cancel()
	}
}

// faultLoop injects the faults in turn, each on a random node, waiting
// --fault-every between one's recovery and the next.
func (c *chaos) faultLoop(ctx context.Context) {
	if len(c.cfg.Chaos.Faults) == 0 {
		return
	}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.Chaos.FaultEvery):
		}
		f := c.cfg.Chaos.Faults[i%len(c.cfg.Chaos.Faults)]
		n := c.nodes[mrand.IntN(len(c.nodes))]
		op := f // db, redis and slow concern no node
		if f == "kill" || f == "term" || f == "pause" || f == "net" {
			op += " " + n.name
		}
		c.progress("fault: %s", op)
		c.h.add(event{Kind: evFault, Op: op})
		err := c.inject(context.WithoutCancel(ctx), f, n)
		ev := event{Kind: evFault, Op: "recovered"}
		if err != nil {
			ev.Err = fmt.Sprintf("%s: %v", op, err)
			c.progress("fault %s: did not recover: %v", op, err)
		}
		c.h.add(ev)
	}
}

// inject applies fault f (to node n where it concerns one) and waits for
// every node to serve again.
func (c *chaos) inject(ctx context.Context, f string, n *chaosNode) error {
	restart := func(sig syscall.Signal, wait time.Duration) error {
		if err := n.stop(sig, wait); err != nil && sig != syscall.SIGKILL {
			return err
		}
		return n.start()
	}
	var err error
	switch f {
	case "kill":
		err = restart(syscall.SIGKILL, 10*time.Second)
	case "term":
		err = restart(syscall.SIGTERM, 60*time.Second)
	case "pause":
		if err = n.signal(syscall.SIGSTOP); err == nil {
			time.Sleep(c.cfg.Chaos.Pause)
			err = n.signal(syscall.SIGCONT)
		}
	case "db":
		c.db.setCut(true)
		time.Sleep(3 * time.Second)
		c.db.setCut(false)
	case "redis":
		c.flushRedis(ctx)
	case "net":
		// Every client connection to the node is cut at once, many of them
		// between a Send and its SendAck (the devices send continuously).
		i := slices.Index(c.nodes, n)
		c.front[i].setCut(true)
		time.Sleep(200 * time.Millisecond)
		c.front[i].setCut(false)
	case "slow":
		// A device stops reading for --pause (the server gives up on a
		// device whose writes block 10 s), then reads again.
		d := c.devs[mrand.IntN(len(c.devs))]
		before := d.s.Welcome()
		for _, p := range d.paths {
			p.setStalled(true)
		}
		// Meanwhile its one-to-one peer sends it 3 MB, more than HTTP/2
		// and TCP buffer, so the server's writes to it block.
		idx := slices.Index(c.users, d.user)
		from := c.users[(idx+len(c.users)-1)%len(c.users)]
		sender := c.devs[slices.IndexFunc(c.devs, func(x *chaosDev) bool { return x.user == from })]
		pad := strings.Repeat("x", 48<<10)
		for k := range 64 {
			c.sendOne(ctx, sender, client.ToUser(d.user.id), client.DirectConversationID(from.id, d.user.id), fmt.Sprintf("%s-slow-%s-%d-%d", c.run, d.name, time.Now().UnixNano(), k), pad)
		}
		time.Sleep(c.cfg.Chaos.Pause)
		for _, p := range d.paths {
			p.setStalled(false)
		}
		c.progress("slow %s: stream replaced meanwhile: %v", d.name, d.s.Welcome() != before)
	}
	if err != nil {
		return err
	}
	for _, n := range c.nodes {
		if err := n.ready(ctx, c.cfg.Timeout); err != nil {
			return err
		}
	}
	return nil
}

// flushRedis deletes every key of the nodes' prefix: presence, routes and
// whatever else the cluster keeps there is gone at once.
func (c *chaos) flushRedis(ctx context.Context) {
	it := c.rdb.Scan(ctx, 0, c.pfx+"*", 1000).Iterator()
	for it.Next(ctx) {
		c.rdb.Del(ctx, it.Val())
	}
	if err := it.Err(); err != nil {
		c.log.Warn("flush redis", "err", err)
	}
}

// readBack reads every conversation from the server: the stored
// messages, and the group's membership changes from its system messages.
func (c *chaos) readBack(ctx context.Context) ([]event, error) {
	type conv struct {
		id     string
		reader *client.Client
	}
	convs := []conv{{client.GroupConversationID(c.group), c.owner.cl}}
	for i, u := range c.users {
		convs = append(convs, conv{client.DirectConversationID(u.id, c.users[(i+1)%len(c.users)].id), u.cl})
	}
	var out []event
	for _, cv := range convs {
		var msgs []*starlingv1.Message
		before := int64(0)
		for {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			page, err := cv.reader.GetHistory(rctx, cv.id, before, 500)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("read back %s: %w", cv.id, err)
			}
			msgs = append(page.GetMessages(), msgs...)
			if !page.GetHasMore() || len(page.GetMessages()) == 0 {
				break
			}
			before = page.GetMessages()[0].GetSeq()
		}
		for _, m := range msgs {
			out = append(out, event{Kind: evStored, Conv: cv.id, Seq: m.GetSeq(), MsgID: m.GetMsgId(), Sender: m.GetSenderId(), ClientMsgID: m.GetClientMsgId(), ContentType: m.GetContent().GetType()})
			ch, ok := client.GroupChangeOf(m)
			if !ok {
				continue
			}
			op, users := "", ch.GetTargetIds()
			switch ch.GetKind() {
			case starlingv1.GroupChange_KIND_MEMBERS_ADDED, starlingv1.GroupChange_KIND_MEMBER_JOINED:
				op = "join"
			case starlingv1.GroupChange_KIND_MEMBER_KICKED, starlingv1.GroupChange_KIND_MEMBER_LEFT, starlingv1.GroupChange_KIND_DISBANDED:
				op = "leave"
			}
			if len(users) == 0 {
				users = []string{ch.GetActorId()}
			}
			for _, u := range users {
				if op != "" {
					out = append(out, event{Kind: evMember, Conv: cv.id, User: u, Op: op, Seq: m.GetSeq()})
				}
			}
		}
	}
	return out, nil
}

// catchUp waits (at most --timeout) until every device has been handed
// every stored message it may read, nudging the sessions to resync.
func (c *chaos) catchUp(ctx context.Context, stored []event) {
	deadline := time.Now().Add(c.cfg.Timeout)
	for {
		evs := append(c.h.snapshot(), stored...)
		for _, d := range c.devs {
			evs = append(evs, event{Kind: evSynced, Device: d.name})
		}
		v := checkHistory(numbered(evs))
		missing := v.Counts[vNotDelivered]
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			c.progress("caught up: %d deliveries missing", missing)
			return
		}
		for _, d := range c.devs {
			d.s.Resync()
		}
		time.Sleep(time.Second)
	}
}
