package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/peer"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// memStore is an in-memory Store.
type memStore struct {
	mu       sync.Mutex
	users    map[string]storage.User // by username
	sessions map[string]storage.Session
	deletes  []int // the limit of each DeleteSessions call
	gets     int   // GetSession calls
	// afterGet, if set, runs in GetSession after the session was read and
	// before it is returned (outside the lock).
	afterGet func(id string)
}

func newMemStore() *memStore {
	return &memStore{users: map[string]storage.User{}, sessions: map[string]storage.Session{}}
}

func (m *memStore) CreateUser(_ context.Context, u storage.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.Username]; ok {
		return storage.ErrAlreadyExists
	}
	m.users[u.Username] = u
	return nil
}

func (m *memStore) GetUser(_ context.Context, id string) (storage.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.users {
		if u.ID == id {
			return u, nil
		}
	}
	return storage.User{}, storage.ErrNotFound
}

func (m *memStore) GetUserByUsername(_ context.Context, name string) (storage.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return storage.User{}, storage.ErrNotFound
	}
	return u, nil
}

func (m *memStore) CreateSession(_ context.Context, s storage.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s.ID] = s
	return nil
}

func (m *memStore) GetSession(_ context.Context, id string) (storage.Session, error) {
	m.mu.Lock()
	m.gets++
	s, ok := m.sessions[id]
	hook := m.afterGet
	m.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	if !ok {
		return storage.Session{}, storage.ErrNotFound
	}
	return s, nil
}

// getCount returns how many times GetSession was called.
func (m *memStore) getCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

func (m *memStore) RevokeSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		return storage.ErrNotFound
	}
	s.Revoked = true
	m.sessions[id] = s
	return nil
}

func (m *memStore) DeleteSessions(_ context.Context, before time.Time, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deletes = append(m.deletes, limit)
	n := 0
	for id, s := range m.sessions {
		if n == limit {
			break
		}
		if s.Revoked || s.ExpiresAt.Before(before) {
			delete(m.sessions, id)
			n++
		}
	}
	return n, nil
}

// clock is a settable time for the limiters.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testPassword = "correct horse"

// newTestAccounts returns Accounts on a memStore with users alice and bob
// registered, on a settable clock shared by the limiters and the tokens.
func newTestAccounts(t *testing.T, l Limits, log *slog.Logger) (*Accounts, *memStore, *clock) {
	t.Helper()
	st := newMemStore()
	tok, err := NewTokens(secret, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAccounts(st, tok, bcrypt.MinCost, l, log)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	a.now, tok.now = c.now, c.now
	for _, name := range []string{"alice", "bob"} {
		// Registered without the limits in the way.
		hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		st.users[name] = storage.User{ID: "u-" + name, Username: name, PasswordHash: hash}
	}
	return a, st, c
}

// from returns ctx as a call from addr ("ip:port").
func from(ctx context.Context, addr string) context.Context {
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	return peer.NewContext(ctx, &peer.Peer{Addr: ap})
}

func wantErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v; want %v", what, err, want)
	}
}

// 30 wrong passwords for one user from one address: the first 5 are
// checked, then each further attempt waits a doubling backoff and is
// refused without running bcrypt; a refused attempt does not prolong the
// wait; the right password after the wait works and resets the count.
func TestFailedLoginBackoff(t *testing.T) {
	a, _, clk := newTestAccounts(t, Limits{FailedLogins: 5, FailureWindow: 15 * time.Minute,
		LoginBackoff: time.Second, MaxLoginBackoff: 8 * time.Second, MaxTracked: 100}, nil)
	ctx := from(t.Context(), "192.0.2.1:4000")
	login := func(pw string) error {
		_, _, _, err := a.Login(ctx, "alice", pw, "phone")
		return err
	}
	for i := range 30 {
		err := login("wrong password")
		if i < 5 {
			wantErr(t, err, apierr.BadCredentials, fmt.Sprintf("wrong password %d", i+1))
		} else {
			wantErr(t, err, apierr.LoginBackoff, fmt.Sprintf("wrong password %d", i+1))
		}
	}
	if n := a.bcrypt.calls.Load(); n != 5 {
		t.Fatalf("bcrypt ran %d times for 30 attempts; want 5 (the refused ones cost none)", n)
	}
	// The right password is refused too until the wait is over…
	wantErr(t, login(testPassword), apierr.LoginBackoff, "right password during the backoff")
	// …which the refused attempts did not prolong: 1 s after the 5th failure.
	clk.advance(time.Second)
	wantErr(t, login("wrong again"), apierr.BadCredentials, "wrong password after the first wait")
	// The 6th failure doubles the wait: 2 s.
	clk.advance(1999 * time.Millisecond)
	wantErr(t, login(testPassword), apierr.LoginBackoff, "right password 1.999 s after the 6th failure")
	clk.advance(time.Millisecond)
	wantErr(t, login("wrong again"), apierr.BadCredentials, "7th failure")
	// 4 s, 8 s, then capped at 8 s.
	for i, wait := range []time.Duration{4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
		clk.advance(wait - time.Millisecond)
		wantErr(t, login("x-wrong-x"), apierr.LoginBackoff, fmt.Sprintf("before wait %d", i))
		clk.advance(time.Millisecond)
		wantErr(t, login("x-wrong-x"), apierr.BadCredentials, fmt.Sprintf("after wait %d", i))
	}
	calls := a.bcrypt.calls.Load()
	clk.advance(8 * time.Second)
	if _, _, _, err := a.Login(ctx, "alice", testPassword, "phone"); err != nil {
		t.Fatalf("right password after the backoff: %v", err)
	}
	if n := a.bcrypt.calls.Load() - calls; n != 1 {
		t.Fatalf("a successful login ran bcrypt %d times", n)
	}
	// The success reset the count: 5 free failures again.
	for i := range 5 {
		wantErr(t, login("wrong"), apierr.BadCredentials, fmt.Sprintf("failure %d after the reset", i+1))
	}
	wantErr(t, login("wrong"), apierr.LoginBackoff, "6th failure after the reset")
	// Other usernames are not affected.
	if _, _, _, err := a.Login(ctx, "bob", testPassword, "phone"); err != nil {
		t.Fatalf("bob while alice is backed off: %v", err)
	}
}

// Failures of a username that does not exist count the same (the limiter
// does not tell who exists), and a quiet window forgets failures; the
// window counts from the end of a backoff, so waiting out a backoff longer
// than the window does not reset the count.
func TestFailedLoginWindow(t *testing.T) {
	a, _, clk := newTestAccounts(t, Limits{FailedLogins: 3, FailureWindow: time.Minute,
		LoginBackoff: 2 * time.Minute, MaxLoginBackoff: 4 * time.Minute, MaxTracked: 100}, nil)
	ctx := from(t.Context(), "192.0.2.1:4000")
	for _, user := range []string{"alice", "nobody"} {
		for range 2 {
			_, _, _, err := a.Login(ctx, user, "wrong-password", "d")
			wantErr(t, err, apierr.BadCredentials, user)
		}
		clk.advance(time.Minute + time.Millisecond) // 2 < 3 failures, then a quiet window
		for range 3 {
			_, _, _, err := a.Login(ctx, user, "wrong-password", "d")
			wantErr(t, err, apierr.BadCredentials, user+" after a quiet window")
		}
		_, _, _, err := a.Login(ctx, user, "wrong-password", "d")
		wantErr(t, err, apierr.LoginBackoff, user+": 4th failure in the window")
		clk.advance(2 * time.Minute) // the backoff, longer than the window
		_, _, _, err = a.Login(ctx, user, "wrong-password", "d")
		wantErr(t, err, apierr.BadCredentials, user+" after the backoff")
		_, _, _, err = a.Login(ctx, user, "wrong-password", "d")
		wantErr(t, err, apierr.LoginBackoff, user+": the failures still count")
		clk.advance(4*time.Minute + time.Minute + time.Millisecond) // the backoff and a quiet window
	}
	for range 3 {
		_, _, _, err := a.Login(ctx, "alice", "wrong-password", "d")
		wantErr(t, err, apierr.BadCredentials, "alice after a backoff and a quiet window")
	}
}

// 30 wrong logins at once for one user: at most the free failures run
// bcrypt; the rest are refused without it.
func TestFailedLoginBackoffParallel(t *testing.T) {
	a, _, _ := newTestAccounts(t, Limits{FailedLogins: 5, FailureWindow: time.Hour,
		LoginBackoff: time.Hour, MaxLoginBackoff: time.Hour, MaxTracked: 100}, nil)
	ctx := from(t.Context(), "192.0.2.1:4000")
	var wg sync.WaitGroup
	var bad, backoff atomic.Int64
	for range 30 {
		wg.Go(func() {
			_, _, _, err := a.Login(ctx, "alice", "wrong password", "d")
			switch {
			case errors.Is(err, apierr.BadCredentials):
				bad.Add(1)
			case errors.Is(err, apierr.LoginBackoff):
				backoff.Add(1)
			default:
				t.Errorf("login: %v", err)
			}
		})
	}
	wg.Wait()
	if n := a.bcrypt.calls.Load(); n > 5 || bad.Load() != n || bad.Load()+backoff.Load() != 30 {
		t.Fatalf("bcrypt ran %d times; %d wrong-password answers, %d backoffs; want at most 5 bcrypt runs, one per wrong-password answer",
			n, bad.Load(), backoff.Load())
	}
}

// A flood of logins from one address is cut off by its token bucket while
// another address still gets in; an IPv6 address counts by its /64.
func TestLoginRatePerAddress(t *testing.T) {
	a, _, clk := newTestAccounts(t, Limits{LoginRate: 1, LoginBurst: 3, MaxTracked: 100}, nil)
	flood := from(t.Context(), "198.51.100.7:1234")
	for i := range 3 {
		if _, _, _, err := a.Login(flood, "alice", testPassword, "d"); err != nil {
			t.Fatalf("login %d within the burst: %v", i+1, err)
		}
	}
	calls := a.bcrypt.calls.Load()
	for i := range 50 {
		_, _, _, err := a.Login(flood, "alice", testPassword, "d")
		wantErr(t, err, apierr.LoginRateLimited, fmt.Sprintf("login %d past the burst", i+4))
	}
	if n := a.bcrypt.calls.Load() - calls; n != 0 {
		t.Fatalf("refused logins ran bcrypt %d times", n)
	}
	// Another port of the same address is the same client.
	_, _, _, err := a.Login(from(t.Context(), "198.51.100.7:1235"), "bob", testPassword, "d")
	wantErr(t, err, apierr.LoginRateLimited, "same address, other port")
	// Another address is not limited.
	if _, _, _, err := a.Login(from(t.Context(), "203.0.113.9:1234"), "bob", testPassword, "d"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// The bucket refills at the rate.
	clk.advance(time.Second)
	if _, _, _, err := a.Login(flood, "alice", testPassword, "d"); err != nil {
		t.Fatalf("a second later: %v", err)
	}
	_, _, _, err = a.Login(flood, "alice", testPassword, "d")
	wantErr(t, err, apierr.LoginRateLimited, "the refilled token used")

	// IPv6: one /64 is one client; the next /64 another.
	for i := range 3 {
		if _, _, _, err := a.Login(from(t.Context(), fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1)), "alice", testPassword, "d"); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _, err = a.Login(from(t.Context(), "[2001:db8:1:2:ffff::1]:1"), "alice", testPassword, "d")
	wantErr(t, err, apierr.LoginRateLimited, "fourth address of one /64")
	if _, _, _, err := a.Login(from(t.Context(), "[2001:db8:1:3::1]:1"), "alice", testPassword, "d"); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
}

// Registrations are limited per address; refused ones hash nothing, and
// invalid requests do not use up the budget.
func TestRegisterRatePerAddress(t *testing.T) {
	a, _, clk := newTestAccounts(t, Limits{RegisterRate: 0.1, RegisterBurst: 2, MaxTracked: 100}, nil)
	ctx := from(t.Context(), "198.51.100.7:1234")
	for i := range 5 {
		_, err := a.Register(ctx, "x", testPassword, "") // invalid username: refused before the limiter
		wantErr(t, err, apierr.BadUsername, "invalid username")
		_ = i
	}
	for i := range 2 {
		if _, err := a.Register(ctx, fmt.Sprintf("user%d", i), testPassword, ""); err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
	}
	calls := a.bcrypt.calls.Load()
	for i := range 20 {
		_, err := a.Register(ctx, fmt.Sprintf("flood%d", i), testPassword, "")
		wantErr(t, err, apierr.RegisterRateLimited, "registration past the burst")
	}
	if n := a.bcrypt.calls.Load() - calls; n != 0 {
		t.Fatalf("refused registrations ran bcrypt %d times", n)
	}
	if _, err := a.Register(from(t.Context(), "203.0.113.9:1"), "carol", testPassword, ""); err != nil {
		t.Fatalf("another address: %v", err)
	}
	clk.advance(10 * time.Second)
	if _, err := a.Register(ctx, "dave", testPassword, ""); err != nil {
		t.Fatalf("after 10 s: %v", err)
	}
}

// The bcrypt bound holds under parallel logins and registrations, and a
// call that waits too long for a slot is refused Busy.
func TestBcryptConcurrencyBound(t *testing.T) {
	a, _, _ := newTestAccounts(t, Limits{MaxBcrypt: 2, BcryptWait: time.Minute}, nil)
	ctx := from(t.Context(), "192.0.2.1:1")
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, _, _, err = a.Login(ctx, "alice", testPassword, "d")
			case 1:
				_, _, _, err = a.Login(ctx, "bob", "wrong-password", "d")
				if errors.Is(err, apierr.BadCredentials) {
					err = nil
				}
			default:
				_, err = a.Register(ctx, fmt.Sprintf("user%d", i), testPassword, "")
			}
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if peak := a.bcrypt.peak.Load(); peak > 2 || peak < 1 {
		t.Fatalf("bcrypt ran %d at once; bound 2", peak)
	}
	if n := a.bcrypt.calls.Load(); n != 24 {
		t.Fatalf("bcrypt ran %d times for 24 calls", n)
	}
}

func TestBcryptPoolWaitsThenRefuses(t *testing.T) {
	p := newBcryptPool(2, 30*time.Millisecond)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := p.do(t.Context(), func() { started <- struct{}{}; <-release }); err != nil {
				t.Error(err)
			}
		})
	}
	<-started
	<-started
	ran := false
	begin := time.Now()
	err := p.do(t.Context(), func() { ran = true })
	wantErr(t, err, apierr.Busy, "third call while two run")
	if ran || time.Since(begin) < 30*time.Millisecond {
		t.Fatalf("refused after %v (ran: %v); want a wait of 30ms and no run", time.Since(begin), ran)
	}
	// A waiter gets the slot a finishing call frees.
	p.wait = time.Minute
	done := make(chan error)
	go func() { done <- p.do(t.Context(), func() { ran = true }) }()
	time.Sleep(5 * time.Millisecond)
	close(release)
	if err := <-done; err != nil || !ran {
		t.Fatalf("waiter: %v, ran %v", err, ran)
	}
	wg.Wait()
	if p.peak.Load() != 2 {
		t.Fatalf("peak %d; want 2", p.peak.Load())
	}
	// A cancelled caller stops waiting.
	p2 := newBcryptPool(1, time.Hour)
	block := make(chan struct{})
	go p2.do(t.Context(), func() { <-block })
	defer close(block)
	for p2.running.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := p2.do(ctx, func() {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled waiter: %v", err)
	}
}

// A login refused for want of a bcrypt slot is not a failed login.
func TestBusyLoginIsNotAFailure(t *testing.T) {
	a, _, _ := newTestAccounts(t, Limits{MaxBcrypt: 1, BcryptWait: 5 * time.Millisecond,
		FailedLogins: 1, FailureWindow: time.Hour, LoginBackoff: time.Hour, MaxLoginBackoff: time.Hour, MaxTracked: 10}, nil)
	block := make(chan struct{})
	go a.bcrypt.do(t.Context(), func() { <-block })
	for a.bcrypt.running.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 3 {
		_, _, _, err := a.Login(t.Context(), "alice", "wrong-password", "d")
		wantErr(t, err, apierr.Busy, "login while bcrypt is busy")
	}
	close(block)
	for a.bcrypt.running.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	if _, _, _, err := a.Login(t.Context(), "alice", testPassword, "d"); err != nil {
		t.Fatalf("busy refusals counted as failures: %v", err)
	}
}

// The limiters' tables stay bounded: idle entries are forgotten, and past
// MaxTracked the least recently used goes.
func TestLimiterMemoryBounded(t *testing.T) {
	a, _, clk := newTestAccounts(t, Limits{LoginRate: 1, LoginBurst: 5, FailedLogins: 3, FailureWindow: time.Minute,
		LoginBackoff: time.Second, MaxLoginBackoff: time.Minute, MaxTracked: 20}, nil)
	for i := range 1000 {
		ctx := from(t.Context(), fmt.Sprintf("10.%d.%d.1:1", i/256, i%256))
		// An impossible username: refused without bcrypt, but the
		// address's token is spent.
		_, _, _, err := a.Login(ctx, "X", "wrong-password", "d")
		wantErr(t, err, apierr.BadCredentials, "login")
		if n := a.loginIPs.tracked(); n > 20 {
			t.Fatalf("%d addresses tracked; bound 20", n)
		}
	}
	for i := range 60 {
		_, _, _, err := a.Login(from(t.Context(), fmt.Sprintf("172.16.0.%d:1", i)), fmt.Sprintf("user%d", i), "wrong-password", "d")
		wantErr(t, err, apierr.BadCredentials, "login")
		if n := a.failures.tracked(); n > 20 {
			t.Fatalf("%d usernames tracked; bound 20", n)
		}
	}
	if a.loginIPs.tracked() != 20 || a.failures.tracked() != 20 {
		t.Fatalf("%d addresses, %d usernames tracked; want the table full (20)", a.loginIPs.tracked(), a.failures.tracked())
	}
	// Once they no longer limit anything, entries are forgotten.
	clk.advance(time.Hour)
	_, _, _, err := a.Login(from(t.Context(), "192.0.2.1:1"), "someone", "wrong-password", "d")
	wantErr(t, err, apierr.BadCredentials, "login an hour later")
	if a.loginIPs.tracked() != 1 || a.failures.tracked() != 1 {
		t.Fatalf("an hour later: %d addresses, %d usernames tracked; want 1 each", a.loginIPs.tracked(), a.failures.tracked())
	}
	// A success leaves nothing behind.
	if _, _, _, err := a.Login(from(t.Context(), "192.0.2.1:1"), "alice", testPassword, "d"); err != nil {
		t.Fatal(err)
	}
	if a.failures.tracked() != 1 {
		t.Fatalf("%d usernames tracked after a success; want 1 (someone's failure)", a.failures.tracked())
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{}).Validate(); err != nil {
		t.Fatalf("zero limits: %v", err)
	}
	ok := Limits{LoginRate: 1, LoginBurst: 1, RegisterRate: 1, RegisterBurst: 1, FailedLogins: 1, FailureWindow: time.Minute,
		LoginBackoff: time.Second, MaxLoginBackoff: time.Second, MaxBcrypt: 1, BcryptWait: time.Second, MaxTracked: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid limits: %v", err)
	}
	for name, change := range map[string]func(*Limits){
		"negative login rate":      func(l *Limits) { l.LoginRate = -1 },
		"login rate without burst": func(l *Limits) { l.LoginBurst = 0 },
		"negative register rate":   func(l *Limits) { l.RegisterRate = -1 },
		"register without burst":   func(l *Limits) { l.RegisterBurst = 0 },
		"negative failures":        func(l *Limits) { l.FailedLogins = -1 },
		"no window":                func(l *Limits) { l.FailureWindow = 0 },
		"no backoff":               func(l *Limits) { l.LoginBackoff = 0 },
		"max below backoff":        func(l *Limits) { l.MaxLoginBackoff = time.Millisecond },
		"negative bcrypt":          func(l *Limits) { l.MaxBcrypt = -1 },
		"negative bcrypt wait":     func(l *Limits) { l.BcryptWait = -time.Second },
		"nothing tracked":          func(l *Limits) { l.MaxTracked = 0 },
		"negative session cache":   func(l *Limits) { l.SessionCacheTTL = -time.Second },
		"session cache untracked":  func(l *Limits) { *l = Limits{SessionCacheTTL: time.Second} },
	} {
		l := ok
		change(&l)
		if err := l.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := NewAccounts(newMemStore(), nil, bcrypt.MinCost, l, nil); err == nil {
			t.Errorf("%s: NewAccounts accepted it", name)
		}
	}
}

// One line per failed authentication, with the reason and the peer; never
// the password or the token.
func TestFailedAuthenticationIsLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	a, _, _ := newTestAccounts(t, Limits{}, log)
	ctx := from(t.Context(), "192.0.2.55:4711")
	_, _, _, err := a.Login(ctx, "alice", "hunter2-secret", "d")
	wantErr(t, err, apierr.BadCredentials, "wrong password")
	_, _, _, err = a.Login(ctx, "nobody", "hunter2-secret", "d")
	wantErr(t, err, apierr.BadCredentials, "no such user")
	_, _, _, err = a.Login(ctx, "my secret pass", "hunter2-secret", "d") // a password in the username field
	wantErr(t, err, apierr.BadCredentials, "invalid username")
	token, _, _, err := a.Login(ctx, "alice", testPassword, "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, token+"x"); err == nil {
		t.Fatal("tampered token accepted")
	}
	id, err := a.Authenticate(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(ctx, token)
	wantErr(t, err, apierr.TokenRevoked, "revoked token")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d log lines for 5 failures:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"wrong password", "no such user", "no such user", "invalid token", "revoked"} {
		l := lines[i]
		if !strings.Contains(l, "authentication failed") || !strings.Contains(l, want) || !strings.Contains(l, "peer=192.0.2.55:4711") || !strings.Contains(l, "level=INFO") {
			t.Errorf("line %d: %s; want reason %q and the peer", i, l, want)
		}
	}
	for _, secret := range []string{"hunter2", "my secret pass", token, testPassword, token[strings.LastIndex(token, ".")+1:]} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, buf.String())
		}
	}
	if !strings.Contains(lines[0], "username=alice") || !strings.Contains(lines[4], "user_id=u-alice") {
		t.Errorf("lines do not name the user:\n%s", buf.String())
	}
}

// A flood of failures does not become a flood of log lines.
func TestFailedAuthenticationLogIsBounded(t *testing.T) {
	var buf bytes.Buffer
	a, _, _ := newTestAccounts(t, Limits{}, slog.New(slog.NewTextHandler(&buf, nil)))
	for range 1000 {
		if _, err := a.Authenticate(t.Context(), "garbage"); err == nil {
			t.Fatal("garbage accepted")
		}
	}
	if n := strings.Count(buf.String(), "\n"); n < logBurst || n > logBurst+50 {
		t.Fatalf("%d lines for 1000 failures at once; want about %d", n, logBurst)
	}
}
