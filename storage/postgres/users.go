package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// Times are stored as unix milliseconds, like the SQLite backend's, so both
// return the same (millisecond-truncated) values.
func toMillis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// notFound maps "no rows" to storage.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	return err
}

// nonNil turns nil into an empty slice: pgx sends a nil []byte as NULL,
// which the NOT NULL BYTEA columns refuse.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// CreateUser stores u. ErrAlreadyExists if its ID or Username is taken.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO users (id, username, display_name, password_hash, created_at)
			VALUES ($1, $2, $3, $4, $5)`,
			u.ID, u.Username, u.DisplayName, nonNil(u.PasswordHash), toMillis(u.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: create user %q: %w", u.ID, mapError(err))
	}
	return nil
}

const userColumns = `id, username, display_name, password_hash, created_at`

func scanUser(row pgx.Row) (storage.User, error) {
	var u storage.User
	var created int64
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &created); err != nil {
		return storage.User{}, notFound(err)
	}
	u.CreatedAt = fromMillis(created)
	return u, nil
}

// GetUser returns the user with this id, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return storage.User{}, fmt.Errorf("postgres: get user %q: %w", id, mapError(err))
	}
	return u, nil
}

// GetUserByUsername returns the user with this username, or ErrNotFound.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, username))
	if err != nil {
		return storage.User{}, fmt.Errorf("postgres: get user by username %q: %w", username, mapError(err))
	}
	return u, nil
}

// CreateSession stores sess. ErrAlreadyExists if its ID is taken;
// ErrNotFound if its user does not exist.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO sessions (id, user_id, device_id, created_at, expires_at, revoked)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			sess.ID, sess.UserID, sess.DeviceID, toMillis(sess.CreatedAt), toMillis(sess.ExpiresAt), sess.Revoked)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: create session %q: %w", sess.ID, mapError(err))
	}
	return nil
}

// GetSession returns the session with this id, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var sess storage.Session
	var created, expires int64
	err := s.pool.QueryRow(ctx, `
		SELECT id, user_id, device_id, created_at, expires_at, revoked FROM sessions WHERE id = $1`, id,
	).Scan(&sess.ID, &sess.UserID, &sess.DeviceID, &created, &expires, &sess.Revoked)
	if err != nil {
		return storage.Session{}, fmt.Errorf("postgres: get session %q: %w", id, mapError(notFound(err)))
	}
	sess.CreatedAt, sess.ExpiresAt = fromMillis(created), fromMillis(expires)
	return sess, nil
}

// RevokeSession marks the session revoked; revoking twice is not an error.
// ErrNotFound if there is no such session.
func (s *Store) RevokeSession(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET revoked = true WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: revoke session %q: %w", id, mapError(err))
	}
	return nil
}

// DeleteSessions deletes at most limit sessions that expired before
// expiredBefore or are revoked, in one statement: each branch reads one
// index (sessions_expires_at, the partial sessions_revoked), so a pass
// costs what it deletes, not a scan of the table.
func (s *Store) DeleteSessions(ctx context.Context, expiredBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("postgres: delete sessions: limit %d must be positive", limit)
	}
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			DELETE FROM sessions WHERE id IN (
				SELECT id FROM (
					SELECT id FROM (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2) AS expired
					UNION
					SELECT id FROM (SELECT id FROM sessions WHERE revoked LIMIT $2) AS revoked
				) AS doomed LIMIT $2)`,
			toMillis(expiredBefore), limit)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: delete sessions: %w", mapError(err))
	}
	return n, nil
}
