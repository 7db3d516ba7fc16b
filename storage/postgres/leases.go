package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// dbNow is the database's clock in unix milliseconds. Leases expire by it,
// not by the nodes' clocks. (now() is the transaction's start on both
// servers, so every use in one transaction agrees.)
const dbNow = `CAST(floor(extract(epoch FROM now()) * 1000) AS BIGINT)`

const leaseColumns = `number, holder, node, acquired_at, expires_at, ` + dbNow

func scanLease(row pgx.Row) (storage.Lease, error) {
	var l storage.Lease
	var number, acquired, expires, now int64
	if err := row.Scan(&number, &l.Holder, &l.Node, &acquired, &expires, &now); err != nil {
		return storage.Lease{}, notFound(err)
	}
	l.Number = int(number)
	l.AcquiredAt, l.ExpiresAt = fromMillis(acquired), fromMillis(expires)
	l.Remaining = time.Duration(expires-now) * time.Millisecond
	return l, nil
}

// leaseMillis is a lease duration in whole milliseconds, at least 1.
func leaseMillis(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// AcquireNodeLease implements storage.NodeLeases. It reads which numbers
// are taken and writes the smallest free one in one serializable
// transaction: two acquirers that pick the same number conflict, and the
// loser's retry sees the winner's lease.
func (s *Store) AcquireNodeLease(ctx context.Context, req storage.LeaseRequest) (storage.Lease, error) {
	if req.Holder == "" {
		return storage.Lease{}, errors.New("postgres: acquire node lease: empty holder")
	}
	var l storage.Lease
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var now int64
		if err := tx.QueryRow(ctx, `SELECT `+dbNow).Scan(&now); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT number FROM node_leases WHERE expires_at >= $1 ORDER BY number`, now-req.Grace.Milliseconds())
		if err != nil {
			return err
		}
		taken, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		n := smallestFree(taken)
		if n > storage.MaxNodeNumber {
			return storage.ErrNoNodeNumber
		}
		// The WHERE keeps a lease that became live meanwhile; under
		// SERIALIZABLE that is a conflict (40001) anyway.
		tag, err := tx.Exec(ctx, `
			INSERT INTO node_leases (number, holder, node, acquired_at, expires_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (number) DO UPDATE SET holder = excluded.holder, node = excluded.node,
				acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
			WHERE node_leases.expires_at < $6`,
			n, req.Holder, req.Node, now, now+leaseMillis(req.TTL), now-req.Grace.Milliseconds())
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return retryable{fmt.Errorf("node number %d was taken meanwhile", n)}
		}
		l = storage.Lease{Number: int(n), Holder: req.Holder, Node: req.Node, AcquiredAt: fromMillis(now),
			ExpiresAt: fromMillis(now + leaseMillis(req.TTL)), Remaining: time.Duration(leaseMillis(req.TTL)) * time.Millisecond}
		return nil
	})
	if err != nil {
		return storage.Lease{}, fmt.Errorf("postgres: acquire node lease: %w", mapError(err))
	}
	return l, nil
}

// smallestFree returns the smallest number >= 0 not in taken (ascending).
func smallestFree(taken []int64) int64 {
	var n int64
	for _, t := range taken {
		if t > n {
			break
		}
		if t == n {
			n++
		}
	}
	return n
}

// RenewNodeLease implements storage.NodeLeases.
func (s *Store) RenewNodeLease(ctx context.Context, lease storage.Lease, ttl time.Duration) (storage.Lease, error) {
	var l storage.Lease
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		l, err = scanLease(tx.QueryRow(ctx, `
			UPDATE node_leases SET expires_at = `+dbNow+` + $3
			WHERE number = $1 AND holder = $2
			RETURNING `+leaseColumns, lease.Number, lease.Holder, leaseMillis(ttl)))
		return err
	})
	if err != nil {
		return storage.Lease{}, fmt.Errorf("postgres: renew node lease %d: %w", lease.Number, mapError(err))
	}
	return l, nil
}

// ReleaseNodeLease implements storage.NodeLeases.
func (s *Store) ReleaseNodeLease(ctx context.Context, lease storage.Lease) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE node_leases SET expires_at = least(expires_at, `+dbNow+`)
			WHERE number = $1 AND holder = $2`, lease.Number, lease.Holder)
		if err == nil && tag.RowsAffected() == 0 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: release node lease %d: %w", lease.Number, mapError(err))
	}
	return nil
}

// ListNodeLeases implements storage.NodeLeases.
func (s *Store) ListNodeLeases(ctx context.Context) ([]storage.Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+leaseColumns+` FROM node_leases ORDER BY number`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list node leases: %w", mapError(err))
	}
	leases, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Lease, error) { return scanLease(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list node leases: %w", mapError(err))
	}
	return leases, nil
}
