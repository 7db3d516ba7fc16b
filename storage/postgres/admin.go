package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// UpdateUser implements storage.Admin.
func (s *Store) UpdateUser(ctx context.Context, id, username, displayName string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET username = $1, display_name = $2 WHERE id = $3`, username, displayName, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: update user %q: %w", id, mapError(err))
	}
	return nil
}

// SetUserDisabled implements storage.Admin.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if disabled {
			// The foreign key refuses a user that does not exist.
			_, err := tx.Exec(ctx, `INSERT INTO disabled_users (user_id, disabled_at) VALUES ($1, $2)
				ON CONFLICT (user_id) DO NOTHING`, id, toMillis(time.Now()))
			return err
		}
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, id).Scan(&one); err != nil {
			return notFound(err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM disabled_users WHERE user_id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: set user %q disabled=%v: %w", id, disabled, mapError(err))
	}
	return nil
}

// UserDisabled implements storage.Admin.
func (s *Store) UserDisabled(ctx context.Context, id string) (bool, error) {
	var disabled bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM disabled_users WHERE user_id = users.id)
		FROM users WHERE id = $1`, id).Scan(&disabled)
	if err != nil {
		return false, fmt.Errorf("postgres: user %q disabled: %w", id, mapError(notFound(err)))
	}
	return disabled, nil
}

// RevokeSessions implements storage.Admin.
func (s *Store) RevokeSessions(ctx context.Context, userID, deviceID string) ([]storage.Session, error) {
	var out []storage.Session
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `UPDATE sessions SET revoked = true
			WHERE user_id = $1 AND ($2 = '' OR device_id = $2) AND NOT revoked
			RETURNING id, user_id, device_id, created_at, expires_at, revoked`, userID, deviceID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sess storage.Session
			var created, expires int64
			if err := rows.Scan(&sess.ID, &sess.UserID, &sess.DeviceID, &created, &expires, &sess.Revoked); err != nil {
				return err
			}
			sess.CreatedAt, sess.ExpiresAt = fromMillis(created), fromMillis(expires)
			out = append(out, sess)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: revoke sessions of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// PutPushToken implements storage.Admin.
func (s *Store) PutPushToken(ctx context.Context, t storage.PushToken) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO push_tokens (user_id, device_id, platform, token, updated_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, device_id) DO UPDATE SET platform = excluded.platform, token = excluded.token, updated_at = excluded.updated_at`,
			t.UserID, t.DeviceID, t.Platform, t.Token, toMillis(t.UpdatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: put push token of %q/%q: %w", t.UserID, t.DeviceID, mapError(err))
	}
	return nil
}

// DeletePushToken implements storage.Admin.
func (s *Store) DeletePushToken(ctx context.Context, userID, deviceID string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM push_tokens WHERE user_id = $1 AND device_id = $2`, userID, deviceID)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: delete push token of %q/%q: %w", userID, deviceID, mapError(err))
	}
	return nil
}

// ListPushTokens implements storage.Admin.
func (s *Store) ListPushTokens(ctx context.Context, userID string) ([]storage.PushToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, device_id, platform, token, updated_at
		FROM push_tokens WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list push tokens of %q: %w", userID, mapError(err))
	}
	defer rows.Close()
	var out []storage.PushToken
	for rows.Next() {
		var t storage.PushToken
		var updated int64
		if err := rows.Scan(&t.UserID, &t.DeviceID, &t.Platform, &t.Token, &updated); err != nil {
			return nil, fmt.Errorf("postgres: list push tokens of %q: %w", userID, mapError(err))
		}
		t.UpdatedAt = fromMillis(updated)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list push tokens of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// CreateSessions implements storage.Admin: one transaction, the inserts
// in one batch (one round trip).
func (s *Store) CreateSessions(ctx context.Context, sessions []storage.Session) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, sess := range sessions {
			b.Queue(`INSERT INTO sessions (id, user_id, device_id, created_at, expires_at, revoked)
				VALUES ($1, $2, $3, $4, $5, $6)`,
				sess.ID, sess.UserID, sess.DeviceID, toMillis(sess.CreatedAt), toMillis(sess.ExpiresAt), sess.Revoked)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: create %d sessions: %w", len(sessions), mapError(err))
	}
	return nil
}
