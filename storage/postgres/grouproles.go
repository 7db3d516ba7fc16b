package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/starling-im/starling/storage"
)

// groupColumns reads a storage.Group (scanGroup) from groups g, with its
// active member count.
const groupColumns = `g.id, g.name, g.owner_id, g.created_at, g.description, g.avatar_url,
	g.join_policy, g.add_policy, g.disbanded_at IS NOT NULL, g.member_count`

// recountMembers sets groups.member_count of the group conversation $1
// from its active periods. Every transaction that starts or ends a period
// of a group runs it after doing so (migration 0011): a count per change,
// so no listing counts a big group's rows. It locks the groups row after
// the conversation row, which every such transaction locks first.
const recountMembers = `UPDATE groups SET member_count = (SELECT count(*) FROM memberships m
	WHERE m.conversation_id = $1 AND m.left_seq IS NULL) WHERE id = substr($1, 5)`

func scanGroup(row pgx.Row, extra ...any) (storage.Group, error) {
	var g storage.Group
	var created, join, add, count int64
	dest := append([]any{&g.ID, &g.Name, &g.OwnerID, &created, &g.Description, &g.AvatarURL,
		&join, &add, &g.Disbanded, &count}, extra...)
	if err := row.Scan(dest...); err != nil {
		return storage.Group{}, notFound(err)
	}
	g.CreatedAt = fromMillis(created)
	g.JoinPolicy, g.AddPolicy, g.MemberCount = storage.JoinPolicy(join), storage.AddPolicy(add), int(count)
	return g, nil
}

// insertGroup queues, on b, the statements that store g, its conversation
// (at membership epoch 1) and its members (sorted), all joining at seq 0.
// The foreign keys on owner_id and user_id turn an unknown user into
// ErrNotFound.
func insertGroup(b *pgx.Batch, g storage.Group, members []string) {
	conv := storage.GroupConversationID(g.ID)
	created := toMillis(g.CreatedAt)
	b.Queue(`INSERT INTO groups (id, name, owner_id, created_at, description, avatar_url, join_policy, add_policy)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		g.ID, g.Name, g.OwnerID, created, g.Description, g.AvatarURL, int64(g.JoinPolicy), int64(g.AddPolicy))
	b.Queue(`INSERT INTO conversations (id, latest_seq, updated_at, member_epoch) VALUES ($1, 0, $2, 1)`, conv, created)
	b.Queue(`
		INSERT INTO memberships (conversation_id, user_id, joined_seq)
		SELECT $1, u, 0 FROM unnest($2::TEXT[]) AS u`, conv, members)
	b.Queue(recountMembers, conv)
}

// ChangeGroup implements storage.Groups.
func (s *Store) ChangeGroup(ctx context.Context, gt storage.GroupTx) (storage.GroupTxResult, error) {
	if gt.Create != nil && gt.MaxMembers > 0 && len(distinct(gt.Members)) > gt.MaxMembers {
		return storage.GroupTxResult{}, fmt.Errorf("postgres: create group %q: %d members, at most %d: %w",
			gt.GroupID, len(distinct(gt.Members)), gt.MaxMembers, storage.ErrGroupFull)
	}
	if _, err := storage.ParseConversationID(storage.GroupConversationID(gt.GroupID)); err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("postgres: change group %q: invalid group id: %w", gt.GroupID, err)
	}
	var res storage.GroupTxResult
	err := s.inTx(ctx, func(tx pgx.Tx) (err error) {
		res, err = changeGroup(ctx, tx, gt) // set afresh on every attempt
		return err
	})
	if err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("postgres: change group %q: %w", gt.GroupID, mapError(err))
	}
	return res, nil
}

// changeGroup is one attempt of ChangeGroup.
func changeGroup(ctx context.Context, tx pgx.Tx, gt storage.GroupTx) (storage.GroupTxResult, error) {
	conv := storage.GroupConversationID(gt.GroupID)
	if gt.Create != nil {
		b := &pgx.Batch{}
		insertGroup(b, *gt.Create, sorted(distinct(gt.Members)))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	// The conversation row first (FOR UPDATE), as AppendMessages locks it
	// first: one lock order, no deadlock; and no send takes a seq between
	// this read of latest_seq and the commit.
	var latest int64
	users := sorted(distinct(gt.Users))
	state := storage.GroupState{Roles: make(map[string]storage.GroupRole, len(users))}
	stored := map[string]int64{}
	b := &pgx.Batch{}
	b.Queue(`SELECT latest_seq FROM conversations WHERE id = $1 FOR UPDATE`, conv).
		QueryRow(func(row pgx.Row) error { return notFound(row.Scan(&latest)) })
	b.Queue(`SELECT `+groupColumns+` FROM groups g WHERE g.id = $1`, gt.GroupID).
		QueryRow(func(row pgx.Row) (err error) { state.Group, err = scanGroup(row); return err })
	b.Queue(`SELECT user_id, role FROM memberships
		WHERE conversation_id = $1 AND (user_id = ANY($2::TEXT[]) OR $3) AND left_seq IS NULL`, conv, users, gt.AllMembers).
		Query(func(rows pgx.Rows) error {
			var u string
			var r int64
			_, err := pgx.ForEachRow(rows, []any{&u, &r}, func() error { stored[u] = r; return nil })
			return err
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("group: %w", err)
	}
	for u, r := range stored {
		state.Roles[u] = storage.MemberRole(state.Group, u, storage.GroupRole(r))
	}
	edit, err := gt.Decide(state)
	if err != nil {
		return storage.GroupTxResult{}, err
	}
	if edit.Message == nil {
		return storage.GroupTxResult{Group: state.Group}, nil
	}

	b = &pgx.Batch{}
	if i := edit.Info; i != nil {
		b.Queue(`UPDATE groups SET name = $2, description = $3, avatar_url = $4, join_policy = $5, add_policy = $6
			WHERE id = $1`, gt.GroupID, i.Name, i.Description, i.AvatarURL, int64(i.JoinPolicy), int64(i.AddPolicy))
	}
	for _, u := range sortedKeys(edit.Roles) {
		r := edit.Roles[u]
		if r == storage.RoleOwner {
			b.Queue(`UPDATE groups SET owner_id = $2 WHERE id = $1`, gt.GroupID, u)
			r = storage.RoleMember
		}
		b.Queue(`UPDATE memberships SET role = $3 WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
			conv, u, int64(r)).Exec(mustAffect(u))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return storage.GroupTxResult{}, err
	}
	if len(edit.Add) > 0 {
		add := sorted(distinct(edit.Add))
		if gt.MaxMembers > 0 && state.Group.MemberCount+len(add) > gt.MaxMembers {
			return storage.GroupTxResult{}, fmt.Errorf("%d members + %d, at most %d: %w", state.Group.MemberCount, len(add), gt.MaxMembers, storage.ErrGroupFull)
		}
		if err := startPeriods(ctx, tx, conv, add, latest); err != nil {
			return storage.GroupTxResult{}, err
		}
	}
	msg := *edit.Message
	msg.ConversationID = conv
	appended, err := appendTx(ctx, tx, []storage.NewMessage{msg}, true, nil)
	if err != nil {
		return storage.GroupTxResult{}, fmt.Errorf("system message: %w", err)
	}
	if appended[0].Duplicate {
		return storage.GroupTxResult{}, fmt.Errorf("system message %q stored before: %w", msg.ClientMsgID, storage.ErrAlreadyExists)
	}
	seq := appended[0].Message.Seq
	var disbanded []string
	b = &pgx.Batch{}
	if len(edit.Remove) > 0 || edit.Disband {
		b.Queue(`UPDATE conversations SET member_epoch = member_epoch + 1 WHERE id = $1`, conv)
		for _, u := range sorted(distinct(edit.Remove)) {
			b.Queue(`UPDATE memberships SET left_seq = $3, role = 0
				WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`, conv, u, seq).Exec(mustAffect(u))
		}
		if edit.Disband {
			b.Queue(`UPDATE memberships SET left_seq = $2, role = 0 WHERE conversation_id = $1 AND left_seq IS NULL
				RETURNING user_id`, conv, seq).Query(func(rows pgx.Rows) (err error) {
				disbanded, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			b.Queue(`UPDATE groups SET disbanded_at = $2 WHERE id = $1`, gt.GroupID, toMillis(msg.CreatedAt))
		}
		b.Queue(recountMembers, conv)
	}
	var g storage.Group
	b.Queue(`SELECT `+groupColumns+` FROM groups g WHERE g.id = $1`, gt.GroupID).
		QueryRow(func(row pgx.Row) (err error) { g, err = scanGroup(row); return err })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return storage.GroupTxResult{}, err
	}
	var events []storage.AppendResult
	if users := storage.MembershipChanged(gt, edit, disbanded); gt.Events != nil && len(users) > 0 {
		evs, err := gt.Events(seq, users)
		if err != nil {
			return storage.GroupTxResult{}, err
		}
		if len(evs) > 0 {
			// After the group's conversation row, which this transaction
			// locked first; appendTx locks the streams' rows in one order,
			// as the friend changes do.
			if events, err = appendTx(ctx, tx, evs, true, nil); err != nil {
				return storage.GroupTxResult{}, fmt.Errorf("events: %w", err)
			}
			for i, r := range events {
				if r.Duplicate {
					return storage.GroupTxResult{}, fmt.Errorf("event %q stored before: %w", evs[i].ClientMsgID, storage.ErrAlreadyExists)
				}
			}
		}
	}
	return storage.GroupTxResult{Group: g, Message: appended[0], Changed: true, Events: events}, nil
}

// mustAffect fails a statement about an active member that touched no row.
func mustAffect(user string) func(pgconn.CommandTag) error {
	return func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%q is not a member: %w", user, storage.ErrNotFound)
		}
		return nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return sorted(keys)
}

// ListGroupMembers implements storage.Groups.
func (s *Store) ListGroupMembers(ctx context.Context, groupID, afterUserID string, limit int) ([]storage.GroupMember, error) {
	var g storage.Group
	out := []storage.GroupMember{}
	b := &pgx.Batch{}
	b.Queue(`SELECT owner_id FROM groups WHERE id = $1`, groupID).
		QueryRow(func(row pgx.Row) error { return notFound(row.Scan(&g.OwnerID)) })
	b.Queue(`SELECT user_id, role, joined_seq FROM memberships
		WHERE conversation_id = $1 AND left_seq IS NULL AND user_id > $2
		ORDER BY user_id LIMIT $3`, storage.GroupConversationID(groupID), afterUserID, limit).
		Query(func(rows pgx.Rows) error {
			var m storage.GroupMember
			var r int64
			_, err := pgx.ForEachRow(rows, []any{&m.UserID, &r, &m.JoinedSeq}, func() error {
				m.Role = storage.MemberRole(g, m.UserID, storage.GroupRole(r))
				out = append(out, m)
				return nil
			})
			return err
		})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("postgres: list members of group %q: %w", groupID, mapError(err))
	}
	return out, nil
}

// ListUserGroups implements storage.Groups.
func (s *Store) ListUserGroups(ctx context.Context, userID, afterGroupID string, limit int) ([]storage.UserGroup, error) {
	// The memberships primary key (user_id, conversation_id) serves the
	// range of the user's group conversations: "grp:" < id < "grp;".
	rows, err := s.pool.Query(ctx, `SELECT `+groupColumns+`, m.role
		FROM memberships m JOIN groups g ON g.id = substr(m.conversation_id, 5)
		WHERE m.user_id = $1 AND m.conversation_id > $2 AND m.conversation_id < 'grp;' AND m.left_seq IS NULL
		ORDER BY m.conversation_id LIMIT $3`, userID, storage.GroupConversationID(afterGroupID), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: groups of %q: %w", userID, mapError(err))
	}
	defer rows.Close()
	out := []storage.UserGroup{}
	for rows.Next() {
		var r int64
		g, err := scanGroup(rows, &r)
		if err != nil {
			return nil, fmt.Errorf("postgres: groups of %q: %w", userID, mapError(err))
		}
		out = append(out, storage.UserGroup{Group: g, Role: storage.MemberRole(g, userID, storage.GroupRole(r))})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: groups of %q: %w", userID, mapError(err))
	}
	return out, nil
}
