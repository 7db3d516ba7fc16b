package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/storagetest"
)

// factory makes each test's database a file in its own temporary directory.
func factory(t testing.TB) func(testing.TB) storage.Store {
	path := filepath.Join(t.TempDir(), "data", "starling.db")
	return func(t testing.TB) storage.Store {
		return openTest(t, path)
	}
}

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, factory)
}

// TestPragmas checks the settings durability and concurrency rest on, on
// the writer and on the readers.
func TestPragmas(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "p.db"))
	ctx := t.Context()
	for _, c := range []struct {
		pool   string
		pragma string
		want   string
	}{
		{"writer", "journal_mode", "wal"},
		{"reader", "journal_mode", "wal"},
		{"writer", "synchronous", "2"}, // FULL
		{"reader", "synchronous", "2"},
		{"writer", "foreign_keys", "1"},
		{"reader", "foreign_keys", "1"},
		{"reader", "query_only", "1"},
		{"writer", "query_only", "0"},
		{"writer", "busy_timeout", "10000"},
		{"reader", "busy_timeout", "10000"},
	} {
		db := s.w
		if c.pool == "reader" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("%s: PRAGMA %s: %v", c.pool, c.pragma, err)
		}
		if !strings.EqualFold(got, c.want) {
			t.Errorf("%s: PRAGMA %s = %s, want %s", c.pool, c.pragma, got, c.want)
		}
	}
}

// TestReadsDoNotWaitForWrites holds the write lock and reads meanwhile.
func TestReadsDoNotWaitForWrites(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := t.Context()
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE users SET display_name = 'changing' WHERE id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u, err := s.GetUser(rctx, "u1")
	if err != nil {
		t.Fatalf("read while a write transaction is open: %v", err)
	}
	if u.DisplayName != "" {
		t.Fatalf("read saw an uncommitted write: display name %q", u.DisplayName)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"under a file":   filepath.Join(file, "sub", "starling.db"),
		"a directory":    dir,
		"not a database": garbage,
		"empty":          "",
		"in memory":      ":memory:",
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", path)
			}
			if !strings.HasPrefix(err.Error(), "sqlite: open "+path) {
				t.Fatalf("Open(%q) error %q does not say what it opened", path, err)
			}
			t.Log(err)
		})
	}
}

// TestOddPath opens a path with characters that mean something in a URI.
func TestOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag", "100% star?ling.db")
	s := openTest(t, path)
	if err := s.CreateUser(t.Context(), storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not where it was asked to be: %v", err)
	}
}

// TestMigrationsRecorded checks the runner's bookkeeping: one row per
// embedded migration, unchanged by reopening.
func TestMigrationsRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s := openTest(t, path)
		var n int
		var newest int64
		if err := s.r.QueryRowContext(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &newest); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || newest != ms[len(ms)-1].Version {
			t.Fatalf("schema_migrations holds %d rows up to version %d, want %d up to %d", n, newest, len(ms), ms[len(ms)-1].Version)
		}
		s.Close()
	}
	// A database from a newer binary is refused.
	s := openTest(t, path)
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(t.Context(), path); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}

// TestAckedSurvivesKill kills a process that is appending, at once and
// without Close, and checks that every append it saw return is there.
func TestAckedSurvivesKill(t *testing.T) {
	const childEnv = "STARLING_SQLITE_KILL_CHILD"
	if path := os.Getenv(childEnv); path != "" {
		appendUntilKilled(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestAckedSurvivesKill$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked int64
	lines := bufio.NewScanner(out)
	for acked < 200 && lines.Scan() {
		fmt.Sscanf(lines.Text(), "acked %d", &acked)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if acked < 200 {
		t.Fatalf("the child stopped after %d acks", acked)
	}

	s := openTest(t, path)
	conv := storage.C2CConversationID("a", "b")
	msgs, err := s.ListMessages(t.Context(), conv, 0, storage.OpenSeq, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(msgs)) < acked {
		t.Fatalf("%d messages acked, %d stored", acked, len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i)+1 || m.ClientMsgID != fmt.Sprint(m.Seq) {
			t.Fatalf("message %d: seq %d, client id %q", i, m.Seq, m.ClientMsgID)
		}
	}
}

// appendUntilKilled is the child of TestAckedSurvivesKill: it appends one
// message at a time and prints each seq once AppendMessages has returned.
func appendUntilKilled(t *testing.T, path string) {
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b"} {
		if err := s.CreateUser(t.Context(), storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute) // in case the parent is gone
	for i := 1; time.Now().Before(deadline); i++ {
		res, err := s.AppendMessages(t.Context(), []storage.NewMessage{{
			ConversationID: storage.C2CConversationID("a", "b"), MsgID: int64(i), SenderID: "a",
			ClientMsgID: fmt.Sprint(i), Content: []byte("x"), CreatedAt: time.Now(), Members: []string{"a", "b"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("acked %d\n", res[0].Message.Seq)
	}
}

// TestLockedOutIsUnavailable: a write lock held by another connection (say
// another process) past the busy timeout is SQLITE_BUSY, which callers see
// as storage.ErrUnavailable; so is a caller's deadline passing while the
// Store waits for the lock.
func TestLockedOutIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	s := openTest(t, path)
	ctx := t.Context()
	rawConn := func(busyMillis int) *sql.DB {
		db, err := sql.Open("sqlite", dsn(path, url.Values{
			"_busy_timeout": {fmt.Sprint(busyMillis)},
			"_txlock":       {"immediate"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	holder, err := rawConn(0).BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()

	_, err = rawConn(50).ExecContext(ctx, `INSERT INTO users (id, username, display_name, password_hash, created_at)
		VALUES ('x', 'x', '', x'', 0)`)
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
		t.Fatalf("a write while another connection holds the lock: %v, want SQLITE_BUSY", err)
	}
	if mapped := mapErr(err); !errors.Is(mapped, storage.ErrUnavailable) || !errors.Is(mapped, se) {
		t.Fatalf("mapErr(%v) = %v, want ErrUnavailable with the cause kept", err, mapped)
	}

	// The Store's writer would wait busyTimeout; the caller's deadline
	// ends the wait first.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = s.CreateUser(cctx, storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("CreateUser while locked out past its deadline: %v, want ErrUnavailable", err)
	}
	holder.Rollback()
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}); err != nil {
		t.Fatalf("CreateUser once the lock is free: %v", err)
	}
}

// TestWriterQueueDeadlineIsUnavailable: a caller whose deadline passes
// while it waits for the single writer gets storage.ErrUnavailable.
func TestWriterQueueDeadlineIsUnavailable(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "queue.db"))
	ctx := t.Context()
	for _, u := range []string{"a", "b"} {
		if err := s.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil) // takes the one write connection
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = s.AppendMessages(cctx, []storage.NewMessage{{
		ConversationID: storage.C2CConversationID("a", "b"), SenderID: "a", ClientMsgID: "1",
		CreatedAt: time.Now(), Members: []string{"a", "b"},
	}})
	if !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AppendMessages queued past its deadline: %v, want ErrUnavailable (deadline exceeded)", err)
	}
	if err := s.LeaveGroup(cctx, "g", "a"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("LeaveGroup past its deadline: %v, want ErrUnavailable", err)
	}
}

// TestUpgradeFrom0001 opens a database that an older binary left at
// schema version 1, with data: migration 0002 turns its memberships into
// periods and gives its groups epoch 1.
func TestUpgradeFrom0001(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	old, err := sql.Open("sqlite", dsn(path, url.Values{"_foreign_keys": {"on"}, "_journal_mode": {"WAL"}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := createMigrationsTable(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := applyMigration(ctx, old, ms[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, storagetest.LegacySQL("x''")); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	storagetest.CheckUpgraded0001(t, openTest(t, path))
}
