package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/starling-im/starling/storage"
)

const userColumns = `id, username, display_name, password_hash, created_at`

// CreateUser implements storage.Users.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?)`,
		u.ID, u.Username, u.DisplayName, nonNil(u.PasswordHash), millis(u.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create user %q: %w", u.ID, mapErr(err))
	}
	return nil
}

// GetUser implements storage.Users.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	u, err := scanUser(s.reads.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return storage.User{}, fmt.Errorf("sqlite: get user %q: %w", id, mapErr(err))
	}
	return u, nil
}

// GetUserByUsername implements storage.Users.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (storage.User, error) {
	u, err := scanUser(s.reads.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if err != nil {
		return storage.User{}, fmt.Errorf("sqlite: get user by username %q: %w", username, mapErr(err))
	}
	return u, nil
}

func scanUser(row scanner) (storage.User, error) {
	var u storage.User
	var created int64
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &created); err != nil {
		return storage.User{}, err
	}
	u.CreatedAt = fromMillis(created)
	return u, nil
}

// CreateSession implements storage.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO sessions (id, user_id, device_id, created_at, expires_at, revoked)
		VALUES (?, ?, ?, ?, ?, ?)`,
		sess.ID, sess.UserID, sess.DeviceID, millis(sess.CreatedAt), millis(sess.ExpiresAt), sess.Revoked)
	if err != nil {
		return fmt.Errorf("sqlite: create session %q: %w", sess.ID, mapErr(err))
	}
	return nil
}

// GetSession implements storage.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var sess storage.Session
	var created, expires int64
	err := s.reads.QueryRowContext(ctx, `SELECT id, user_id, device_id, created_at, expires_at, revoked
		FROM sessions WHERE id = ?`, id).
		Scan(&sess.ID, &sess.UserID, &sess.DeviceID, &created, &expires, &sess.Revoked)
	if err != nil {
		return storage.Session{}, fmt.Errorf("sqlite: get session %q: %w", id, mapErr(err))
	}
	sess.CreatedAt, sess.ExpiresAt = fromMillis(created), fromMillis(expires)
	return sess, nil
}

// RevokeSession implements storage.Sessions.
func (s *Store) RevokeSession(ctx context.Context, id string) error {
	// SQLite counts a matched row as changed even when it was already
	// revoked, so revoking twice is not reported as "not found".
	res, err := s.w.ExecContext(ctx, `UPDATE sessions SET revoked = 1 WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke session %q: %w", id, mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: revoke session %q: %w", id, mapErr(err))
	} else if n == 0 {
		return fmt.Errorf("sqlite: revoke session %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// DeleteSessions implements storage.Sessions.
func (s *Store) DeleteSessions(ctx context.Context, expiredBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("sqlite: delete sessions: limit %d must be positive", limit)
	}
	// Each branch reads one index (sessions_expires_at, the partial
	// sessions_revoked), at most limit rows each.
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE id IN (
		SELECT id FROM (
			SELECT id FROM (SELECT id FROM sessions WHERE expires_at < ? LIMIT ?)
			UNION
			SELECT id FROM (SELECT id FROM sessions WHERE revoked = 1 LIMIT ?)
		) LIMIT ?)`, millis(expiredBefore), limit, limit, limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete sessions: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete sessions: %w", mapErr(err))
	}
	return int(n), nil
}
