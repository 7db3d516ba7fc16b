package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/starling-im/starling/storage"
)

// userColumnsU is userColumns of the users table aliased u.
const userColumnsU = `u.id, u.username, u.display_name, u.password_hash, u.created_at`

// relationSQL reads what binds ?1 and ?2 in one statement.
const relationSQL = `SELECT
	EXISTS (SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2),
	EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2),
	EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?2 AND blocked_id = ?1),
	EXISTS (SELECT 1 FROM friend_requests WHERE from_id = ?1 AND to_id = ?2),
	EXISTS (SELECT 1 FROM friend_requests WHERE from_id = ?2 AND to_id = ?1)`

func scanRelation(row scanner) (storage.Relation, error) {
	var r storage.Relation
	err := row.Scan(&r.Friends, &r.ABlocksB, &r.BBlocksA, &r.RequestAB, &r.RequestBA)
	return r, err
}

// socialTx runs change and stores events in one write transaction.
func (s *Store) socialTx(ctx context.Context, op string, events []storage.NewMessage, change func(tx *sql.Tx) error) ([]storage.AppendResult, error) {
	var results []storage.AppendResult
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		var err error
		results, err = s.appendTx(ctx, tx, events)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, mapErr(err))
	}
	return results, nil
}

// CreateFriendRequest implements storage.Friends.
func (s *Store) CreateFriendRequest(ctx context.Context, r storage.FriendRequest, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "create friend request", events, func(tx *sql.Tx) error {
		if err := requireUsers(ctx, tx, []string{r.ToID}); err != nil {
			return err
		}
		rel, err := scanRelation(tx.QueryRowContext(ctx, relationSQL, r.FromID, r.ToID))
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
		_, err = tx.ExecContext(ctx, `INSERT INTO friend_requests (from_id, to_id, message, created_at) VALUES (?, ?, ?, ?)`,
			r.FromID, r.ToID, r.Message, millis(r.CreatedAt))
		return err
	})
}

// AcceptFriendRequest implements storage.Friends.
func (s *Store) AcceptFriendRequest(ctx context.Context, from, to string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "accept friend request", events, func(tx *sql.Tx) error {
		rel, err := scanRelation(tx.QueryRowContext(ctx, relationSQL, from, to))
		switch {
		case err != nil:
			return err
		case !rel.RequestAB:
			return storage.ErrNotFound
		case rel.Blocked():
			return storage.ErrBlocked
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, from, to); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO friends (user_id, friend_id, created_at) VALUES (?1, ?2, ?3), (?2, ?1, ?3)
			ON CONFLICT DO NOTHING`, from, to, millis(at))
		return err
	})
}

// deleted turns "no row changed" into ErrNotFound.
func deleted(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// DeleteFriendRequest implements storage.Friends.
func (s *Store) DeleteFriendRequest(ctx context.Context, from, to string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "delete friend request", events, func(tx *sql.Tx) error {
		return deleted(tx.ExecContext(ctx, `DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, from, to))
	})
}

// RemoveFriend implements storage.Friends.
func (s *Store) RemoveFriend(ctx context.Context, a, b string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "remove friend", events, func(tx *sql.Tx) error {
		return deleted(tx.ExecContext(ctx, `DELETE FROM friends WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)`, a, b))
	})
}

// Block implements storage.Friends.
func (s *Store) Block(ctx context.Context, blocker, blocked string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "block", events, func(tx *sql.Tx) error {
		if err := requireUsers(ctx, tx, []string{blocked}); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)`, blocker, blocked, millis(at))
		return err
	})
}

// Unblock implements storage.Friends.
func (s *Store) Unblock(ctx context.Context, blocker, blocked string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "unblock", events, func(tx *sql.Tx) error {
		return deleted(tx.ExecContext(ctx, `DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?`, blocker, blocked))
	})
}

// GetRelation implements storage.Friends.
func (s *Store) GetRelation(ctx context.Context, a, b string) (storage.Relation, error) {
	r, err := scanRelation(s.reads.QueryRowContext(ctx, relationSQL, a, b))
	if err != nil {
		return storage.Relation{}, fmt.Errorf("sqlite: relation of %q and %q: %w", a, b, mapErr(err))
	}
	return r, nil
}

// ListFriends implements storage.Friends.
func (s *Store) ListFriends(ctx context.Context, userID, afterID string, limit int) ([]storage.Friend, error) {
	rows, err := s.reads.QueryContext(ctx, `SELECT `+userColumnsU+`, f.created_at
		FROM friends f JOIN users u ON u.id = f.friend_id
		WHERE f.user_id = ? AND f.friend_id > ? ORDER BY f.friend_id LIMIT ?`, userID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list friends of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.Friend
	for rows.Next() {
		var f storage.Friend
		var created, since int64
		if err := rows.Scan(&f.User.ID, &f.User.Username, &f.User.DisplayName, &f.User.PasswordHash, &created, &since); err != nil {
			return nil, fmt.Errorf("sqlite: list friends of %q: %w", userID, mapErr(err))
		}
		f.User.CreatedAt, f.Since = fromMillis(created), fromMillis(since)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list friends of %q: %w", userID, mapErr(err))
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
	args := []any{userID}
	if after != (storage.RequestCursor{}) {
		cond = ` AND (r.created_at < ? OR (r.created_at = ? AND r.` + other + ` < ?))`
		at := millis(after.CreatedAt)
		args = append(args, at, at, after.UserID)
	}
	args = append(args, limit)
	rows, err := s.reads.QueryContext(ctx, `SELECT r.from_id, r.to_id, r.message, r.created_at, `+userColumnsU+`
		FROM friend_requests r JOIN users u ON u.id = r.`+other+`
		WHERE r.`+mine+` = ?`+cond+` ORDER BY r.created_at DESC, r.`+other+` DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list friend requests of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.FriendRequest
	for rows.Next() {
		var r storage.FriendRequest
		var at, created int64
		if err := rows.Scan(&r.FromID, &r.ToID, &r.Message, &at, &r.User.ID, &r.User.Username, &r.User.DisplayName, &r.User.PasswordHash, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list friend requests of %q: %w", userID, mapErr(err))
		}
		r.CreatedAt, r.User.CreatedAt = fromMillis(at), fromMillis(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list friend requests of %q: %w", userID, mapErr(err))
	}
	return out, nil
}

// ListBlocked implements storage.Friends.
func (s *Store) ListBlocked(ctx context.Context, userID, afterID string, limit int) ([]storage.User, error) {
	rows, err := s.reads.QueryContext(ctx, `SELECT `+userColumnsU+`
		FROM blocks b JOIN users u ON u.id = b.blocked_id
		WHERE b.blocker_id = ? AND b.blocked_id > ? ORDER BY b.blocked_id LIMIT ?`, userID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list blocked of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list blocked of %q: %w", userID, mapErr(err))
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list blocked of %q: %w", userID, mapErr(err))
	}
	return out, nil
}

// FriendIDs implements storage.Friends.
func (s *Store) FriendIDs(ctx context.Context, userID string) ([]string, error) {
	rows, err := s.reads.QueryContext(ctx, `SELECT f.friend_id FROM friends f WHERE f.user_id = ? AND NOT EXISTS (SELECT 1 FROM blocks b
		WHERE (b.blocker_id = f.user_id AND b.blocked_id = f.friend_id) OR (b.blocker_id = f.friend_id AND b.blocked_id = f.user_id))`, userID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: friends of %q: %w", userID, mapErr(err))
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: friends of %q: %w", userID, mapErr(err))
	}
	return ids, nil
}

// VisibleUsers implements storage.Friends.
func (s *Store) VisibleUsers(ctx context.Context, viewer string, candidates []string) ([]string, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	// The candidates as a JSON array: one statement for any number.
	list, err := json.Marshal(candidates)
	if err != nil {
		return nil, fmt.Errorf("sqlite: visible users of %q: %w", viewer, err)
	}
	rows, err := s.reads.QueryContext(ctx, `WITH c (id) AS (SELECT value FROM json_each(?2))
		SELECT c.id FROM c
		WHERE (EXISTS (SELECT 1 FROM friends f WHERE f.user_id = ?1 AND f.friend_id = c.id)
		    OR EXISTS (SELECT 1 FROM memberships me JOIN memberships them
		               ON them.conversation_id = me.conversation_id AND them.user_id = c.id AND them.left_seq IS NULL
		               WHERE me.user_id = ?1 AND me.left_seq IS NULL AND me.conversation_id LIKE 'grp:%'))
		  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = ?1 AND b.blocked_id = c.id) OR (b.blocker_id = c.id AND b.blocked_id = ?1))`,
		viewer, string(list))
	if err != nil {
		return nil, fmt.Errorf("sqlite: visible users of %q: %w", viewer, mapErr(err))
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: visible users of %q: %w", viewer, mapErr(err))
	}
	return ids, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
