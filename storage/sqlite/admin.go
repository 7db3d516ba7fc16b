package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/starling-im/starling/storage"
)

// UpdateUser implements storage.Admin.
func (s *Store) UpdateUser(ctx context.Context, id, username, displayName string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE users SET username = ?, display_name = ? WHERE id = ?`, username, displayName, id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update user %q: %w", id, mapErr(err))
	}
	return nil
}

// affected is ErrNotFound when a statement changed no row.
func affected(res interface{ RowsAffected() (int64, error) }) error {
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		err = storage.ErrNotFound
	}
	return err
}

// SetUserDisabled implements storage.Admin.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	var err error
	if disabled {
		// The foreign key refuses a user that does not exist.
		_, err = s.w.ExecContext(ctx, `INSERT INTO disabled_users (user_id, disabled_at) VALUES (?, ?)
			ON CONFLICT (user_id) DO NOTHING`, id, millis(time.Now()))
	} else {
		if _, err = s.GetUser(ctx, id); err == nil {
			_, err = s.w.ExecContext(ctx, `DELETE FROM disabled_users WHERE user_id = ?`, id)
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: set user %q disabled=%v: %w", id, disabled, mapErr(err))
	}
	return nil
}

// UserDisabled implements storage.Admin.
func (s *Store) UserDisabled(ctx context.Context, id string) (bool, error) {
	var disabled bool
	err := s.reads.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM disabled_users WHERE user_id = users.id)
		FROM users WHERE id = ?`, id).Scan(&disabled)
	if err != nil {
		return false, fmt.Errorf("sqlite: user %q disabled: %w", id, mapErr(err))
	}
	return disabled, nil
}

// RevokeSessions implements storage.Admin.
func (s *Store) RevokeSessions(ctx context.Context, userID, deviceID string) ([]storage.Session, error) {
	rows, err := s.w.QueryContext(ctx, `UPDATE sessions SET revoked = 1
		WHERE user_id = ? AND (? = '' OR device_id = ?) AND revoked = 0
		RETURNING id, user_id, device_id, created_at, expires_at, revoked`, userID, deviceID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoke sessions of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.Session
	for rows.Next() {
		var sess storage.Session
		var created, expires int64
		if err := rows.Scan(&sess.ID, &sess.UserID, &sess.DeviceID, &created, &expires, &sess.Revoked); err != nil {
			return nil, fmt.Errorf("sqlite: revoke sessions of %q: %w", userID, mapErr(err))
		}
		sess.CreatedAt, sess.ExpiresAt = fromMillis(created), fromMillis(expires)
		out = append(out, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: revoke sessions of %q: %w", userID, mapErr(err))
	}
	return out, nil
}

// PutPushToken implements storage.Admin.
func (s *Store) PutPushToken(ctx context.Context, t storage.PushToken) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO push_tokens (user_id, device_id, platform, token, updated_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id, device_id) DO UPDATE SET platform = excluded.platform, token = excluded.token, updated_at = excluded.updated_at`,
		t.UserID, t.DeviceID, t.Platform, t.Token, millis(t.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: put push token of %q/%q: %w", t.UserID, t.DeviceID, mapErr(err))
	}
	return nil
}

// DeletePushToken implements storage.Admin.
func (s *Store) DeletePushToken(ctx context.Context, userID, deviceID string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM push_tokens WHERE user_id = ? AND device_id = ?`, userID, deviceID); err != nil {
		return fmt.Errorf("sqlite: delete push token of %q/%q: %w", userID, deviceID, mapErr(err))
	}
	return nil
}

// ListPushTokens implements storage.Admin.
func (s *Store) ListPushTokens(ctx context.Context, userID string) ([]storage.PushToken, error) {
	rows, err := s.reads.QueryContext(ctx, `SELECT user_id, device_id, platform, token, updated_at
		FROM push_tokens WHERE user_id = ? ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list push tokens of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.PushToken
	for rows.Next() {
		var t storage.PushToken
		var updated int64
		if err := rows.Scan(&t.UserID, &t.DeviceID, &t.Platform, &t.Token, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: list push tokens of %q: %w", userID, mapErr(err))
		}
		t.UpdatedAt = fromMillis(updated)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list push tokens of %q: %w", userID, mapErr(err))
	}
	return out, nil
}

// CreateSessions implements storage.Admin.
func (s *Store) CreateSessions(ctx context.Context, sessions []storage.Session) error {
	err := func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO sessions (id, user_id, device_id, created_at, expires_at, revoked)
			VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, sess := range sessions {
			if _, err := stmt.ExecContext(ctx, sess.ID, sess.UserID, sess.DeviceID, millis(sess.CreatedAt), millis(sess.ExpiresAt), sess.Revoked); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("sqlite: create %d sessions: %w", len(sessions), mapErr(err))
	}
	return nil
}
