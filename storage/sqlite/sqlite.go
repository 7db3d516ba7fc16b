package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/starling-im/starling/storage"
)

var _ storage.Store = (*Store)(nil)

// busyTimeout is how long a connection waits for a lock held by another
// connection (a checkpoint, or another process) before failing.
const busyTimeout = 10 * time.Second

// Store is a storage.Store on one SQLite file. It is safe for concurrent use.
type Store struct {
	// w is the only connection that writes. SQLite has a single writer
	// anyway; one connection makes writers queue in database/sql instead of
	// spinning on SQLITE_BUSY, and its transactions begin IMMEDIATE so a
	// read-then-write transaction can never fail to upgrade its lock.
	w *sql.DB
	// r is a pool of query-only connections: in WAL mode readers see the
	// last commit and never wait for the writer.
	r     *sql.DB
	reads *reader // s.r's queries, prepared once

	closeOnce sync.Once
	closeErr  error
}

// Open opens the SQLite database at path, creating the file and its
// directory if needed, and migrates it to the current schema. path must be
// a file (not ":memory:": the writer and readers need to share it).
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

func open(ctx context.Context, path string) (_ *Store, err error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, errors.New("path must name a file")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, err
	}

	s := &Store{}
	defer func() {
		if err != nil {
			s.Close() //nolint:errcheck // the open error says more
		}
	}()

	// Every connection gets the pragmas through its DSN, so a connection that
	// database/sql reopens gets them too. synchronous=FULL in WAL mode fsyncs
	// the log at every commit: a returned commit survives a power cut.
	common := url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_foreign_keys": {"on"},
		"_synchronous":  {"FULL"},
	}
	wq := maps.Clone(common)       // shallow is enough: Set replaces values
	wq.Set("_journal_mode", "WAL") // persistent: set once, by the writer
	wq.Set("_txlock", "immediate")
	// Multi-row statements keep a statement journal so a failing row can be
	// undone alone; in memory it costs no file writes (it is never needed
	// after a crash: the WAL is what makes commits durable). A larger page
	// cache keeps a batch's dirty pages from spilling before the commit.
	wq.Add("_pragma", "temp_store(memory)")
	wq.Add("_pragma", "cache_size(-32768)")
	// The writer's connections are writerConns: the send path runs on them
	// directly (rawtx.go).
	wc, err := sqlite.NewConnector(dsn(abs, wq))
	if err != nil {
		return nil, err
	}
	s.w = sql.OpenDB(writerConnector{wc})
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0) // keep it: the send path's statements live on it
	s.w.SetConnMaxLifetime(0)
	if err := s.w.PingContext(ctx); err != nil {
		return nil, err
	}
	// journal_mode=WAL fails silently (the old mode stays) where the file
	// system cannot do it; durability and reads-beside-writes depend on it.
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, err
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.w); err != nil {
		return nil, err
	}

	rq := maps.Clone(common)
	rq.Set("_query_only", "on")
	if s.r, err = sql.Open("sqlite", dsn(abs, rq)); err != nil {
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(n)
	s.r.SetMaxIdleConns(n)
	if err := s.r.PingContext(ctx); err != nil {
		return nil, err
	}
	s.reads = newReader(s.r)

	return s, nil
}

// dsn makes a file: URI, which escapes any character of the path that would
// otherwise be read as the start of the query.
func dsn(path string, q url.Values) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}).String()
}

// Close closes the database. Closing again does nothing and returns the
// first Close's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.reads != nil {
			errs = append(errs, s.reads.close())
		}
		// The writer closes last: the last connection to close checkpoints
		// the log into the database file.
		for _, db := range []*sql.DB{s.r, s.w} {
			if db != nil {
				errs = append(errs, db.Close())
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

// writeTx runs fn in a transaction on the write connection and commits it.
// With synchronous=FULL, a nil return means the commit is on disk.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // fn's error is the one to report
		return err
	}
	return tx.Commit()
}

// mapErr turns driver errors that mean something to callers into the
// storage sentinels, keeping the original in the chain. Every method's
// error goes through it; an error already mapped is returned as it is.
func mapErr(err error) error {
	switch {
	case err == nil || storage.HasSentinel(err):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return storage.ErrNotFound
	case errors.Is(err, context.DeadlineExceeded):
		// The caller's deadline passed while waiting for the writer (whose
		// queue is in database/sql) or for a lock: the database did not
		// answer in time.
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %w", storage.ErrAlreadyExists, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
		}
		// BUSY and LOCKED (and their extended codes) come back once a lock
		// was held by another connection or process past busyTimeout: the
		// statement did nothing, and may succeed when tried again.
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
	}
	return err
}

// Times are stored as unix milliseconds and come back in UTC.
func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nonNil keeps BLOB NOT NULL columns happy: a nil slice binds as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }
