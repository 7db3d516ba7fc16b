package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The send path's transaction runs on the write connection's driver
// connection, below database/sql (sql.Conn.Raw). At ordinary load a commit
// holds one or two messages, and database/sql's share of such a commit
// was large: a goroutine per transaction to watch its context, a copy per
// transaction of each prepared statement, BEGIN and COMMIT prepared anew
// each time (BenchmarkAppendMessages/sequential/batch=1: 222 µs of CPU per
// commit with it, 134–146 µs without). The driver is called with a
// context that is never done, so it starts no goroutine per statement to
// watch one either; a caller's deadline still ends the wait for the
// connection, and a lock wait ends at busyTimeout.

// Statements of the send path that do not depend on a batch's size.
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

// writerConn is the write connection: the driver's, plus the send path's
// statements prepared on it, which live exactly as long as it does (Close
// finalizes them first; a connection closed with statements left becomes
// a zombie SQLite never frees). database/sql may replace the connection
// (it drops one that a cancelled context interrupted); the new one
// prepares its own. Only the goroutine holding the connection touches the
// statements.
type writerConn struct {
	driver.Conn
	fixed [rawKinds]driver.Stmt
	small [stmtKinds][smallBatch + 1]driver.Stmt
}

// The interfaces of the driver's connection that database/sql looks for,
// passed through: the wrapper must not change how it uses the connection.
var (
	_ driver.ConnBeginTx        = (*writerConn)(nil)
	_ driver.ConnPrepareContext = (*writerConn)(nil)
	_ driver.ExecerContext      = (*writerConn)(nil)
	_ driver.QueryerContext     = (*writerConn)(nil)
	_ driver.Pinger             = (*writerConn)(nil)
	_ driver.SessionResetter    = (*writerConn)(nil)
	_ driver.Validator          = (*writerConn)(nil)
)

func (c *writerConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *writerConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *writerConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *writerConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *writerConn) Ping(ctx context.Context) error { return c.Conn.(driver.Pinger).Ping(ctx) }

func (c *writerConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *writerConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

// Close finalizes the send path's statements, then closes the connection.
func (c *writerConn) Close() error {
	var errs []error
	for _, st := range c.fixed {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for kind := range c.small {
		for _, st := range c.small[kind] {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
	}
	errs = append(errs, c.Conn.Close())
	return errors.Join(errs...)
}

// writerConnector opens writerConns.
type writerConnector struct{ driver.Connector }

func (w writerConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := w.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	for _, iface := range []bool{
		implements[driver.ConnBeginTx](c), implements[driver.ConnPrepareContext](c),
		implements[driver.ExecerContext](c), implements[driver.QueryerContext](c),
		implements[driver.Pinger](c), implements[driver.SessionResetter](c), implements[driver.Validator](c),
	} {
		if !iface {
			c.Close() //nolint:errcheck // the driver's shape is the error
			return nil, fmt.Errorf("sqlite driver connection %T lacks an interface the writer passes through", c)
		}
	}
	return &writerConn{Conn: c}, nil
}

func implements[I any](c driver.Conn) bool {
	_, ok := c.(I)
	return ok
}

// rawTx is a send path transaction on the write connection.
type rawTx struct{ c *writerConn }

// bg is the context of every driver call: never done (see above).
var bg = context.Background()

func (t *rawTx) prepare(query string) (driver.Stmt, error) {
	return t.c.PrepareContext(bg, query)
}

// fixed returns a statement of the rawKinds, preparing it the first time.
func (t *rawTx) fixed(kind int) (driver.Stmt, error) {
	if st := t.c.fixed[kind]; st != nil {
		return st, nil
	}
	st, err := t.prepare(rawSQL[kind])
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", rawSQL[kind], err)
	}
	t.c.fixed[kind] = st
	return st, nil
}

// batch runs the statement of kind for n rows with args: one prepared
// once for small n, else prepared for this call (its parse cost is spread
// over many rows). row, if not nil, is called for every result row; its
// values are valid until it returns.
func (t *rawTx) batch(kind, n int, args []any, row func([]driver.Value) error) error {
	var st driver.Stmt
	if n <= smallBatch {
		st = t.c.small[kind][n]
	}
	if st == nil {
		var err error
		if st, err = t.prepare(batchSQL(kind, n)); err != nil {
			return err
		}
		if n <= smallBatch {
			t.c.small[kind][n] = st
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

// inTx runs fn in an IMMEDIATE transaction on c and commits it. When the
// ROLLBACK after a failure fails too, the connection may be left inside
// the transaction: the error then wraps driver.ErrBadConn, so that
// database/sql drops the connection rather than hand it to the next writer
// (a ROLLBACK after a COMMIT that ended the transaction fails too: the
// price is a reconnect, after a failed commit).
func (c *writerConn) inTx(fn func(t *rawTx) error) error {
	t := &rawTx{c: c}
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
