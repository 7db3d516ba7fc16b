package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// reader runs the read-only queries on the reader pool through statements
// prepared once per query text: parsing and planning a query costs more
// than running the point reads of the hot paths (stream auth, membership
// checks, sync), which run thousands of times a second.
type reader struct {
	db *sql.DB

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newReader(db *sql.DB) *reader {
	return &reader{db: db, stmts: make(map[string]*sql.Stmt)}
}

func (r *reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.stmts[query]; ok {
		return st, nil
	}
	st, err := r.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	r.stmts[query] = st
	return st, nil
}

// QueryContext is sql.DB.QueryContext with a cached statement.
func (r *reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext is sql.DB.QueryRowContext with a cached statement.
func (r *reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := r.stmt(ctx, query)
	if err != nil {
		// Let database/sql report the same failure through the Row.
		return r.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// close closes the statements; the pool is closed by its owner.
func (r *reader) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first error
	for q, st := range r.stmts {
		if err := st.Close(); err != nil && first == nil {
			first = err
		}
		delete(r.stmts, q)
	}
	return first
}
