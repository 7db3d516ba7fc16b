package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
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

// socialTx runs change and stores events in one write transaction: the
// send path's (rawtx.go), since the events are appended by its code.
func (s *Store) socialTx(ctx context.Context, op string, events []storage.NewMessage, change func(t *rawTx) error) ([]storage.AppendResult, error) {
	var results []storage.AppendResult
	conn, err := s.w.Conn(ctx)
	if err == nil {
		err = conn.Raw(func(dc any) error {
			return dc.(*writerConn).inTx(func(t *rawTx) error {
				if err := change(t); err != nil {
					return err
				}
				if len(events) == 0 {
					return nil
				}
				var err error
				results, err = appendTx(t, events, true)
				return err
			})
		})
		conn.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, mapErr(err))
	}
	return results, nil
}

// Friend changes are rare: their statements are prepared per use.

// rawExec runs query in t and returns how many rows it changed.
func rawExec(t *rawTx, query string, args ...any) (int64, error) {
	st, err := t.prepare(query)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	res, err := st.(driver.StmtExecContext).ExecContext(bg, named)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// rawRelation reads what binds a and b in t.
func rawRelation(t *rawTx, a, b string) (storage.Relation, error) {
	st, err := t.prepare(relationSQL)
	if err != nil {
		return storage.Relation{}, err
	}
	defer st.Close()
	var r storage.Relation
	err = t.run(st, []any{a, b}, func(v []driver.Value) error {
		r = storage.Relation{Friends: isTrue(v[0]), ABlocksB: isTrue(v[1]), BBlocksA: isTrue(v[2]), RequestAB: isTrue(v[3]), RequestBA: isTrue(v[4])}
		return nil
	})
	return r, err
}

func isTrue(v driver.Value) bool { n, ok := v.(int64); return ok && n != 0 }

// rawRequireUser returns ErrNotFound unless id is a user.
func rawRequireUser(t *rawTx, id string) error {
	st, err := t.prepare(`SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	found := false
	if err := t.run(st, []any{id}, func(v []driver.Value) error { found = isTrue(v[0]); return nil }); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("user %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// rawDelete runs a DELETE in t and turns "no row changed" into ErrNotFound.
func rawDelete(t *rawTx, query string, args ...any) error {
	n, err := rawExec(t, query, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// CreateFriendRequest implements storage.Friends.
func (s *Store) CreateFriendRequest(ctx context.Context, r storage.FriendRequest, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "create friend request", events, func(t *rawTx) error {
		if err := rawRequireUser(t, r.ToID); err != nil {
			return err
		}
		rel, err := rawRelation(t, r.FromID, r.ToID)
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
		_, err = rawExec(t, `INSERT INTO friend_requests (from_id, to_id, message, created_at) VALUES (?, ?, ?, ?)`,
			r.FromID, r.ToID, r.Message, millis(r.CreatedAt))
		return err
	})
}

// AcceptFriendRequest implements storage.Friends.
func (s *Store) AcceptFriendRequest(ctx context.Context, from, to string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "accept friend request", events, func(t *rawTx) error {
		rel, err := rawRelation(t, from, to)
		switch {
		case err != nil:
			return err
		case !rel.RequestAB:
			return storage.ErrNotFound
		case rel.Blocked():
			return storage.ErrBlocked
		}
		if _, err := rawExec(t, `DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, from, to); err != nil {
			return err
		}
		_, err = rawExec(t, `INSERT INTO friends (user_id, friend_id, created_at) VALUES (?1, ?2, ?3), (?2, ?1, ?3)
			ON CONFLICT DO NOTHING`, from, to, millis(at))
		return err
	})
}

// DeleteFriendRequest implements storage.Friends.
func (s *Store) DeleteFriendRequest(ctx context.Context, from, to string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "delete friend request", events, func(t *rawTx) error {
		return rawDelete(t, `DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, from, to)
	})
}

// RemoveFriend implements storage.Friends.
func (s *Store) RemoveFriend(ctx context.Context, a, b string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "remove friend", events, func(t *rawTx) error {
		return rawDelete(t, `DELETE FROM friends WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)`, a, b)
	})
}

// Block implements storage.Friends.
func (s *Store) Block(ctx context.Context, blocker, blocked string, at time.Time, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "block", events, func(t *rawTx) error {
		if err := rawRequireUser(t, blocked); err != nil {
			return err
		}
		_, err := rawExec(t, `INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)`, blocker, blocked, millis(at))
		return err
	})
}

// Unblock implements storage.Friends.
func (s *Store) Unblock(ctx context.Context, blocker, blocked string, events []storage.NewMessage) ([]storage.AppendResult, error) {
	return s.socialTx(ctx, "unblock", events, func(t *rawTx) error {
		return rawDelete(t, `DELETE FROM blocks WHERE blocker_id = ? AND blocked_id = ?`, blocker, blocked)
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
