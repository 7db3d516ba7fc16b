package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres"
	"github.com/starling-im/starling/storage/postgres/pgtest"
	"github.com/starling-im/starling/storage/storagetest"
)

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{
		"",
		"mysql://root@127.0.0.1/starling",
		"host=127.0.0.1 dbname=starling", // a pgx DSN, but not a URL
		"postgres://127.0.0.1:notaport/starling",
		"postgres://%zz",
		"postgres://127.0.0.1/starling?sslmode=bogus",
	} {
		t.Run(u, func(t *testing.T) {
			s, err := postgres.Open(t.Context(), u)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), "bad database URL") {
				t.Fatalf("error %q does not say the URL is bad", err)
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		// A port that was just free: nothing listens there.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		wantUnreachable(t, "postgres://postgres@"+addr+"/starling?sslmode=disable", 5*time.Second)
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		// A server that accepts and never answers: only the connect
		// timeout ends the wait.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		wantUnreachable(t, "postgres://postgres@"+l.Addr().String()+"/starling?sslmode=disable&connect_timeout=1", 5*time.Second)
	})
}

func wantUnreachable(t *testing.T, u string, within time.Duration) {
	t.Helper()
	start := time.Now()
	s, err := postgres.Open(t.Context(), u)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	if d := time.Since(start); d > within {
		t.Errorf("Open took %v, want under %v", d, within)
	}
	if !strings.Contains(err.Error(), "database unreachable") {
		t.Errorf("error %q does not say the database is unreachable", err)
	}
	t.Logf("error: %v", err)
}

func TestVersionDetection(t *testing.T) {
	for version, want := range map[string]bool{
		"CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu, built 2024/05/15 21:28:29, go1.22.2 X:nocoverageredesign)":                     true,
		"CockroachDB OSS v21.2.17 (x86_64-unknown-linux-gnu, built 2022/11/07 20:42:28, go1.16.6)":                                    true,
		"PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit": false,
	} {
		if got := postgres.DetectCockroach(version); got != want {
			t.Errorf("isCockroach(%q) = %v, want %v", version, got, want)
		}
	}

	s := pgtest.Open(t, pgtest.NewDatabase(t))
	crdb, version := postgres.IsCockroach(s)
	if crdb || !strings.HasPrefix(version, "PostgreSQL") {
		t.Fatalf("detected cockroach=%v from %q; the test server is PostgreSQL", crdb, version)
	}
}

// TestOpenCreatesDatabase: pointing Open at a database that does not exist
// yet creates it, also when several nodes of a new cluster start at the
// same moment and race to create it.
func TestOpenCreatesDatabase(t *testing.T) {
	base := pgtest.NewDatabase(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/") + "_created"
	u.Path = "/" + name
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			st, err := postgres.Open(t.Context(), u.String())
			if err == nil {
				_, err = st.LatestSeq(t.Context(), "c2c:a:b")
				st.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}

// TestMigrateConcurrently starts several nodes on one fresh database at
// once, then once more: every start succeeds and each migration is
// recorded once.
func TestMigrateConcurrently(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	stores := make([]*postgres.Store, nodes)
	for i := range nodes {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(t.Context(), dbURL)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		} else {
			stores[i].Close()
		}
	}
	s := pgtest.Open(t, dbURL) // and again, on a migrated database
	var versions, distinct int
	err := postgres.Pool(s).QueryRow(t.Context(),
		`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&versions, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	want, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if versions != want || distinct != want {
		t.Fatalf("schema_migrations has %d rows (%d versions), want %d", versions, distinct, want)
	}
}

// TestUpgradeFrom0001 starts several nodes at once on a database that an
// older binary left at schema version 1, with data: each start succeeds,
// the memberships read as periods and the groups have epoch 1.
func TestUpgradeFrom0001(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ctx := t.Context()
	if err := postgres.MigrateTo(ctx, dbURL, 1); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, storagetest.LegacySQL(`'\x'::BYTEA`)) // simple protocol: several statements
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			var s *postgres.Store
			if s, errs[i] = postgres.Open(ctx, dbURL); errs[i] == nil {
				s.Close()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	storagetest.CheckUpgraded0001(t, pgtest.Open(t, dbURL))
}

// TestWriteTransactionsAreSerializable: the PostgreSQL path begins its
// transactions with its own BEGIN query, which must still say SERIALIZABLE.
func TestWriteTransactionsAreSerializable(t *testing.T) {
	s := pgtest.Open(t, pgtest.NewDatabase(t))
	var isolation, seqscan string
	err := postgres.InTx(t.Context(), s, func(tx pgx.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT current_setting('transaction_isolation'), current_setting('enable_seqscan')`).
			Scan(&isolation, &seqscan)
	})
	if err != nil {
		t.Fatal(err)
	}
	if isolation != "serializable" || seqscan != "off" {
		t.Fatalf("transaction_isolation = %q, enable_seqscan = %q; want serializable, off", isolation, seqscan)
	}
	// SET LOCAL ends with the transaction: the connection is back to normal.
	if err := postgres.Pool(s).QueryRow(t.Context(), `SHOW enable_seqscan`).Scan(&seqscan); err != nil {
		t.Fatal(err)
	}
	if seqscan != "on" {
		t.Fatalf("enable_seqscan = %q after the transaction, want on", seqscan)
	}
}

// writeSkew runs two transactions through s's runner that each read both
// rows of a table and update one, held so that both have read and written
// before either commits. Under SERIALIZABLE, PostgreSQL then fails the
// second COMMIT with 40001: every statement of both first attempts had
// succeeded, so the failure can only come from COMMIT. It returns the
// final values and how many attempts were made.
func writeSkew(t *testing.T, s *postgres.Store) (v1, v2, attempts, commitConflicts int64) {
	t.Helper()
	ctx := t.Context()
	pool := postgres.Pool(s)
	if _, err := pool.Exec(ctx, `
		CREATE TABLE skew (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
		INSERT INTO skew VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	before, beforeConflicts := postgres.Attempts(s), postgres.CommitConflicts(s)
	var arrived sync.WaitGroup // both first attempts have read and written
	arrived.Add(2)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for id := int64(1); id <= 2; id++ {
		wg.Go(func() {
			first := true
			errs[id] = postgres.InTx(ctx, s, func(tx pgx.Tx) error {
				var sum int64
				if err := tx.QueryRow(ctx, `SELECT sum(v) FROM skew`).Scan(&sum); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE skew SET v = $1 WHERE id = $2`, sum+1, id); err != nil {
					return err
				}
				if first { // test instrumentation, not a side effect of the work
					first = false
					arrived.Done()
					arrived.Wait()
				}
				return nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs[1:] {
		if err != nil {
			t.Fatalf("transaction failed: %v", err)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT (SELECT v FROM skew WHERE id = 1), (SELECT v FROM skew WHERE id = 2)`).Scan(&v1, &v2); err != nil {
		t.Fatal(err)
	}
	return v1, v2, postgres.Attempts(s) - before, postgres.CommitConflicts(s) - beforeConflicts
}

func TestCommitTimeSerializationFailureIsRetried(t *testing.T) {
	s := pgtest.Open(t, pgtest.NewDatabase(t))
	v1, v2, attempts, commitConflicts := writeSkew(t, s)
	// Serially, whichever ran first wrote 1 and the other 2.
	if !(v1 == 1 && v2 == 2 || v1 == 2 && v2 == 1) {
		t.Errorf("rows are %d and %d, want 1 and 2: a write was lost or skewed", v1, v2)
	}
	// Both first attempts ran every statement without error (they met at
	// the barrier), so the conflict can only surface at COMMIT. A retry
	// may conflict again if it starts before the other transaction has
	// committed: 3 attempts or more.
	if commitConflicts < 1 {
		t.Errorf("%d COMMITs failed with 40001, want at least 1", commitConflicts)
	}
	if attempts < 3 {
		t.Errorf("%d attempts, want at least 3 (two, and a retry after the failed COMMIT)", attempts)
	}
	t.Logf("%d attempts, %d failed COMMITs", attempts, commitConflicts)
}

// TestCockroachProtocolLosesCommitErrorOnPostgres shows the trap the
// PostgreSQL path avoids, and that writeSkew detects it: with
// crdbpgx.ExecuteTx on PostgreSQL, the failed COMMIT is ignored, both
// callers see success, and one write is gone. If this starts failing,
// cockroach-go now checks the COMMIT.
func TestCockroachProtocolLosesCommitErrorOnPostgres(t *testing.T) {
	s := pgtest.Open(t, pgtest.NewDatabase(t))
	postgres.ForceCockroach(s, true)
	v1, v2, attempts, _ := writeSkew(t, s)
	if lost := v1+v2 == 1; !lost {
		t.Errorf("rows are %d and %d after %d attempts: the savepoint protocol no longer loses the write", v1, v2, attempts)
	}
}

// TestConcurrentIdenticalSends: the same (sender, client_msg_id) sent at
// once through two nodes is stored once; every caller gets that copy, and
// no seq is used up by the losers, whether they raced on the same
// conversation (row lock) or on two (unique index).
func TestConcurrentIdenticalSends(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	nodes := []*postgres.Store{pgtest.Open(t, dbURL), pgtest.Open(t, dbURL)}
	ctx := t.Context()
	for _, u := range []string{"a", "b", "c"} {
		if err := nodes[0].CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	const senders = 6
	for round := range 5 {
		cmid := fmt.Sprintf("cmid-%d", round)
		var start, wg sync.WaitGroup
		start.Add(1)
		results := make([]storage.AppendResult, senders)
		errs := make([]error, senders)
		for i := range senders {
			// Half to a:b, half to a:c: the same client message id from
			// sender a, as a buggy or malicious client might send.
			conv := storage.C2CConversationID("a", []string{"b", "c"}[i%2])
			p, _ := storage.ParseConversationID(conv)
			msg := storage.NewMessage{
				ConversationID: conv, MsgID: int64(round*100 + i), SenderID: "a", SenderDeviceID: "d",
				ClientMsgID: cmid, Content: []byte("hi"), CreatedAt: time.Now(), Members: p.Users[:],
			}
			wg.Go(func() {
				start.Wait()
				var res []storage.AppendResult
				res, errs[i] = nodes[i%2].AppendMessages(ctx, []storage.NewMessage{msg})
				if errs[i] == nil {
					results[i] = res[0]
				}
			})
		}
		start.Done()
		wg.Wait()
		stored := 0
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("round %d sender %d: %v", round, i, errs[i])
			}
			if !r.Duplicate {
				stored++
			}
			if !sameMessage(r.Message, results[0].Message) {
				t.Fatalf("round %d: sender %d got %+v, sender 0 got %+v", round, i, r.Message, results[0].Message)
			}
		}
		if stored != 1 {
			t.Fatalf("round %d: %d copies stored, want 1", round, stored)
		}
	}
	// Five messages were stored, so the two conversations' seqs add up to
	// five, with no gap.
	var total int64
	for _, peer := range []string{"b", "c"} {
		conv := storage.C2CConversationID("a", peer)
		latest, err := nodes[0].LatestSeq(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := nodes[0].ListMessages(ctx, conv, 0, storage.OpenSeq, 100)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(msgs)) != latest || (latest > 0 && msgs[len(msgs)-1].Seq != latest) {
			t.Fatalf("%s: latest seq %d but %d messages: a seq was used up", conv, latest, len(msgs))
		}
		total += latest
	}
	if total != 5 {
		t.Fatalf("%d messages stored, want 5", total)
	}
}

func sameMessage(a, b storage.Message) bool {
	return a.ConversationID == b.ConversationID && a.Seq == b.Seq && a.MsgID == b.MsgID &&
		a.ClientMsgID == b.ClientMsgID && a.CreatedAt.Equal(b.CreatedAt) && string(a.Content) == string(b.Content)
}

// TestAmbiguousCommit cuts the connection after COMMIT reached the server
// and before its answer came back: the caller gets ErrAmbiguousCommit, the
// message is in fact stored, and the client's resend returns it as a
// duplicate.
func TestAmbiguousCommit(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	direct := pgtest.Open(t, dbURL)
	ctx := t.Context()
	for _, u := range []string{"a", "b"} {
		if err := direct.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	proxy := newCommitCutter(t, dbURL)
	viaProxy := pgtest.Open(t, proxy.url)

	msg := storage.NewMessage{
		ConversationID: storage.C2CConversationID("a", "b"), MsgID: 1, SenderID: "a", SenderDeviceID: "d",
		ClientMsgID: "cmid-1", Content: []byte("hi"), CreatedAt: time.Now(), Members: []string{"a", "b"},
	}
	proxy.arm()
	_, err := viaProxy.AppendMessages(ctx, []storage.NewMessage{msg})
	if !errors.Is(err, storage.ErrAmbiguousCommit) {
		t.Fatalf("AppendMessages with the COMMIT's answer lost: got %v, want ErrAmbiguousCommit", err)
	}
	// Not "nothing was written": the caller must not take it for that.
	if errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("an ambiguous commit is also ErrUnavailable: %v", err)
	}
	res, err := direct.AppendMessages(ctx, []storage.NewMessage{msg})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[0].Message.Seq != 1 {
		t.Fatalf("resend: %+v, want the first copy (seq 1) as a duplicate", res[0])
	}
}

// commitCutter is a TCP proxy to PostgreSQL that, once armed, forwards the
// next simple-protocol COMMIT to the server, swallows the answer and closes
// the client's connection.
type commitCutter struct {
	url   string
	mu    sync.Mutex
	armed bool
}

func newCommitCutter(t *testing.T, dbURL string) *commitCutter {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("sslmode") != "disable" {
		t.Skip("the proxy reads the protocol: needs sslmode=disable")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	server := u.Host
	u.Host = l.Addr().String()
	c := &commitCutter{url: u.String()}
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			go c.serve(client, server)
		}
	}()
	return c
}

func (c *commitCutter) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
}

func (c *commitCutter) serve(client net.Conn, serverAddr string) {
	defer client.Close()
	server, err := net.Dial("tcp", serverAddr)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	mute := false // once set, the server's answers no longer reach the client
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			mu.Lock()
			m := mute
			mu.Unlock()
			if n > 0 && !m {
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	// The startup message has no type byte; every later one has.
	if !forward(client, server) {
		return
	}
	for {
		head := make([]byte, 5)
		if _, err := io.ReadFull(client, head); err != nil {
			return
		}
		n := int(head[1])<<24 | int(head[2])<<16 | int(head[3])<<8 | int(head[4])
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		c.mu.Lock()
		cut := c.armed && head[0] == 'Q' && strings.HasPrefix(strings.ToLower(string(body)), "commit")
		if cut {
			c.armed = false
		}
		c.mu.Unlock()
		if cut {
			mu.Lock()
			mute = true
			mu.Unlock()
		}
		if _, err := server.Write(append(head, body...)); err != nil {
			return
		}
		if cut {
			time.Sleep(300 * time.Millisecond) // let the server commit
			return
		}
	}
}

// forward copies one untyped (startup) message.
func forward(from, to net.Conn) bool {
	head := make([]byte, 4)
	if _, err := io.ReadFull(from, head); err != nil {
		return false
	}
	n := int(head[0])<<24 | int(head[1])<<16 | int(head[2])<<8 | int(head[3])
	body := make([]byte, n-4)
	if _, err := io.ReadFull(from, body); err != nil {
		return false
	}
	_, err := to.Write(append(head, body...))
	return err == nil
}
