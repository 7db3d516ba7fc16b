package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// userColumnsU is userColumns of the users table aliased u.
const userColumnsU = `u.id, u.username, u.display_name, u.password_hash, u.created_at`

// relationSQL reads what binds $1 and $2 in one statement.
const relationSQL = `SELECT
	EXISTS (SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2),
	EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2),
	EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1),
	EXISTS (SELECT 1 FROM friend_requests WHERE from_id = $1 AND to_id = $2),
	EXISTS (SELECT 1 FROM friend_requests WHERE from_id = $2 AND to_id = $1)`

func scanRelation(row pgx.Row) (storage.Relation, error) {
	var r storage.Relation
	err := row.Scan(&r.Friends, &r.ABlocksB, &r.BBlocksA, &r.RequestAB, &r.RequestBA)
	return r, err
}

// socialTx runs change and stores events in one serializable transaction
// (retried as a whole, see inTx).
func (s *Store) socialTx(ctx context.Context, op string, events []storage.NewMessage, change func(tx pgx.Tx) error) ([]storage.AppendResult, error) {
	var results []storage.AppendResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		results = nil // set afresh on every attempt
		if err := change(tx); err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		var err error
		results, err = appendTx(ctx, tx, events, true, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, mapError(err))
	}
	return results, nil
}

// requireUser returns ErrNotFound unless id is a user.
func requireUser(ctx context.Context, tx pgx.Tx, id string) error {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("user %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// CreateFriendRequest implements storage.Friends.
func (s *Store) CreateFriendRequest(ctx context.Context, r storage.FriendRequest, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "create friend request", events, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, r.ToID); err != nil {
			return err
		}
		rel, err := scanRelation(tx.QueryRow(ctx, relationSQL, r.FromID, r.ToID))
		switch {
		case err != nil:
			return err
		case rel.Blocked():
			return storage.ErrBlocked
		case rel.Friends:
			return storage.ErrAlreadyFriends
		case rel.RequestAB || rel.RequestBA:
			return fmt.Errorf("a request is pending: %w", storage.ErrAlreadyExists)
		}
		_, err = tx.Exec(ctx, `INSERT INTO friend_requests (from_id, to_id, message, created_at) VALUES ($1, $2, $3, $4)`,
			r.FromID, r.ToID, r.Message, toMillis(r.CreatedAt))
		return err
	})
}

// AcceptFriendRequest implements storage.Friends.
func (s *Store) AcceptFriendRequest(ctx context.Context, from, to string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "accept friend request", events, func(tx pgx.Tx) error {
		rel, err := scanRelation(tx.QueryRow(ctx, relationSQL, from, to))
		switch {
		case err != nil:
			return err
		case !rel.RequestAB:
			return storage.ErrNotFound
		case rel.Blocked():
			return storage.ErrBlocked
		}
		if _, err := tx.Exec(ctx, `DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2`, from, to); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO friends (user_id, friend_id, created_at) VALUES ($1, $2, $3), ($2, $1, $3)
			ON CONFLICT DO NOTHING`, from, to, toMillis(at))
		return err
	})
}

// deleted runs a DELETE and turns "no row changed" into ErrNotFound.
func deleted(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// DeleteFriendRequest implements storage.Friends.
func (s *Store) DeleteFriendRequest(ctx context.Context, from, to string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "delete friend request", events, func(tx pgx.Tx) error {
		return deleted(ctx, tx, `DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2`, from, to)
	})
}

// RemoveFriend implements storage.Friends.
func (s *Store) RemoveFriend(ctx context.Context, a, b string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "remove friend", events, func(tx pgx.Tx) error {
		return deleted(ctx, tx, `DELETE FROM friends WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)`, a, b)
	})
}

// Block implements storage.Friends.
func (s *Store) Block(ctx context.Context, blocker, blocked string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "block", events, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, blocked); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`, blocker, blocked).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return storage.ErrAlreadyExists
		}
		_, err := tx.Exec(ctx, `INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)`, blocker, blocked, toMillis(at))
		return err
	})
}

// Unblock implements storage.Friends.
func (s *Store) Unblock(ctx context.Context, blocker, blocked string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "unblock", events, func(tx pgx.Tx) error {
		return deleted(ctx, tx, `DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, blocker, blocked)
	})
}

// GetRelation implements storage.Friends.
func (s *Store) GetRelation(ctx context.Context, a, b string) (storage.Relation, error) {
	r, err := scanRelation(s.pool.QueryRow(ctx, relationSQL, a, b))
	if err != nil {
		return storage.Relation{}, fmt.Errorf("postgres: relation of %q and %q: %w", a, b, mapError(err))
	}
	return r, nil
}

// ListFriends implements storage.Friends.
func (s *Store) ListFriends(ctx context.Context, userID, afterID string, limit int) ([]storage.Friend, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumnsU+`, f.created_at
		FROM friends f JOIN users u ON u.id = f.friend_id
		WHERE f.user_id = $1 AND f.friend_id > $2 ORDER BY f.friend_id LIMIT $3`, userID, afterID, limit)
	var out []storage.Friend
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Friend, error) {
			var f storage.Friend
			var created, since int64
			err := row.Scan(&f.User.ID, &f.User.Username, &f.User.DisplayName, &f.User.PasswordHash, &created, &since)
			f.User.CreatedAt, f.Since = fromMillis(created), fromMillis(since)
			return f, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list friends of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// ListFriendRequests implements storage.Friends.
func (s *Store) ListFriendRequests(ctx context.Context, userID string, incoming bool, after storage.RequestCursor, limit int) ([]storage.FriendRequest, error) {
	// mine is the user's column, other the other side's.
	mine, other := "from_id", "to_id"
	if incoming {
		mine, other = "to_id", "from_id"
	}
	cond := ""
	args := []any{userID, limit}
	if after != (storage.RequestCursor{}) {
		cond = ` AND (r.created_at < $3 OR (r.created_at = $3 AND r.` + other + ` < $4))`
		args = append(args, toMillis(after.CreatedAt), after.UserID)
	}
	rows, err := s.pool.Query(ctx, `SELECT r.from_id, r.to_id, r.message, r.created_at, `+userColumnsU+`
		FROM friend_requests r JOIN users u ON u.id = r.`+other+`
		WHERE r.`+mine+` = $1`+cond+` ORDER BY r.created_at DESC, r.`+other+` DESC LIMIT $2`, args...)
	var out []storage.FriendRequest
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.FriendRequest, error) {
			var r storage.FriendRequest
			var at, created int64
			err := row.Scan(&r.FromID, &r.ToID, &r.Message, &at, &r.User.ID, &r.User.Username, &r.User.DisplayName, &r.User.PasswordHash, &created)
			r.CreatedAt, r.User.CreatedAt = fromMillis(at), fromMillis(created)
			return r, err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list friend requests of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// ListBlocked implements storage.Friends.
func (s *Store) ListBlocked(ctx context.Context, userID, afterID string, limit int) ([]storage.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumnsU+`
		FROM blocks b JOIN users u ON u.id = b.blocked_id
		WHERE b.blocker_id = $1 AND b.blocked_id > $2 ORDER BY b.blocked_id LIMIT $3`, userID, afterID, limit)
	var out []storage.User
	if err == nil {
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.User, error) { return scanUser(row) })
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list blocked of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// FriendIDs implements storage.Friends.
func (s *Store) FriendIDs(ctx context.Context, userID string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT f.friend_id FROM friends f WHERE f.user_id = $1 AND NOT EXISTS (SELECT 1 FROM blocks b
		WHERE (b.blocker_id = f.user_id AND b.blocked_id = f.friend_id) OR (b.blocker_id = f.friend_id AND b.blocked_id = f.user_id))`, userID)
	var out []string
	if err == nil {
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: friends of %q: %w", userID, mapError(err))
	}
	return out, nil
}

// VisibleUsers implements storage.Friends.
func (s *Store) VisibleUsers(ctx context.Context, viewer string, candidates []string) ([]string, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT c.id FROM unnest($2::TEXT[]) AS c (id)
		WHERE (EXISTS (SELECT 1 FROM friends f WHERE f.user_id = $1 AND f.friend_id = c.id)
		    OR EXISTS (SELECT 1 FROM memberships me JOIN memberships them
		               ON them.conversation_id = me.conversation_id AND them.user_id = c.id AND them.left_seq IS NULL
		               WHERE me.user_id = $1 AND me.left_seq IS NULL AND me.conversation_id LIKE 'grp:%'))
		  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = $1 AND b.blocked_id = c.id) OR (b.blocker_id = c.id AND b.blocked_id = $1))`,
		viewer, candidates)
	var out []string
	if err == nil {
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: visible users of %q: %w", viewer, mapError(err))
	}
	return out, nil
}
