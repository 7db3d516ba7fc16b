package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/starling-im/starling/storage"
)

// Leases expire by the process clock: a SQLite file is on one host, so
// every process that opens it reads the same clock.

const leaseColumns = `number, holder, node, acquired_at, expires_at`

func scanLease(row scanner, now int64) (storage.Lease, error) {
	var l storage.Lease
	var acquired, expires int64
	if err := row.Scan(&l.Number, &l.Holder, &l.Node, &acquired, &expires); err != nil {
		return storage.Lease{}, err
	}
	l.AcquiredAt, l.ExpiresAt = fromMillis(acquired), fromMillis(expires)
	l.Remaining = time.Duration(expires-now) * time.Millisecond
	return l, nil
}

// leaseMillis is a lease duration in whole milliseconds, at least 1.
func leaseMillis(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// AcquireNodeLease implements storage.NodeLeases. The write transaction
// begins IMMEDIATE, so acquirers run one at a time.
func (s *Store) AcquireNodeLease(ctx context.Context, req storage.LeaseRequest) (storage.Lease, error) {
	if req.Holder == "" {
		return storage.Lease{}, errors.New("sqlite: acquire node lease: empty holder")
	}
	var l storage.Lease
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		now := millis(time.Now())
		rows, err := tx.QueryContext(ctx, `SELECT number FROM node_leases WHERE expires_at >= ? ORDER BY number`, now-req.Grace.Milliseconds())
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var t int
			if err := rows.Scan(&t); err != nil {
				return err
			}
			if t > n {
				break
			}
			if t == n {
				n++
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if n > storage.MaxNodeNumber {
			return storage.ErrNoNodeNumber
		}
		ttl := leaseMillis(req.TTL)
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO node_leases (`+leaseColumns+`) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (number) DO UPDATE SET holder = excluded.holder, node = excluded.node,
				acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
			n, req.Holder, req.Node, now, now+ttl); err != nil {
			return err
		}
		l = storage.Lease{Number: n, Holder: req.Holder, Node: req.Node, AcquiredAt: fromMillis(now),
			ExpiresAt: fromMillis(now + ttl), Remaining: time.Duration(ttl) * time.Millisecond}
		return nil
	})
	if err != nil {
		return storage.Lease{}, fmt.Errorf("sqlite: acquire node lease: %w", mapErr(err))
	}
	return l, nil
}

// RenewNodeLease implements storage.NodeLeases.
func (s *Store) RenewNodeLease(ctx context.Context, lease storage.Lease, ttl time.Duration) (storage.Lease, error) {
	now := millis(time.Now())
	l, err := scanLease(s.w.QueryRowContext(ctx, `
		UPDATE node_leases SET expires_at = ?
		WHERE number = ? AND holder = ?
		RETURNING `+leaseColumns, now+leaseMillis(ttl), lease.Number, lease.Holder), now)
	if err != nil {
		return storage.Lease{}, fmt.Errorf("sqlite: renew node lease %d: %w", lease.Number, mapErr(err))
	}
	return l, nil
}

// ReleaseNodeLease implements storage.NodeLeases.
func (s *Store) ReleaseNodeLease(ctx context.Context, lease storage.Lease) error {
	res, err := s.w.ExecContext(ctx, `UPDATE node_leases SET expires_at = min(expires_at, ?) WHERE number = ? AND holder = ?`,
		millis(time.Now()), lease.Number, lease.Holder)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = storage.ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: release node lease %d: %w", lease.Number, mapErr(err))
	}
	return nil
}

// ListNodeLeases implements storage.NodeLeases.
func (s *Store) ListNodeLeases(ctx context.Context) ([]storage.Lease, error) {
	rows, err := s.reads.QueryContext(ctx, `SELECT `+leaseColumns+` FROM node_leases ORDER BY number`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list node leases: %w", mapErr(err))
	}
	defer rows.Close()
	now := millis(time.Now())
	var leases []storage.Lease
	for rows.Next() {
		l, err := scanLease(rows, now)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list node leases: %w", mapErr(err))
		}
		leases = append(leases, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list node leases: %w", mapErr(err))
	}
	return leases, nil
}
