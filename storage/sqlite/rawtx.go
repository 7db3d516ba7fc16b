package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The send path's transaction runs on the write connection's driver
// connection, below database/sql (sql.Conn.Raw): at ordinary load a commit
// holds one or two messages, and database/sql's share of such a commit
// (a goroutine per transaction to watch its context, a statement per
// transaction for each prepared one, BEGIN and COMMIT prepared anew each
// time) was about a tenth of its CPU. The driver is called with a context
// that is never done, so it starts no goroutine per statement to watch one
// either; a caller's deadline still ends the wait for the connection.

// Statements of the send path that take no rows count.
const (
	rawBegin = iota
	rawCommit
	rawRollback
	rawMember
	rawKinds
)

var rawSQL = [rawKinds]string{
	rawBegin:    "BEGIN IMMEDIATE",
	rawCommit:   "COMMIT",
	rawRollback: "ROLLBACK",
	rawMember: `INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq)
		VALUES (?, ?, 0, NULL) ON CONFLICT DO NOTHING`,
}

// rawStmts are the send path's statements prepared on one driver
// connection. Only the goroutine that holds the write connection (inside
// Raw) touches them; database/sql's lock on the connection orders those
// goroutines.
type rawStmts struct {
	conn  driver.Conn // what they are prepared on
	fixed [rawKinds]driver.Stmt
	small [stmtKinds][smallBatch + 1]driver.Stmt
}

// rawTx is a send path transaction on a driver connection.
type rawTx struct {
	c     driver.Conn
	stmts *rawStmts
}

// bg is the context of every driver call: never done (see above).
var bg = context.Background()

// on returns the statements for conn, forgetting those of a connection the
// pool replaced (they went with it: closed, it cannot finalize them).
func (r *rawStmts) on(conn driver.Conn) *rawStmts {
	if r.conn != conn {
		*r = rawStmts{conn: conn}
	}
	return r
}

// close closes the statements if they are on conn, which is open, and
// forgets them.
func (r *rawStmts) close(conn driver.Conn) {
	if r.conn != conn {
		*r = rawStmts{}
		return
	}
	for _, st := range r.fixed {
		if st != nil {
			st.Close() //nolint:errcheck // nothing to do about it
		}
	}
	for kind := range r.small {
		for _, st := range r.small[kind] {
			if st != nil {
				st.Close() //nolint:errcheck // nothing to do about it
			}
		}
	}
	*r = rawStmts{}
}

func (t *rawTx) prepare(query string) (driver.Stmt, error) {
	if p, ok := t.c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(bg, query)
	}
	return t.c.Prepare(query)
}

// fixed returns a statement of the rawKinds, preparing it the first time.
func (t *rawTx) fixed(kind int) (driver.Stmt, error) {
	if st := t.stmts.fixed[kind]; st != nil {
		return st, nil
	}
	st, err := t.prepare(rawSQL[kind])
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", rawSQL[kind], err)
	}
	t.stmts.fixed[kind] = st
	return st, nil
}

// batch runs the statement of kind for n rows with args: one prepared
// once for small n, else prepared for this call (its parse cost is spread
// over many rows). row, if not nil, is called for every result row; its
// values are valid until it returns.
func (t *rawTx) batch(kind, n int, args []any, row func([]driver.Value) error) error {
	var st driver.Stmt
	if n <= smallBatch {
		st = t.stmts.small[kind][n]
	}
	if st == nil {
		var err error
		if st, err = t.prepare(batchSQL(kind, n)); err != nil {
			return err
		}
		if n <= smallBatch {
			t.stmts.small[kind][n] = st
		} else {
			defer st.Close()
		}
	}
	return t.run(st, args, row)
}

// exec runs a statement of the rawKinds with args.
func (t *rawTx) exec(kind int, args ...any) error {
	st, err := t.fixed(kind)
	if err != nil {
		return err
	}
	return t.run(st, args, nil)
}

func (t *rawTx) run(st driver.Stmt, args []any, row func([]driver.Value) error) error {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		if n, ok := a.(int); ok {
			a = int64(n)
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	if row == nil {
		_, err := st.(driver.StmtExecContext).ExecContext(bg, named)
		return err
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(bg, named)
	if err != nil {
		return err
	}
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		err := rows.Next(dest)
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = row(dest)
		}
		if err != nil {
			rows.Close() //nolint:errcheck // err is the one to report
			return err
		}
	}
	return rows.Close()
}

// inTx runs fn in an IMMEDIATE transaction on conn and commits it. When
// the ROLLBACK after a failure fails too, the connection may be left inside
// the transaction: the error then wraps driver.ErrBadConn, so that
// database/sql drops the connection rather than hand it to the next writer
// (a ROLLBACK after a COMMIT that ended the transaction fails too: the
// price is a reconnect, after a failed commit).
func (r *rawStmts) inTx(conn driver.Conn, fn func(t *rawTx) error) error {
	t := &rawTx{c: conn, stmts: r.on(conn)}
	if err := t.exec(rawBegin); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := fn(t)
	if err == nil {
		if err = t.exec(rawCommit); err == nil {
			return nil
		}
		err = fmt.Errorf("commit: %w", err)
	}
	if rerr := t.exec(rawRollback); rerr != nil {
		return errors.Join(err, fmt.Errorf("rollback: %w", rerr), driver.ErrBadConn)
	}
	return err
}
