package auth

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"

	"github.com/starling-im/starling/server/apierr"
)

// Limits bound what Login and Register may cost the node, so that password
// guessing is slow and bcrypt cannot be used to starve the node's CPU, and
// what a token check may cost it (SessionCacheTTL). The zero value limits
// nothing and caches nothing; server.DefaultConfig has the production
// values.
//
// A "client address" is the IP address of the gRPC peer (an IPv6 address
// counts by its /64 prefix: one host usually holds the whole prefix). Behind
// a proxy or load balancer that is the PROXY's address, so every client
// behind it shares one budget: raise the per-address limits there, or set
// them to 0.
type Limits struct {
	// LoginRate is how many Login calls one client address may make per
	// second, with bursts of LoginBurst (a token bucket; every attempt
	// costs a token, right or wrong). 0: unlimited. Past it: Login is
	// refused RESOURCE_EXHAUSTED before anything is read or hashed.
	LoginRate  rate.Limit
	LoginBurst int
	// RegisterRate is how many Register calls one client address may make
	// per second, with bursts of RegisterBurst. 0: unlimited.
	RegisterRate  rate.Limit
	RegisterBurst int

	// FailedLogins is how many failed logins of one username (wrong
	// password, or no such user) within FailureWindow are free. After
	// that every further attempt for the username, from anywhere, must
	// first wait LoginBackoff, doubling with each further failure up to
	// MaxLoginBackoff; an attempt before then is refused
	// RESOURCE_EXHAUSTED without checking the password, and does not
	// prolong the wait. A successful login resets the count, and so does
	// a FailureWindow without failures: an attacker can delay a real
	// user's login by at most MaxLoginBackoff, never lock it for good.
	// 0: no backoff.
	FailedLogins    int
	FailureWindow   time.Duration
	LoginBackoff    time.Duration
	MaxLoginBackoff time.Duration

	// MaxBcrypt bounds the bcrypt computations (password checks and
	// hashes) running at once on the node, so logins cannot take every
	// CPU from chat traffic. A login or registration that finds them all
	// busy waits up to BcryptWait for one, then is refused UNAVAILABLE
	// ("server busy; retry later"): the node is overloaded, not the
	// caller over a bound of its own. 0: unlimited.
	MaxBcrypt  int
	BcryptWait time.Duration

	// SessionCacheTTL is how long a token check may reuse what this node
	// last read of the token's login session (its user, device and
	// whether it was revoked) instead of reading the database again. A
	// logout through this node refuses the token here at once; a logout
	// through another node of a cluster (or a session revoked in the
	// database by anything else) is refused here within SessionCacheTTL.
	// The device's open stream does not wait for it: the logout closes it
	// on whichever node holds it. 0: every token check reads the
	// database.
	SessionCacheTTL time.Duration

	// MaxTracked bounds how many client addresses (and, separately,
	// usernames, and cached sessions) the limiters and the session cache
	// remember. An entry is forgotten once it no longer limits anything
	// (its bucket is full again, its failures are past the window, its
	// session was read more than SessionCacheTTL ago); when the table is
	// full the least recently used entry is dropped. Needed when any
	// limit above is on, or SessionCacheTTL.
	MaxTracked int
}

// Validate reports the first inconsistent or negative limit.
func (l Limits) Validate() error {
	switch {
	case l.LoginRate < 0 || l.RegisterRate < 0:
		return errors.New("auth: login and register rates must not be negative")
	case l.LoginRate > 0 && l.LoginBurst < 1, l.RegisterRate > 0 && l.RegisterBurst < 1:
		return errors.New("auth: a login or register rate needs a burst of at least 1")
	case l.FailedLogins < 0:
		return errors.New("auth: failed logins must not be negative")
	case l.FailedLogins > 0 && (l.FailureWindow <= 0 || l.LoginBackoff <= 0 || l.MaxLoginBackoff < l.LoginBackoff):
		return errors.New("auth: failed-login backoff needs a positive window and backoff, and a maximum backoff at least the first")
	case l.MaxBcrypt < 0 || l.BcryptWait < 0:
		return errors.New("auth: bcrypt concurrency and wait must not be negative")
	case l.SessionCacheTTL < 0:
		return errors.New("auth: the session cache TTL must not be negative")
	case l.MaxTracked < 0:
		return errors.New("auth: tracked entries must not be negative")
	case (l.LoginRate > 0 || l.RegisterRate > 0 || l.FailedLogins > 0 || l.SessionCacheTTL > 0) && l.MaxTracked == 0:
		return errors.New("auth: per-address and per-username limits and the session cache need MaxTracked > 0")
	}
	return nil
}

// clientOf returns the limiter key for the caller's address and the
// address itself for logs: the peer's IP (an IPv6 one as its /64), or the
// whole address for other kinds of transport. No peer: "unknown".
func clientOf(ctx context.Context) (key, addr string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", "unknown"
	}
	addr = p.Addr.String()
	var ip net.IP
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		if host, _, err := net.SplitHostPort(addr); err == nil {
			ip = net.ParseIP(host)
		}
	}
	switch {
	case ip == nil:
		return addr, addr
	case ip.To4() != nil:
		return ip.To4().String(), addr
	default:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64", addr
	}
}

// lru is a bounded table of limiter state (or of cached sessions), most
// recently used first. An item may be forgotten after its expires time (it
// then limits nothing, or is too old to trust); past max items the least
// recently used one is dropped.
type lru[V any] struct {
	max   int
	order *list.List // of *lruItem[V]
	items map[string]*list.Element
}

type lruItem[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns key's item, marked as used, or nil when there is none (or
// it had expired).
func (c *lru[V]) get(key string, now time.Time) *lruItem[V] {
	e, ok := c.items[key]
	if !ok {
		return nil
	}
	it := e.Value.(*lruItem[V])
	if now.After(it.expires) {
		c.order.Remove(e)
		delete(c.items, key)
		return nil
	}
	c.order.MoveToFront(e)
	return it
}

// put stores a new item for key (replacing any) and makes room for it.
func (c *lru[V]) put(key string, v V, expires, now time.Time) *lruItem[V] {
	c.remove(key)
	it := &lruItem[V]{key: key, val: v, expires: expires}
	c.items[key] = c.order.PushFront(it)
	c.prune(now)
	return it
}

func (c *lru[V]) remove(key string) {
	if e, ok := c.items[key]; ok {
		c.order.Remove(e)
		delete(c.items, key)
	}
}

// prune forgets expired items from the least recently used end, then the
// least recently used ones beyond max. Each item is removed once, so the
// cost is constant per put, amortised.
func (c *lru[V]) prune(now time.Time) {
	for e := c.order.Back(); e != nil; e = c.order.Back() {
		it := e.Value.(*lruItem[V])
		if len(c.items) <= c.max && !now.After(it.expires) {
			return
		}
		c.order.Remove(e)
		delete(c.items, it.key)
	}
}

func (c *lru[V]) len() int { return len(c.items) }

// addressLimiter is a token bucket per client address.
type addressLimiter struct {
	rate  rate.Limit
	burst int
	full  time.Duration // time for an empty bucket to fill: after that an entry limits nothing

	mu    sync.Mutex
	table *lru[*rate.Limiter]
}

func newAddressLimiter(r rate.Limit, burst, max int) *addressLimiter {
	if r <= 0 {
		return nil
	}
	full := time.Duration(float64(burst) / float64(r) * float64(time.Second))
	return &addressLimiter{rate: r, burst: burst, full: full, table: newLRU[*rate.Limiter](max)}
}

// allow takes a token from key's bucket. A nil limiter allows everything.
func (l *addressLimiter) allow(key string, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	it := l.table.get(key, now)
	if it == nil {
		it = l.table.put(key, rate.NewLimiter(l.rate, l.burst), now, now)
	}
	// Refilling takes at most `full` from now, whatever is left.
	it.expires = now.Add(l.full)
	return it.val.AllowN(now, 1)
}

func (l *addressLimiter) tracked() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.table.len()
}

// failures is the failed-login backoff, per username.
type failures struct {
	free    int
	window  time.Duration
	backoff time.Duration
	max     time.Duration

	mu    sync.Mutex
	table *lru[*failState]
}

type failState struct {
	failures int       // within the window
	last     time.Time // of the last failure
	until    time.Time // no attempt before this
	inflight int       // admitted attempts not finished yet
}

// outcome of an admitted login attempt.
type outcome int

const (
	loginNeutral outcome = iota // undecided: the database or bcrypt was unavailable
	loginFailed
	loginOK
)

func newFailures(l Limits) *failures {
	if l.FailedLogins <= 0 {
		return nil
	}
	return &failures{free: l.FailedLogins, window: l.FailureWindow, backoff: l.LoginBackoff, max: l.MaxLoginBackoff,
		table: newLRU[*failState](l.MaxTracked)}
}

// admit decides whether a login attempt for user may check a password
// now. Below the free failures, attempts run in parallel up to the
// failures left; past them, one at a time, each after the backoff. An
// admitted attempt must be finished with done.
func (f *failures) admit(user string, now time.Time) (done func(outcome, time.Time), wait time.Duration, ok bool) {
	if f == nil {
		return func(outcome, time.Time) {}, 0, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	it := f.table.get(user, now)
	if it == nil {
		it = f.table.put(user, &failState{}, now, now)
	}
	st := it.val
	if now.Before(st.until) {
		return nil, st.until.Sub(now), false
	}
	if st.failures > 0 && now.Sub(st.quietSince()) > f.window {
		st.failures = 0 // a whole window without failures, after any backoff
	}
	if st.inflight > 0 && st.failures+st.inflight >= f.free {
		// The attempts running could use up the free failures: wait for them.
		return nil, f.backoff, false
	}
	st.inflight++
	// Kept while the attempt runs (a lost entry would lose its failure).
	it.expires = now.Add(f.window + f.max)
	return func(o outcome, now time.Time) { f.finish(user, st, o, now) }, 0, true
}

// quietSince is when the last failure or its backoff ended.
func (st *failState) quietSince() time.Time {
	if st.until.After(st.last) {
		return st.until
	}
	return st.last
}

func (f *failures) finish(user string, st *failState, o outcome, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st.inflight--
	it := f.table.get(user, now)
	switch {
	case it != nil:
		// Usually st itself; another state if st was dropped meanwhile
		// (the table was full), which then takes the outcome.
		st = it.val
	case o == loginFailed:
		it = f.table.put(user, st, now, now)
	default:
		return // forgotten meanwhile, and nothing to record
	}
	switch o {
	case loginOK:
		st.failures, st.until = 0, time.Time{}
	case loginFailed:
		st.failures++
		st.last = now
		if st.failures >= f.free {
			d := f.max
			if shift := st.failures - f.free; shift < 32 {
				d = min(f.max, f.backoff<<shift)
			}
			st.until = now.Add(d)
		}
	}
	if st.inflight > 0 {
		return
	}
	if st.failures == 0 {
		f.table.remove(user)
		return
	}
	it.expires = st.quietSince().Add(f.window)
}

func (f *failures) tracked() int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.table.len()
}

// bcryptPool bounds the bcrypt computations running at once.
type bcryptPool struct {
	slots chan struct{} // nil: unlimited
	wait  time.Duration

	running atomic.Int64
	peak    atomic.Int64 // most running at once, for tests
	calls   atomic.Int64 // computations started, for tests
}

func newBcryptPool(n int, wait time.Duration) *bcryptPool {
	p := &bcryptPool{wait: wait}
	if n > 0 {
		p.slots = make(chan struct{}, n)
	}
	return p
}

// do runs f, the bcrypt work, once a slot is free. It waits at most the
// pool's wait: then apierr.Busy.
func (p *bcryptPool) do(ctx context.Context, f func()) error {
	if p.slots != nil {
		select {
		case p.slots <- struct{}{}:
		default:
			t := time.NewTimer(p.wait)
			select {
			case p.slots <- struct{}{}:
				t.Stop()
			case <-t.C:
				return fmt.Errorf("%w: all %d bcrypt slots busy for %v", apierr.Busy, cap(p.slots), p.wait)
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		defer func() { <-p.slots }()
	}
	p.calls.Add(1)
	n := p.running.Add(1)
	for {
		peak := p.peak.Load()
		if n <= peak || p.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	defer p.running.Add(-1)
	f()
	return nil
}
