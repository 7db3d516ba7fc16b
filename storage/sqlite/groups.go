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
		return fmt.Errorf("sqlite: create group %q: %w", g.ID, mapErr(err))
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
	return s.writeTx(ctx, func(tx *sql.Tx) error { return insertGroup(ctx, tx, g, members) })
}

// GetGroup implements storage.Groups.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	g, err := scanGroup(s.reads.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = ?`, id))
	if err != nil {
		return storage.Group{}, fmt.Errorf("sqlite: get group %q: %w", id, mapErr(err))
	}
	return g, nil
}

// AddMembers implements storage.Groups. maxMembers <= 0 means no limit.
func (s *Store) AddMembers(ctx context.Context, groupID string, userIDs []string, maxMembers int) ([]string, error) {
	var added []string
	err := s.writeTx(ctx, func(tx *sql.Tx) (err error) {
		added, err = addMembers(ctx, tx, groupID, unique(userIDs), maxMembers)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: add members to group %q: %w", groupID, mapErr(err))
	}
	return added, nil
}

func addMembers(ctx context.Context, tx *sql.Tx, groupID string, ids []string, maxMembers int) ([]string, error) {
	conv := storage.GroupConversationID(groupID)
	var latest int64
	err := tx.QueryRowContext(ctx, `SELECT c.latest_seq FROM groups g, conversations c
		WHERE g.id = ? AND c.id = ?`, groupID, conv).Scan(&latest)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("group: %w", storage.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	if err := requireUsers(ctx, tx, ids); err != nil {
		return nil, err
	}
	added, err := notActive(ctx, tx, conv, ids)
	if err != nil || len(added) == 0 {
		return nil, err
	}
	if maxMembers > 0 {
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM memberships
			WHERE conversation_id = ? AND left_seq IS NULL`, conv).Scan(&count); err != nil {
			return nil, err
		}
		if count+len(added) > maxMembers {
			return nil, fmt.Errorf("%d members + %d, limit %d: %w", count, len(added), maxMembers, storage.ErrGroupFull)
		}
	}
	if err := startPeriods(ctx, tx, conv, added, latest); err != nil {
		return nil, err
	}
	if err := membersChanged(ctx, tx, conv); err != nil {
		return nil, err
	}
	return added, nil
}

// notActive returns the ids that are not active members of conv: never
// members, or members who left.
func notActive(ctx context.Context, tx *sql.Tx, conv string, ids []string) ([]string, error) {
	st, err := tx.PrepareContext(ctx, `SELECT EXISTS (SELECT 1 FROM memberships
		WHERE user_id = ? AND conversation_id = ? AND left_seq IS NULL)`)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range ids {
		var active bool
		if err := st.QueryRowContext(ctx, u, conv).Scan(&active); err != nil {
			return nil, err
		}
		if !active {
			out = append(out, u)
		}
	}
	return out, nil
}

// startPeriods makes the users active members of conv from seq on. A
// user who left has their ended period moved to membership_history first,
// so it stays readable; one that reads nothing (joined_seq = left_seq) is
// dropped (see migration 0002). The new period starts at the latest seq,
// so the messages missed while away stay out of the new period.
func startPeriods(ctx context.Context, tx *sql.Tx, conv string, users []string, seq int64) error {
	archive, err := tx.PrepareContext(ctx, `INSERT INTO membership_history (conversation_id, user_id, joined_seq, left_seq)
		SELECT conversation_id, user_id, joined_seq, left_seq FROM memberships
		WHERE user_id = ? AND conversation_id = ? AND left_seq > joined_seq`)
	if err != nil {
		return err
	}
	start, err := tx.PrepareContext(ctx, `INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq)
		VALUES (?, ?, ?, NULL)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET joined_seq = excluded.joined_seq, left_seq = NULL, role = 0`)
	if err != nil {
		return err
	}
	for _, u := range users {
		if _, err := archive.ExecContext(ctx, u, conv); err != nil {
			return fmt.Errorf("keep the earlier period of %q: %w", u, err)
		}
		if _, err := start.ExecContext(ctx, conv, u, seq); err != nil {
			return fmt.Errorf("start the period of %q: %w", u, err)
		}
	}
	return nil
}

// membersChanged runs in every transaction that starts or ends periods of
// a group, after doing so. It starts the group conversation's next
// membership epoch (AppendMessages reads the epoch in the statement that
// assigns seqs, so a message's epoch always names the member set it was
// stored under) and recounts groups.member_count (migration 0009), so no
// listing counts a big group's rows.
func membersChanged(ctx context.Context, tx *sql.Tx, conv string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET member_epoch = member_epoch + 1 WHERE id = ?`, conv); err != nil {
		return fmt.Errorf("bump membership epoch: %w", err)
	}
	return recountMembers(ctx, tx, conv)
}

// recountMembers sets groups.member_count of the group conversation conv
// from its active periods.
func recountMembers(ctx context.Context, tx *sql.Tx, conv string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE groups SET member_count = (SELECT count(*) FROM memberships m
		WHERE m.conversation_id = ?1 AND m.left_seq IS NULL) WHERE id = substr(?1, 5)`, conv); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return nil
}

// LeaveGroup implements storage.Groups.
func (s *Store) LeaveGroup(ctx context.Context, groupID, userID string) error {
	conv := storage.GroupConversationID(groupID)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		// The subquery reads latest_seq in the statement that ends the
		// period; the single writer keeps sends out until the commit.
		res, err := tx.ExecContext(ctx, `UPDATE memberships
			SET left_seq = (SELECT latest_seq FROM conversations WHERE id = ?1), role = 0
			WHERE conversation_id = ?1 AND user_id = ?2 AND left_seq IS NULL`, conv, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("no group, or %q is not a member: %w", userID, storage.ErrNotFound)
		}
		return membersChanged(ctx, tx, conv)
	})
	if err != nil {
		return fmt.Errorf("sqlite: leave group %q: %w", groupID, mapErr(err))
	}
	return nil
}

// ListMembers implements storage.Groups.
func (s *Store) ListMembers(ctx context.Context, groupID string) (storage.MemberSet, error) {
	// One statement reads one snapshot, so the epoch and the members agree.
	// The LEFT JOIN tells a missing group (no row) from a group without
	// active members (one row with a NULL user).
	rows, err := s.reads.QueryContext(ctx, `SELECT c.member_epoch, m.user_id FROM groups g
		JOIN conversations c ON c.id = ?1
		LEFT JOIN memberships m ON m.conversation_id = ?1 AND m.left_seq IS NULL
		WHERE g.id = ?2`, storage.GroupConversationID(groupID), groupID)
	var set storage.MemberSet
	if err == nil {
		set.Members, err = groupUsers(rows, &set.Epoch)
	}
	if err != nil {
		return storage.MemberSet{}, fmt.Errorf("sqlite: list members of group %q: %w", groupID, mapErr(err))
	}
	return set, nil
}

// MembersAt implements storage.Groups.
func (s *Store) MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error) {
	// The current periods and the earlier ones; UNION, not UNION ALL, though
	// a user's periods do not overlap, so a user is never listed twice.
	rows, err := s.reads.QueryContext(ctx, `SELECT p.user_id FROM groups g
		LEFT JOIN (
			SELECT user_id FROM memberships
			WHERE conversation_id = ?1 AND joined_seq < ?3 AND (left_seq IS NULL OR left_seq >= ?3)
			UNION
			SELECT user_id FROM membership_history
			WHERE conversation_id = ?1 AND joined_seq < ?3 AND left_seq >= ?3
		) p ON true
		WHERE g.id = ?2`, storage.GroupConversationID(groupID), groupID, seq)
	var users []string
	if err == nil {
		users, err = groupUsers(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: members of group %q at seq %d: %w", groupID, seq, mapErr(err))
	}
	return users, nil
}

// groupUsers reads rows of (lead..., user) from a query over groups LEFT
// JOIN users: no row at all means no group (ErrNotFound); a NULL user is
// a group without any. lead is scanned from the last row (the same in
// every row).
func groupUsers(rows *sql.Rows, lead ...any) ([]string, error) {
	defer rows.Close()
	found := false
	users := []string{}
	var u sql.NullString
	dest := append(lead, &u)
	for rows.Next() {
		found = true
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if u.Valid {
			users = append(users, u.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("group: %w", storage.ErrNotFound)
	}
	return users, nil
}

// GetMembership implements storage.Groups.
func (s *Store) GetMembership(ctx context.Context, conversationID, userID string) (storage.Membership, error) {
	// The earlier periods, then the current one; an active period's NULL
	// left_seq reads as OpenSeq. History periods end at or before the
	// current one starts, so ordering by joined_seq puts it last.
	rows, err := s.reads.QueryContext(ctx, `
		SELECT joined_seq, left_seq FROM membership_history WHERE user_id = ?1 AND conversation_id = ?2
		UNION ALL
		SELECT joined_seq, coalesce(left_seq, ?3) FROM memberships WHERE user_id = ?1 AND conversation_id = ?2
		ORDER BY 1, 2`, userID, conversationID, storage.OpenSeq)
	var periods []storage.Period
	if err == nil {
		periods, err = scanPeriods(rows)
	}
	if err == nil && len(periods) == 0 {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.Membership{}, fmt.Errorf("sqlite: get membership of %q in %q: %w", userID, conversationID, mapErr(err))
	}
	return storage.Membership{ConversationID: conversationID, UserID: userID, Periods: periods}, nil
}

func scanPeriods(rows *sql.Rows) ([]storage.Period, error) {
	defer rows.Close()
	var periods []storage.Period
	for rows.Next() {
		var p storage.Period
		if err := rows.Scan(&p.JoinedSeq, &p.LeftSeq); err != nil {
			return nil, err
		}
		periods = append(periods, p)
	}
	return periods, rows.Err()
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
