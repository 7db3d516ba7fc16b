package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/starling-im/starling/storage"
)

// groupColumns reads a storage.Group (scanGroup) from groups g, with its
// active member count.
const groupColumns = `g.id, g.name, g.owner_id, g.created_at, g.description, g.avatar_url,
	g.join_policy, g.add_policy, g.disbanded_at IS NOT NULL, g.member_count`

type rowScanner interface{ Scan(dest ...any) error }

func scanGroup(row rowScanner, extra ...any) (storage.Group, error) {
	var g storage.Group
	var created int64
	dest := append([]any{&g.ID, &g.Name, &g.OwnerID, &created, &g.Description, &g.AvatarURL,
		&g.JoinPolicy, &g.AddPolicy, &g.Disbanded, &g.MemberCount}, extra...)
	if err := row.Scan(dest...); err != nil {
		return storage.Group{}, err
	}
	g.CreatedAt = fromMillis(created)
	return g, nil
}

// insertGroup stores g, its conversation at epoch 1 and its members joining
// at seq 0, in tx.
func insertGroup(ctx context.Context, tx *sql.Tx, g storage.Group, members []string) error {
	if err := requireUsers(ctx, tx, members); err != nil {
		return err
	}
	created := millis(g.CreatedAt)
	if _, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, owner_id, created_at, description, avatar_url, join_policy, add_policy)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.Name, g.OwnerID, created, g.Description, g.AvatarURL, g.JoinPolicy, g.AddPolicy); err != nil {
		return mapErr(err)
	}
	// The first membership epoch: the members stored below.
	if _, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, latest_seq, updated_at, member_epoch)
		VALUES (?, 0, ?, 1)`, storage.GroupConversationID(g.ID), created); err != nil {
		return mapErr(err)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq)
		VALUES (?, ?, 0, NULL)`)
	if err != nil {
		return err
	}
	for _, u := range members {
		if _, err := ins.ExecContext(ctx, storage.GroupConversationID(g.ID), u); err != nil {
			return mapErr(err)
		}
	}
	return recountMembers(ctx, tx, storage.GroupConversationID(g.ID))
}

// ChangeGroup implements storage.Groups. The transaction runs on one
// write connection: its statements through database/sql, and the system
// message through the send path's appendTx on the same connection (Raw),
// so both are in the one SQLite transaction.
func (s *Store) ChangeGroup(ctx context.Context, gt storage.GroupTx) (storage.GroupTxResult, error) {
	res, err := s.changeGroupTx(ctx, gt)
	if err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("sqlite: change group %q: %w", gt.GroupID, mapErr(err))
	}
	return res, nil
}

func (s *Store) changeGroupTx(ctx context.Context, gt storage.GroupTx) (storage.GroupTxResult, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return storage.GroupTxResult{}, err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return storage.GroupTxResult{}, err
	}
	res, err := changeGroup(ctx, conn, tx, gt)
	if err != nil {
		tx.Rollback() //nolint:errcheck // changeGroup's error is the one to report
		return storage.GroupTxResult{}, err
	}
	return res, tx.Commit()
}

func changeGroup(ctx context.Context, conn *sql.Conn, tx *sql.Tx, gt storage.GroupTx) (storage.GroupTxResult, error) {
	conv := storage.GroupConversationID(gt.GroupID)
	if _, err := storage.ParseConversationID(conv); err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("invalid group id: %w", err)
	}
	if gt.Create != nil {
		members := unique(gt.Members)
		if gt.MaxMembers > 0 && len(members) > gt.MaxMembers {
			return storage.GroupTxResult{}, fmt.Errorf("%d members, limit %d: %w", len(members), gt.MaxMembers, storage.ErrGroupFull)
		}
		if err := insertGroup(ctx, tx, *gt.Create, members); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	state, latest, err := groupState(ctx, tx, gt.GroupID, gt.Users, gt.AllMembers)
	if err != nil {
		return storage.GroupTxResult{}, err
	}
	edit, err := gt.Decide(state)
	if err != nil {
		return storage.GroupTxResult{}, err
	}
	if edit.Message == nil {
		return storage.GroupTxResult{Group: state.Group}, nil
	}
	if i := edit.Info; i != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE groups SET name = ?, description = ?, avatar_url = ?, join_policy = ?, add_policy = ?
			WHERE id = ?`, i.Name, i.Description, i.AvatarURL, i.JoinPolicy, i.AddPolicy, gt.GroupID); err != nil {
			return storage.GroupTxResult{}, fmt.Errorf("update info: %w", err)
		}
	}
	for u, r := range edit.Roles {
		if err := setRole(ctx, tx, gt.GroupID, u, r); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	if len(edit.Add) > 0 {
		add := unique(edit.Add)
		if err := requireUsers(ctx, tx, add); err != nil {
			return storage.GroupTxResult{}, err
		}
		if gt.MaxMembers > 0 && state.Group.MemberCount+len(add) > gt.MaxMembers {
			return storage.GroupTxResult{}, fmt.Errorf("%d members + %d, limit %d: %w", state.Group.MemberCount, len(add), gt.MaxMembers, storage.ErrGroupFull)
		}
		if err := startPeriods(ctx, tx, conv, add, latest); err != nil {
			return storage.GroupTxResult{}, err
		}
		if err := membersChanged(ctx, tx, conv); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	msg := *edit.Message
	msg.ConversationID = conv
	var appended []storage.AppendResult
	err = conn.Raw(func(dc any) (err error) {
		appended, err = appendTx(&rawTx{c: dc.(*writerConn)}, []storage.NewMessage{msg}, true)
		return err
	})
	if err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("system message: %w", err)
	}
	if appended[0].Duplicate {
		return storage.GroupTxResult{}, fmt.Errorf("system message %q stored before: %w", msg.ClientMsgID, storage.ErrAlreadyExists)
	}
	seq := appended[0].Message.Seq
	var disbanded []string
	if len(edit.Remove) > 0 || edit.Disband {
		for _, u := range unique(edit.Remove) {
			res, err := tx.ExecContext(ctx, `UPDATE memberships SET left_seq = ?, role = 0
				WHERE conversation_id = ? AND user_id = ? AND left_seq IS NULL`, seq, conv, u)
			if err != nil {
				return storage.GroupTxResult{}, fmt.Errorf("remove %q: %w", u, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return storage.GroupTxResult{}, err
			} else if n == 0 {
				return storage.GroupTxResult{}, fmt.Errorf("%q is not a member: %w", u, storage.ErrNotFound)
			}
		}
		if edit.Disband {
			if disbanded, err = activeMembers(ctx, tx, conv); err != nil {
				return storage.GroupTxResult{}, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE memberships SET left_seq = ?, role = 0
				WHERE conversation_id = ? AND left_seq IS NULL`, seq, conv); err != nil {
				return storage.GroupTxResult{}, fmt.Errorf("end memberships: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE groups SET disbanded_at = ? WHERE id = ?`,
				millis(msg.CreatedAt), gt.GroupID); err != nil {
				return storage.GroupTxResult{}, fmt.Errorf("disband: %w", err)
			}
		}
		if err := membersChanged(ctx, tx, conv); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	var events []storage.AppendResult
	if users := storage.MembershipChanged(gt, edit, disbanded); gt.Events != nil && len(users) > 0 {
		evs, err := gt.Events(seq, users)
		if err != nil {
			return storage.GroupTxResult{}, err
		}
		if events, err = appendEvents(conn, evs); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	g, err := scanGroup(tx.QueryRowContext(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = ?`, gt.GroupID))
	if err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("read group back: %w", err)
	}
	return storage.GroupTxResult{Group: g, Message: appended[0], Changed: true, Events: events}, nil
}

// appendEvents stores a change's events through the send path's appendTx on
// conn, inside the change's transaction. An event is new by construction
// (its client_msg_id is its fresh msg id): a duplicate is an error.
func appendEvents(conn *sql.Conn, evs []storage.NewMessage) ([]storage.AppendResult, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	var res []storage.AppendResult
	err := conn.Raw(func(dc any) (err error) {
		res, err = appendTx(&rawTx{c: dc.(*writerConn)}, evs, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	for i, r := range res {
		if r.Duplicate {
			return nil, fmt.Errorf("event %q stored before: %w", evs[i].ClientMsgID, storage.ErrAlreadyExists)
		}
	}
	return res, nil
}

// activeMembers lists a conversation's active members in tx.
func activeMembers(ctx context.Context, tx *sql.Tx, conv string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT user_id FROM memberships WHERE conversation_id = ? AND left_seq IS NULL`, conv)
	if err != nil {
		return nil, fmt.Errorf("active members: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("active members: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// groupState reads the group, its latest seq and the roles of users who
// are active members (all active members' with all), in tx.
func groupState(ctx context.Context, tx *sql.Tx, groupID string, users []string, all bool) (storage.GroupState, int64, error) {
	var latest int64
	g, err := scanGroup(tx.QueryRowContext(ctx, `SELECT `+groupColumns+`, c.latest_seq
		FROM groups g JOIN conversations c ON c.id = 'grp:' || g.id WHERE g.id = ?`, groupID), &latest)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.GroupState{}, 0, fmt.Errorf("group: %w", storage.ErrNotFound)
	} else if err != nil {
		return storage.GroupState{}, 0, err
	}
	st := storage.GroupState{Group: g, Roles: make(map[string]storage.GroupRole, len(users))}
	if all {
		rows, err := tx.QueryContext(ctx, `SELECT user_id, role FROM memberships
			WHERE conversation_id = ? AND left_seq IS NULL`, storage.GroupConversationID(groupID))
		if err != nil {
			return storage.GroupState{}, 0, err
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			var r storage.GroupRole
			if err := rows.Scan(&u, &r); err != nil {
				return storage.GroupState{}, 0, err
			}
			st.Roles[u] = storage.MemberRole(g, u, r)
		}
		return st, latest, rows.Err()
	}
	q, err := tx.PrepareContext(ctx, `SELECT role FROM memberships
		WHERE conversation_id = ? AND user_id = ? AND left_seq IS NULL`)
	if err != nil {
		return storage.GroupState{}, 0, err
	}
	for _, u := range unique(users) {
		var r storage.GroupRole
		err := q.QueryRowContext(ctx, storage.GroupConversationID(groupID), u).Scan(&r)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return storage.GroupState{}, 0, err
		}
		st.Roles[u] = storage.MemberRole(g, u, r)
	}
	return st, latest, nil
}

// setRole gives an active member a role; RoleOwner moves the ownership.
func setRole(ctx context.Context, tx *sql.Tx, groupID, user string, r storage.GroupRole) error {
	stored := r
	if r == storage.RoleOwner {
		if _, err := tx.ExecContext(ctx, `UPDATE groups SET owner_id = ? WHERE id = ?`, user, groupID); err != nil {
			return fmt.Errorf("owner %q: %w", user, err)
		}
		stored = storage.RoleMember
	}
	res, err := tx.ExecContext(ctx, `UPDATE memberships SET role = ?
		WHERE conversation_id = ? AND user_id = ? AND left_seq IS NULL`, stored, storage.GroupConversationID(groupID), user)
	if err != nil {
		return fmt.Errorf("role of %q: %w", user, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%q is not a member: %w", user, storage.ErrNotFound)
	}
	return nil
}

// ListGroupMembers implements storage.Groups.
func (s *Store) ListGroupMembers(ctx context.Context, groupID, afterUserID string, limit int) ([]storage.GroupMember, error) {
	var owner string
	err := s.reads.QueryRowContext(ctx, `SELECT owner_id FROM groups WHERE id = ?`, groupID).Scan(&owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, mapErr(err))
	}
	rows, err := s.reads.QueryContext(ctx, `SELECT user_id, role, joined_seq FROM memberships
		WHERE conversation_id = ? AND left_seq IS NULL AND user_id > ?
		ORDER BY user_id LIMIT ?`, storage.GroupConversationID(groupID), afterUserID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, mapErr(err))
	}
	defer rows.Close()
	out := []storage.GroupMember{}
	g := storage.Group{OwnerID: owner}
	for rows.Next() {
		var m storage.GroupMember
		if err := rows.Scan(&m.UserID, &m.Role, &m.JoinedSeq); err != nil {
			return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, mapErr(err))
		}
		m.Role = storage.MemberRole(g, m.UserID, m.Role)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list members of group %q: %w", groupID, mapErr(err))
	}
	return out, nil
}

// ListUserGroups implements storage.Groups.
func (s *Store) ListUserGroups(ctx context.Context, userID, afterGroupID string, limit int) ([]storage.UserGroup, error) {
	// The memberships primary key (user_id, conversation_id) serves the
	// range of the user's group conversations: "grp:" < id < "grp;".
	rows, err := s.reads.QueryContext(ctx, `SELECT `+groupColumns+`, m.role
		FROM memberships m JOIN groups g ON g.id = substr(m.conversation_id, 5)
		WHERE m.user_id = ? AND m.conversation_id > ? AND m.conversation_id < 'grp;' AND m.left_seq IS NULL
		ORDER BY m.conversation_id LIMIT ?`, userID, storage.GroupConversationID(afterGroupID), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: groups of %q: %w", userID, mapErr(err))
	}
	defer rows.Close()
	out := []storage.UserGroup{}
	for rows.Next() {
		var r storage.GroupRole
		g, err := scanGroup(rows, &r)
		if err != nil {
			return nil, fmt.Errorf("sqlite: groups of %q: %w", userID, mapErr(err))
		}
		out = append(out, storage.UserGroup{Group: g, Role: storage.MemberRole(g, userID, r)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: groups of %q: %w", userID, mapErr(err))
	}
	return out, nil
}
