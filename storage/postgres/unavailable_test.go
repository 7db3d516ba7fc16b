package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres"
	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// TestErrorClassification checks mapError, where every method's database
// errors become the storage sentinels, on the errors an outage brings.
func TestErrorClassification(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	for name, c := range map[string]struct {
		err  error
		want error // nil: none of the sentinels
	}{
		"08006 connection_failure":            {pg("08006"), storage.ErrUnavailable},
		"08001 unable to establish":           {pg("08001"), storage.ErrUnavailable},
		"08003 connection_does_not_exist":     {pg("08003"), storage.ErrUnavailable},
		"57P01 admin_shutdown":                {pg("57P01"), storage.ErrUnavailable},
		"57P02 crash_shutdown":                {pg("57P02"), storage.ErrUnavailable},
		"57P03 cannot_connect_now":            {pg("57P03"), storage.ErrUnavailable},
		"53300 too_many_connections":          {pg("53300"), storage.ErrUnavailable},
		"23505 unique_violation":              {pg("23505"), storage.ErrAlreadyExists},
		"23503 foreign_key_violation":         {pg("23503"), storage.ErrNotFound},
		"40001 serialization_failure":         {pg("40001"), nil},
		"28P01 invalid_password":              {pg("28P01"), nil},
		"42P01 undefined_table":               {pg("42P01"), nil},
		"connection refused":                  {&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, storage.ErrUnavailable},
		"connection lost":                     {fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), storage.ErrUnavailable},
		"connection closed by pgx":            {fmt.Errorf("begin: %w", pgconn.ErrConnClosed), storage.ErrUnavailable},
		"deadline":                            {fmt.Errorf("timeout: %w", context.DeadlineExceeded), storage.ErrUnavailable},
		"cancelled by the caller":             {fmt.Errorf("query: %w", context.Canceled), nil},
		"something else":                      {errors.New("boom"), nil},
		"ambiguous commit stays ambiguous":    {fmt.Errorf("commit: %w: %w", storage.ErrAmbiguousCommit, io.ErrUnexpectedEOF), storage.ErrAmbiguousCommit},
		"ambiguous commit with a PgError too": {fmt.Errorf("commit: %w: %w", storage.ErrAmbiguousCommit, &pgconn.PgError{Code: "40003"}), storage.ErrAmbiguousCommit},
	} {
		t.Run(name, func(t *testing.T) {
			got := postgres.MapError(c.err)
			for _, sentinel := range []error{storage.ErrUnavailable, storage.ErrAlreadyExists, storage.ErrNotFound, storage.ErrAmbiguousCommit} {
				if is := errors.Is(got, sentinel); is != (sentinel == c.want) {
					t.Errorf("mapError(%v) = %v: errors.Is(%v) = %v", c.err, got, sentinel, is)
				}
			}
			if !errors.Is(got, c.err) {
				t.Errorf("mapError(%v) = %v lost the cause", c.err, got)
			}
			if again := postgres.MapError(got); again.Error() != got.Error() {
				t.Errorf("mapping twice wraps twice: %q, then %q", got, again)
			}
		})
	}
	if postgres.MapError(nil) != nil {
		t.Error("mapError(nil) != nil")
	}
}

// TestUnavailable takes the database out of reach behind a proxy: every
// method fails with ErrUnavailable, not ErrAmbiguousCommit (no COMMIT was
// sent), and nothing is written. Once the proxy forwards again, the same
// Store works again, and a resend is stored once.
func TestUnavailable(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	direct := pgtest.Open(t, dbURL)
	ctx := t.Context()
	for _, u := range []string{"a", "b", "c"} {
		if err := direct.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := direct.CreateGroup(ctx, storage.Group{ID: "g", Name: "g", OwnerID: "a", CreatedAt: time.Now()}, []string{"a", "b"}, 10); err != nil {
		t.Fatal(err)
	}
	proxy := newOutageProxy(t, dbURL)
	s := pgtest.Open(t, proxy.url)

	conv := storage.C2CConversationID("a", "b")
	msg := func(cmid string) storage.NewMessage {
		return storage.NewMessage{
			ConversationID: conv, MsgID: time.Now().UnixNano(), SenderID: "a", SenderDeviceID: "d",
			ClientMsgID: cmid, Content: []byte(cmid), CreatedAt: time.Now(), Members: []string{"a", "b"},
		}
	}
	m1, m2 := msg("cmid-1"), msg("cmid-2")
	if _, err := s.AppendMessages(ctx, []storage.NewMessage{m1}); err != nil {
		t.Fatal(err)
	}

	// Every method, reads and writes, as one call each.
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"AppendMessages", func(ctx context.Context) error {
			_, err := s.AppendMessages(ctx, []storage.NewMessage{m2})
			return err
		}},
		{"ListMessages", func(ctx context.Context) error {
			_, err := s.ListMessages(ctx, conv, 0, storage.OpenSeq, 10)
			return err
		}},
		{"ListMessagesBefore", func(ctx context.Context) error {
			_, err := s.ListMessagesBefore(ctx, conv, 0, storage.OpenSeq, 10)
			return err
		}},
		{"LatestSeq", func(ctx context.Context) error { _, err := s.LatestSeq(ctx, conv); return err }},
		{"GetMembership", func(ctx context.Context) error { _, err := s.GetMembership(ctx, conv, "a"); return err }},
		{"GetUser", func(ctx context.Context) error { _, err := s.GetUser(ctx, "a"); return err }},
		{"GetUserByUsername", func(ctx context.Context) error { _, err := s.GetUserByUsername(ctx, "a"); return err }},
		{"CreateUser", func(ctx context.Context) error {
			return s.CreateUser(ctx, storage.User{ID: "d", Username: "d", CreatedAt: time.Now()})
		}},
		{"CreateSession", func(ctx context.Context) error {
			return s.CreateSession(ctx, storage.Session{ID: "s", UserID: "a", DeviceID: "d", CreatedAt: time.Now(), ExpiresAt: time.Now()})
		}},
		{"GetSession", func(ctx context.Context) error { _, err := s.GetSession(ctx, "s"); return err }},
		{"RevokeSession", func(ctx context.Context) error { return s.RevokeSession(ctx, "s") }},
		{"CreateGroup", func(ctx context.Context) error {
			return s.CreateGroup(ctx, storage.Group{ID: "g2", Name: "g2", OwnerID: "a", CreatedAt: time.Now()}, []string{"a"}, 10)
		}},
		{"GetGroup", func(ctx context.Context) error { _, err := s.GetGroup(ctx, "g"); return err }},
		{"AddMembers", func(ctx context.Context) error { _, err := s.AddMembers(ctx, "g", []string{"c"}, 10); return err }},
		{"LeaveGroup", func(ctx context.Context) error { return s.LeaveGroup(ctx, "g", "b") }},
		{"ListMembers", func(ctx context.Context) error { _, err := s.ListMembers(ctx, "g"); return err }},
		{"MembersAt", func(ctx context.Context) error { _, err := s.MembersAt(ctx, "g", 1); return err }},
		{"AdvanceCursors", func(ctx context.Context) error {
			return s.AdvanceCursors(ctx, []storage.DeviceCursor{{UserID: "a", DeviceID: "d", ConversationID: conv, DeliveredSeq: 1}})
		}},
		{"ListConversations", func(ctx context.Context) error { _, err := s.ListConversations(ctx, "a", "d", false); return err }},
	}
	wantUnavailable := func(t *testing.T, name string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrUnavailable", name, err)
		}
		if errors.Is(err, storage.ErrAmbiguousCommit) {
			t.Errorf("%s: %v is ErrAmbiguousCommit, but no COMMIT was sent", name, err)
		}
	}

	t.Run("server gone", func(t *testing.T) {
		proxy.set(proxyCut)
		for _, c := range calls {
			wantUnavailable(t, c.name, c.call(ctx))
		}
	})
	t.Run("no answer", func(t *testing.T) {
		proxy.set(proxySilent)
		for _, c := range calls {
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := c.call(cctx)
			cancel()
			wantUnavailable(t, c.name, err)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v does not say the deadline passed", c.name, err)
			}
		}
	})

	proxy.set(proxyForwarding)
	waitAvailable(t, s)
	// m1 was stored before the outage, m2 not: the resend of both stores
	// m2 once, and m1 is the duplicate.
	res, err := s.AppendMessages(ctx, []storage.NewMessage{m1, m2})
	if err != nil {
		t.Fatalf("append after the outage: %v", err)
	}
	if !res[0].Duplicate || res[0].Message.Seq != 1 || res[1].Duplicate || res[1].Message.Seq != 2 {
		t.Fatalf("resend after the outage: %+v, want m1 a duplicate at seq 1 and m2 new at seq 2", res)
	}
	res, err = s.AppendMessages(ctx, []storage.NewMessage{m2})
	if err != nil || !res[0].Duplicate || res[0].Message.Seq != 2 {
		t.Fatalf("second resend of m2: %+v, %v; want the duplicate at seq 2", res, err)
	}
	msgs, err := direct.ListMessages(ctx, conv, 0, storage.OpenSeq, 10)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("stored %d messages (%v), want 2", len(msgs), err)
	}
	// None of the refused writes happened.
	set, err := direct.ListMembers(ctx, "g")
	if err != nil || set.Epoch != 1 || len(set.Members) != 2 {
		t.Fatalf("group after the outage: %+v, %v; want a and b at epoch 1", set, err)
	}
	for _, missing := range []error{
		func() error { _, err := direct.GetUser(ctx, "d"); return err }(),
		func() error { _, err := direct.GetSession(ctx, "s"); return err }(),
		func() error { _, err := direct.GetGroup(ctx, "g2"); return err }(),
	} {
		if !errors.Is(missing, storage.ErrNotFound) {
			t.Fatalf("a write refused during the outage was stored: %v", missing)
		}
	}
}

// waitAvailable waits for s to answer again: each call the pool makes on a
// connection that died in the outage fails once, as unavailable, and the
// pool drops it.
func waitAvailable(t *testing.T, s *postgres.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.LatestSeq(t.Context(), "c2c:a:b")
		if err == nil {
			return
		}
		if !errors.Is(err, storage.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("the store does not recover after the outage: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type proxyState int

const (
	proxyForwarding proxyState = iota
	proxyCut                   // the server is gone: connections closed, new ones closed at once
	proxySilent                // a partition: nothing gets through, new connections hang
)

// outageProxy is a TCP proxy to PostgreSQL that can take the database out
// of reach and bring it back.
type outageProxy struct {
	url    string
	server string
	mu     sync.Mutex
	state  proxyState
	conns  map[net.Conn]bool // every open connection, both sides
}

func newOutageProxy(t *testing.T, dbURL string) *outageProxy {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &outageProxy{server: u.Host, conns: map[net.Conn]bool{}}
	u.Host = l.Addr().String()
	p.url = u.String()
	t.Cleanup(func() {
		l.Close()
		p.set(proxyCut)
	})
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(client)
		}
	}()
	return p
}

// set changes the state. Cutting closes every connection; so does
// restoring, since connections that lived through a silence have lost
// bytes and their clients must reconnect.
func (p *outageProxy) set(state proxyState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if state != proxySilent {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	p.state = state
}

func (p *outageProxy) serve(client net.Conn) {
	p.mu.Lock()
	state := p.state
	if state == proxyCut {
		p.mu.Unlock()
		client.Close()
		return
	}
	p.conns[client] = true
	p.mu.Unlock()
	if state == proxySilent {
		io.Copy(io.Discard, client) // until set closes it
		return
	}
	server, err := net.Dial("tcp", p.server)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if !p.conns[client] { // closed by set meanwhile
		p.mu.Unlock()
		server.Close()
		return
	}
	p.conns[server] = true
	p.mu.Unlock()
	go p.pipe(server, client)
	p.pipe(client, server)
}

// pipe copies from → to while forwarding, and drops what it reads while
// silent.
func (p *outageProxy) pipe(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			forward := p.state == proxyForwarding
			p.mu.Unlock()
			if forward {
				if _, err := to.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
