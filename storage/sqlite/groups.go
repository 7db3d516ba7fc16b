package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/starling-im/starling/storage"
)

// CreateGroup implements storage.Groups. maxMembers <= 0 means no limit.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group, memberIDs []string, maxMembers int) error {
	if err := s.createGroup(ctx, g, memberIDs, maxMembers); err != nil {
		return fmt.Errorf("sqlite: create group %q: %w", g.ID, err)
	}
	return nil
}

func (s *Store) createGroup(ctx context.Context, g storage.Group, memberIDs []string, maxMembers int) error {
	conv := storage.GroupConversationID(g.ID)
	if _, err := storage.ParseConversationID(conv); err != nil {
		return fmt.Errorf("invalid group id: %w", err)
	}
	members := unique(memberIDs)
	if maxMembers > 0 && len(members) > maxMembers {
		return fmt.Errorf("%d members, limit %d: %w", len(members), maxMembers, storage.ErrGroupFull)
	}
	return s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := requireUsers(ctx, tx, members); err != nil {
			return err
		}
		created := millis(g.CreatedAt)
		if _, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, owner_id, created_at) VALUES (?, ?, ?, ?)`,
			g.ID, g.Name, g.OwnerID, created); err != nil {
			return mapErr(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, latest_seq, updated_at) VALUES (?, 0, ?)`,
			conv, created); err != nil {
			return mapErr(err)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq)
			VALUES (?, ?, 0, NULL)`)
		if err != nil {
			return err
		}
		for _, u := range members {
			if _, err := ins.ExecContext(ctx, conv, u); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
}

// GetGroup implements storage.Groups.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	var g storage.Group
	var created int64
	err := s.reads.QueryRowContext(ctx, `SELECT id, name, owner_id, created_at,
			(SELECT count(*) FROM memberships WHERE conversation_id = ? AND left_seq IS NULL)
		FROM groups WHERE id = ?`, storage.GroupConversationID(id), id).
		Scan(&g.ID, &g.Name, &g.OwnerID, &created, &g.MemberCount)
	if err != nil {
		return storage.Group{}, fmt.Errorf("sqlite: get group %q: %w", id, mapErr(err))
	}
	g.CreatedAt = fromMillis(created)
	return g, nil
}

// AddMembers implements storage.Groups. maxMembers <= 0 means no limit.
func (s *Store) AddMembers(ctx context.Context, groupID string, userIDs []string, maxMembers int) ([]string, error) {
	var added []string
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		conv := storage.GroupConversationID(groupID)
		var latest int64
		err := tx.QueryRowContext(ctx, `SELECT c.latest_seq FROM groups g, conversations c
			WHERE g.id = ? AND c.id = ?`, groupID, conv).Scan(&latest)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("group: %w", storage.ErrNotFound)
		} else if err != nil {
			return err
		}
		ids := unique(userIDs)
		if err := requireUsers(ctx, tx, ids); err != nil {
			return err
		}
		for _, u := range ids {
			var active bool
			err := tx.QueryRowContext(ctx, `SELECT left_seq IS NULL FROM memberships
				WHERE user_id = ? AND conversation_id = ?`, u, conv).Scan(&active)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if !active {
				added = append(added, u)
			}
		}
		if len(added) == 0 {
			return nil
		}
		if maxMembers > 0 {
			var count int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM memberships
				WHERE conversation_id = ? AND left_seq IS NULL`, conv).Scan(&count); err != nil {
				return err
			}
			if count+len(added) > maxMembers {
				return fmt.Errorf("%d members + %d, limit %d: %w", count, len(added), maxMembers, storage.ErrGroupFull)
			}
		}
		// A user who left rejoins: the new membership starts now, so the
		// messages they missed while away stay out of their sync.
		ins, err := tx.PrepareContext(ctx, `INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq)
			VALUES (?, ?, ?, NULL)
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET joined_seq = excluded.joined_seq, left_seq = NULL`)
		if err != nil {
			return err
		}
		for _, u := range added {
			if _, err := ins.ExecContext(ctx, conv, u, latest); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: add members to group %q: %w", groupID, err)
	}
	return added, nil
}

// LeaveGroup implements storage.Groups.
func (s *Store) LeaveGroup(ctx context.Context, groupID, userID string) error {
	conv := storage.GroupConversationID(groupID)
	// One statement, so the seq read and the update are atomic.
	res, err := s.w.ExecContext(ctx, `UPDATE memberships
		SET left_seq = (SELECT latest_seq FROM conversations WHERE id = ?1)
		WHERE conversation_id = ?1 AND user_id = ?2 AND left_seq IS NULL`, conv, userID)
	if err != nil {
		return fmt.Errorf("sqlite: leave group %q: %w", groupID, mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: leave group %q: %w", groupID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: leave group %q: no group, or %q is not a member: %w", groupID, userID, storage.ErrNotFound)
	}
	return nil
}

// ListMembers implements storage.Groups.
func (s *Store) ListMembers(ctx context.Context, groupID string) ([]string, error) {
	// The LEFT JOIN tells a missing group (no row) from a group without
	// active members (one row with a NULL user) in one query.
	rows, err := s.reads.QueryContext(ctx, `SELECT m.user_id FROM groups g
		LEFT JOIN memberships m ON m.conversation_id = ? AND m.left_seq IS NULL
		WHERE g.id = ?`, storage.GroupConversationID(groupID), groupID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, err)
	}
	defer rows.Close()
	found := false
	members := []string{}
	for rows.Next() {
		found = true
		var u sql.NullString
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, err)
		}
		if u.Valid {
			members = append(members, u.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, err)
	}
	if !found {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, storage.ErrNotFound)
	}
	return members, nil
}

// GetMembership implements storage.Groups.
func (s *Store) GetMembership(ctx context.Context, conversationID, userID string) (storage.Membership, error) {
	m := storage.Membership{ConversationID: conversationID, UserID: userID}
	var left sql.NullInt64
	err := s.reads.QueryRowContext(ctx, `SELECT joined_seq, left_seq FROM memberships
		WHERE user_id = ? AND conversation_id = ?`, userID, conversationID).Scan(&m.JoinedSeq, &left)
	if err != nil {
		return storage.Membership{}, fmt.Errorf("sqlite: get membership of %q in %q: %w", userID, conversationID, mapErr(err))
	}
	m.Active, m.LeftSeq = !left.Valid, left.Int64
	return m, nil
}

// requireUsers returns ErrNotFound, naming the user, unless every id is a user.
func requireUsers(ctx context.Context, tx *sql.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`)
	if err != nil {
		return err
	}
	for _, id := range ids {
		var ok bool
		if err := st.QueryRowContext(ctx, id).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %q: %w", id, storage.ErrNotFound)
		}
	}
	return nil
}

// unique returns ids without repeats, in first-seen order.
func unique(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
