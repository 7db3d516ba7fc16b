package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starling-im/starling/storage"
)

// SQLSTATE codes the backend acts on.
const (
	codeSerializationFailure = "40001" // retry the transaction
	codeDeadlock             = "40P01" // PostgreSQL picked us as a deadlock victim: retry too
	codeStatementUnknown     = "40003" // CockroachDB: statement_completion_unknown, an ambiguous result
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
)

// Every write transaction is SERIALIZABLE, set explicitly: it is
// CockroachDB's default but not PostgreSQL's, and the code relies on it
// (e.g. reading latest_seq and then writing memberships needs no lock).
var (
	cockroachTx = pgx.TxOptions{IsoLevel: pgx.Serializable}
	// postgresTx also turns sequential scans off for the transaction (one
	// round trip still: pgx sends BeginQuery as one simple query).
	// PostgreSQL's serializable isolation takes a predicate lock on the
	// whole table for every sequential scan, so one seq scan in a write
	// transaction conflicts with every concurrent writer of that table;
	// and the planner picks seq scans for small tables, e.g. the dedup
	// lookup on a young messages table, or a foreign key check on a small
	// conversations table. Measured here with 8 writers on a fresh
	// database: 1.4–2 attempts per send with them, 1.0 without. Write
	// transactions only look rows up by key, so index scans are right
	// for them anyway.
	postgresTx = pgx.TxOptions{BeginQuery: "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL enable_seqscan = off"}
)

// inTx runs fn in a SERIALIZABLE transaction, retrying the whole of it on
// serialization failures (SQLSTATE 40001), and commits. Every write goes
// through here. fn may run several times, so it must have no effect outside
// the transaction: no pushes, no publishes, no appends to a caller's slice;
// it sets its results afresh on each attempt.
//
// The two servers need two protocols:
//
//   - CockroachDB: crdbpgx.ExecuteTx, which retries inside one transaction
//     with SAVEPOINT cockroach_restart, where RELEASE is the real commit and
//     its error is checked.
//   - PostgreSQL: there RELEASE commits nothing, and ExecuteTx ignores the
//     error of the final COMMIT, which is where PostgreSQL reports most
//     serialization failures: the caller would see success for a
//     transaction that was rolled back. So each attempt is a whole
//     BEGIN … COMMIT, the COMMIT's error is checked, and crdb.ExecuteCtx
//     repeats the attempt on 40001.
//
// An error from a COMMIT whose outcome is unknown (the connection broke
// after the COMMIT was sent) wraps storage.ErrAmbiguousCommit.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	s.transactions.Add(1)
	var err error
	if s.cockroach {
		err = crdbpgx.ExecuteTx(ctx, s.pool, cockroachTx, func(tx pgx.Tx) error {
			s.attempts.Add(1)
			return fn(tx)
		})
		var ambiguous *crdb.AmbiguousCommitError
		if errors.As(err, &ambiguous) || sqlState(err) == codeStatementUnknown {
			err = fmt.Errorf("%w: %w", storage.ErrAmbiguousCommit, err)
		}
	} else {
		err = s.retryPostgres(ctx, func(ctx context.Context) error { return s.attempt(ctx, fn) })
	}
	return mapError(err)
}

// retryPostgres runs attempt, a whole PostgreSQL transaction, and runs it
// again after a backoff while it fails with a serialization failure.
func (s *Store) retryPostgres(ctx context.Context, attempt func(ctx context.Context) error) error {
	retry := 0
	return crdb.ExecuteCtx(ctx, func(ctx context.Context, _ ...any) error {
		if err := backoff(ctx, retry); err != nil {
			return err
		}
		retry++
		s.attempts.Add(1)
		return attempt(ctx)
	})
}

// backoff waits before the retry-th retry (none before the first try): a
// random time up to 1ms, 2ms, 4ms, … 128ms. PostgreSQL's serializable
// isolation aborts one of two conflicting transactions as soon as the
// conflict is certain, often while the other is still running; retried at
// once, the loser tends to meet the winner again, and a crowd of writers
// can keep aborting one another. Random waits spread them out.
func backoff(ctx context.Context, retry int) error {
	if retry == 0 {
		return nil
	}
	limit := time.Millisecond << min(retry-1, 7)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt is one whole PostgreSQL transaction: BEGIN, fn, COMMIT.
func (s *Store) attempt(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, postgresTx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		// Rollback can fail only on a broken connection, which the pool
		// then drops; fn's error is the one that matters.
		_ = tx.Rollback(ctx)
		return retryableDeadlock(err)
	}
	return s.commitErr(tx.Commit(ctx))
}

// commitErr classifies the error of a COMMIT.
func (s *Store) commitErr(err error) error {
	if err == nil {
		return nil
	}
	if commitAmbiguous(err) {
		return fmt.Errorf("commit: %w: %w", storage.ErrAmbiguousCommit, err)
	}
	// A 40001 here is the failure crdbpgx.ExecuteTx would have lost:
	// ExecuteCtx sees it and retries.
	if sqlState(err) == codeSerializationFailure {
		s.commitConflicts.Add(1)
	}
	return fmt.Errorf("commit: %w", err)
}

// commitAmbiguous tells whether a failed COMMIT may have committed anyway.
func commitAmbiguous(err error) bool {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		// The server answered, so it knows: the transaction did not commit
		// (unless it says it does not know).
		return pgErr.Code == codeStatementUnknown
	case errors.Is(err, pgx.ErrTxCommitRollback):
		// The server answered ROLLBACK: an earlier statement had failed.
		return false
	default:
		// Broken connection or cancelled context: only if nothing was sent
		// is the outcome known.
		return !pgconn.SafeToRetry(err)
	}
}

// retryable marks an error for crdb's retry loops, which retry errors whose
// SQLState is 40001. It wraps, so errors.Is/As still see the cause.
type retryable struct{ err error }

func (e retryable) Error() string    { return e.err.Error() }
func (e retryable) Unwrap() error    { return e.err }
func (e retryable) SQLState() string { return codeSerializationFailure }

// retryableDeadlock makes a PostgreSQL deadlock victim retry like a
// serialization failure: it was rolled back, and running it again is the
// cure. (CockroachDB resolves deadlocks with 40001 itself.)
// (Statements lock rows in a consistent order, so deadlocks should not
// happen; this is the safety net.)
func retryableDeadlock(err error) error {
	if sqlState(err) == codeDeadlock {
		return retryable{err}
	}
	return err
}

// mapError turns database errors into the storage sentinels, keeping the
// database's error in the chain. Callers add which operation failed. Every
// Store method's error goes through it (inTx's included), so errors are
// classified in one place; an error already mapped is returned as it is,
// which makes mapping twice harmless.
func mapError(err error) error {
	switch {
	case err == nil || storage.HasSentinel(err):
		// An ambiguous commit stays only that: the caller must not take it
		// for "nothing was written".
		return err
	case unavailable(err):
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	switch sqlState(err) {
	case codeUniqueViolation:
		return fmt.Errorf("%w: %w", storage.ErrAlreadyExists, err)
	case codeForeignKeyViolation:
		// Every foreign key points at a user or a conversation that must
		// exist first: a violation means "no such user/conversation".
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return err
}

// SQLSTATE codes that mean the server cannot serve us now, though it may
// soon: class 08 (connection exception) is matched by its prefix.
const (
	codeAdminShutdown      = "57P01" // the server is shutting down, or the connection was terminated
	codeCrashShutdown      = "57P02"
	codeCannotConnectNow   = "57P03" // the server is starting up or shutting down
	codeTooManyConnections = "53300"
)

// unavailable tells whether err means the database could not be reached or
// did not answer in time. inTx has already told an unknown COMMIT outcome
// apart (ErrAmbiguousCommit, checked first by mapError), so a broken
// connection here broke before any COMMIT was sent: nothing was written.
func unavailable(err error) bool {
	if code := sqlState(err); code != "" {
		// The server answered, and its code says whether it is the server's
		// state or our request. A connect error carrying, say, a wrong
		// password (28P01) is not a passing outage, and retrying will not cure
		// it.
		switch code {
		case codeAdminShutdown, codeCrashShutdown, codeCannotConnectNow, codeTooManyConnections:
			return true
		}
		return strings.HasPrefix(code, "08")
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || // refused, unreachable, the handshake cut
		errors.As(err, &netErr) || // reset, timed out, no route
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || // the server closed the connection
		errors.Is(err, pgconn.ErrConnClosed) || // pgx had closed it after an earlier failure
		errors.Is(err, context.DeadlineExceeded) // no answer within the call's deadline
}
