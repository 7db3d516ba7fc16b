package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// distinct returns ids without repeats, in first-seen order.
func distinct(ids []string) []string {
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

// sorted returns a sorted copy of ids. Rows are written in key order so
// that two transactions touching the same rows lock them in the same order
// and cannot deadlock.
func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// CreateGroup stores g, its conversation and its members, all joining at
// seq 0. ErrAlreadyExists if g.ID is taken; ErrNotFound if a member (or the
// owner) is not a user; ErrGroupFull if there are more than maxMembers.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group, memberIDs []string, maxMembers int) error {
	members := sorted(distinct(memberIDs))
	if len(members) > maxMembers {
		return fmt.Errorf("postgres: create group %q: %d members, at most %d: %w",
			g.ID, len(members), maxMembers, storage.ErrGroupFull)
	}
	conv := storage.GroupConversationID(g.ID)
	created := toMillis(g.CreatedAt)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// One round trip; the foreign keys on owner_id and user_id turn an
		// unknown user into ErrNotFound.
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO groups (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)`,
			g.ID, g.Name, g.OwnerID, created)
		b.Queue(`INSERT INTO conversations (id, latest_seq, updated_at) VALUES ($1, 0, $2)`, conv, created)
		b.Queue(`
			INSERT INTO memberships (conversation_id, user_id, joined_seq)
			SELECT $1, u, 0 FROM unnest($2::TEXT[]) AS u`, conv, members)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: create group %q: %w", g.ID, err)
	}
	return nil
}

// GetGroup returns the group with its MemberCount, or ErrNotFound.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	var g storage.Group
	var created int64
	err := s.pool.QueryRow(ctx, `
		SELECT g.id, g.name, g.owner_id, g.created_at,
		       (SELECT count(*) FROM memberships m WHERE m.conversation_id = $2 AND m.left_seq IS NULL)
		FROM groups g WHERE g.id = $1`,
		id, storage.GroupConversationID(id),
	).Scan(&g.ID, &g.Name, &g.OwnerID, &created, &g.MemberCount)
	if err != nil {
		return storage.Group{}, fmt.Errorf("postgres: get group %q: %w", id, notFound(err))
	}
	g.CreatedAt = fromMillis(created)
	return g, nil
}

// AddMembers makes the users active members, joining at the group's latest
// seq, and returns those that were not active before, in input order.
// ErrNotFound if the group or a user does not exist; ErrGroupFull if the
// group would pass maxMembers. On error nothing changes.
func (s *Store) AddMembers(ctx context.Context, groupID string, userIDs []string, maxMembers int) ([]string, error) {
	ids := distinct(userIDs)
	conv := storage.GroupConversationID(groupID)
	var added []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		added = nil // set afresh on every attempt
		var latest, activeCount int64
		active := map[string]bool{}
		// Reading latest_seq needs no row lock: under SERIALIZABLE a
		// concurrent send that bumps it either commits first (and we read
		// its seq) or is ordered after us.
		b := &pgx.Batch{}
		b.Queue(`SELECT c.latest_seq FROM groups g, conversations c WHERE g.id = $1 AND c.id = $2`,
			groupID, conv).QueryRow(func(row pgx.Row) error { return notFound(row.Scan(&latest)) })
		b.Queue(`SELECT count(*) FROM memberships WHERE conversation_id = $1 AND left_seq IS NULL`,
			conv).QueryRow(func(row pgx.Row) error { return row.Scan(&activeCount) })
		b.Queue(`
			SELECT user_id FROM memberships
			WHERE conversation_id = $1 AND user_id = ANY($2::TEXT[]) AND left_seq IS NULL`,
			conv, ids).Query(func(rows pgx.Rows) error {
			found, err := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, id := range found {
				active[id] = true
			}
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		for _, id := range ids {
			if !active[id] {
				added = append(added, id)
			}
		}
		if n := activeCount + int64(len(added)); n > int64(maxMembers) {
			return fmt.Errorf("%d members, at most %d: %w", n, maxMembers, storage.ErrGroupFull)
		}
		if len(added) == 0 {
			return nil
		}
		// A user who had left rejoins: the same row, a new joined_seq.
		_, err := tx.Exec(ctx, `
			INSERT INTO memberships (conversation_id, user_id, joined_seq)
			SELECT $1, u, $2 FROM unnest($3::TEXT[]) AS u
			ON CONFLICT (user_id, conversation_id) DO UPDATE
			SET joined_seq = excluded.joined_seq, left_seq = NULL`,
			conv, latest, sorted(added))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: add members to group %q: %w", groupID, err)
	}
	return added, nil
}

// LeaveGroup ends the user's membership at the group's latest seq.
// ErrNotFound if the group does not exist or the user is not an active
// member.
func (s *Store) LeaveGroup(ctx context.Context, groupID, userID string) error {
	conv := storage.GroupConversationID(groupID)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE memberships
			SET left_seq = (SELECT latest_seq FROM conversations WHERE id = $1)
			WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
			conv, userID)
		if err == nil && tag.RowsAffected() == 0 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: leave group %q: %w", groupID, err)
	}
	return nil
}

// ListMembers returns the ids of the group's active members.
// ErrNotFound if the group does not exist.
func (s *Store) ListMembers(ctx context.Context, groupID string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT user_id FROM memberships WHERE conversation_id = $1 AND left_seq IS NULL`,
		storage.GroupConversationID(groupID))
	if err != nil {
		return nil, fmt.Errorf("postgres: list members of group %q: %w", groupID, err)
	}
	members, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: list members of group %q: %w", groupID, err)
	}
	if len(members) == 0 {
		// Tell an empty group from a missing one.
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)`, groupID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("postgres: list members of group %q: %w", groupID, err)
		}
		if !exists {
			return nil, fmt.Errorf("postgres: list members of group %q: %w", groupID, storage.ErrNotFound)
		}
	}
	return members, nil
}

// GetMembership returns the user's membership in a conversation, or
// ErrNotFound.
func (s *Store) GetMembership(ctx context.Context, conversationID, userID string) (storage.Membership, error) {
	m := storage.Membership{ConversationID: conversationID, UserID: userID}
	var left *int64
	err := s.pool.QueryRow(ctx, `
		SELECT joined_seq, left_seq FROM memberships WHERE user_id = $1 AND conversation_id = $2`,
		userID, conversationID,
	).Scan(&m.JoinedSeq, &left)
	if err != nil {
		return storage.Membership{}, fmt.Errorf("postgres: get membership of %q in %q: %w", userID, conversationID, notFound(err))
	}
	m.Active = left == nil
	if left != nil {
		m.LeftSeq = *left
	}
	return m, nil
}
