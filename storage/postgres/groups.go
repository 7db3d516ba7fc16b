package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// CreateGroup stores g, its conversation (at membership epoch 1) and its
// members, all joining at seq 0. ErrAlreadyExists if g.ID is taken;
// ErrNotFound if a member (or the owner) is not a user; ErrGroupFull if
// there are more than maxMembers.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group, memberIDs []string, maxMembers int) error {
	members := sorted(distinct(memberIDs))
	if len(members) > maxMembers {
		return fmt.Errorf("postgres: create group %q: %d members, at most %d: %w",
			g.ID, len(members), maxMembers, storage.ErrGroupFull)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// One round trip.
		b := &pgx.Batch{}
		insertGroup(b, g, members)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: create group %q: %w", g.ID, mapError(err))
	}
	return nil
}

// GetGroup returns the group with its MemberCount, or ErrNotFound.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	g, err := scanGroup(s.pool.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups g WHERE g.id = $1`, id))
	if err != nil {
		return storage.Group{}, fmt.Errorf("postgres: get group %q: %w", id, mapError(err))
	}
	return g, nil
}

// AddMembers makes the users active members, joining at the group's latest
// seq, and returns those that were not active before, in input order. A
// user who had left starts a new period; the ended one moves to
// membership_history. When anyone was added, the membership epoch is
// incremented. ErrNotFound if the group or a user does not exist;
// ErrGroupFull if the group would pass maxMembers. On error nothing
// changes.
func (s *Store) AddMembers(ctx context.Context, groupID string, userIDs []string, maxMembers int) ([]string, error) {
	ids := distinct(userIDs)
	var added []string
	err := s.inTx(ctx, func(tx pgx.Tx) (err error) {
		added, err = addMembers(ctx, tx, groupID, ids, maxMembers) // set afresh on every attempt
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: add members to group %q: %w", groupID, mapError(err))
	}
	return added, nil
}

// addMembers is one attempt of AddMembers: one round trip to read, one to
// write.
func addMembers(ctx context.Context, tx pgx.Tx, groupID string, ids []string, maxMembers int) ([]string, error) {
	conv := storage.GroupConversationID(groupID)
	var latest, activeCount int64
	active := map[string]bool{}
	// Reading latest_seq needs no row lock: under SERIALIZABLE a concurrent
	// send that bumps it either commits first (and we read its seq) or
	// conflicts with our write of the same row below, and one of us retries.
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
		return nil, err
	}
	var added []string
	for _, id := range ids {
		if !active[id] {
			added = append(added, id)
		}
	}
	if n := activeCount + int64(len(added)); n > int64(maxMembers) {
		return nil, fmt.Errorf("%d members, at most %d: %w", n, maxMembers, storage.ErrGroupFull)
	}
	if len(added) == 0 {
		return nil, nil // nobody new: the epoch stays
	}
	if err := startPeriods(ctx, tx, conv, sorted(added), latest); err != nil {
		return nil, err
	}
	return added, nil
}

// startPeriods makes users (sorted) active members of conv from seq on, and
// increments the membership epoch, in one round trip. A user who had left
// has the ended period moved to membership_history first, so it stays
// readable; a period that reads nothing (joined_seq = left_seq) is dropped
// (see migration 0002). An id that is no user fails the foreign key:
// ErrNotFound.
func startPeriods(ctx context.Context, tx pgx.Tx, conv string, users []string, seq int64) error {
	b := &pgx.Batch{}
	// The conversation row first, as AppendMessages locks it first: one
	// lock order, no deadlock.
	b.Queue(`UPDATE conversations SET member_epoch = member_epoch + 1 WHERE id = $1`, conv)
	b.Queue(`
		INSERT INTO membership_history (conversation_id, user_id, joined_seq, left_seq)
		SELECT conversation_id, user_id, joined_seq, left_seq FROM memberships
		WHERE conversation_id = $1 AND user_id = ANY($2::TEXT[]) AND left_seq > joined_seq`,
		conv, users)
	b.Queue(`
		INSERT INTO memberships (conversation_id, user_id, joined_seq)
		SELECT $1, u, $2 FROM unnest($3::TEXT[]) AS u
		ON CONFLICT (user_id, conversation_id) DO UPDATE
		SET joined_seq = excluded.joined_seq, left_seq = NULL, role = 0`,
		conv, seq, users)
	b.Queue(recountMembers, conv)
	return tx.SendBatch(ctx, b).Close()
}

// LeaveGroup ends the user's current period at the group's latest seq and
// increments the membership epoch. ErrNotFound if the group does not exist
// or the user is not an active member.
func (s *Store) LeaveGroup(ctx context.Context, groupID, userID string) error {
	conv := storage.GroupConversationID(groupID)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// One round trip. The epoch bump locks the conversation row first
		// (AppendMessages' lock order), so the latest_seq read next is the
		// one no send can pass before we commit. Not a member: the bump
		// rolls back with the rest.
		b := &pgx.Batch{}
		b.Queue(`UPDATE conversations SET member_epoch = member_epoch + 1 WHERE id = $1`, conv)
		b.Queue(`
			UPDATE memberships
			SET left_seq = (SELECT latest_seq FROM conversations WHERE id = $1), role = 0
			WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
			conv, userID).Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("no group, or %q is not a member: %w", userID, storage.ErrNotFound)
			}
			return nil
		})
		b.Queue(recountMembers, conv)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: leave group %q: %w", groupID, mapError(err))
	}
	return nil
}

// ListMembers returns the group's active members and their membership
// epoch, from one statement (one snapshot), so the two agree.
// ErrNotFound if the group does not exist.
func (s *Store) ListMembers(ctx context.Context, groupID string) (storage.MemberSet, error) {
	// The LEFT JOIN tells a missing group (no row) from a group without
	// active members (one row with a NULL user).
	conv := storage.GroupConversationID(groupID)
	var set storage.MemberSet
	rows, err := s.pool.Query(ctx, `
		SELECT c.member_epoch, m.user_id FROM groups g
		JOIN conversations c ON c.id = $2
		LEFT JOIN memberships m ON m.conversation_id = $2 AND m.left_seq IS NULL
		WHERE g.id = $1`,
		groupID, conv)
	if err == nil {
		set.Members, err = groupUsers(rows, &set.Epoch)
	}
	if err != nil {
		return storage.MemberSet{}, fmt.Errorf("postgres: list members of group %q: %w", groupID, mapError(err))
	}
	return set, nil
}

// MembersAt returns the users with a period, current or earlier, that
// contains seq. ErrNotFound if the group does not exist.
func (s *Store) MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error) {
	conv := storage.GroupConversationID(groupID)
	// UNION, though a user's periods do not overlap: a user is listed once
	// whatever the data.
	rows, err := s.pool.Query(ctx, `
		SELECT p.user_id FROM groups g
		LEFT JOIN (
			SELECT user_id FROM memberships
			WHERE conversation_id = $2 AND joined_seq < $3::BIGINT AND (left_seq IS NULL OR left_seq >= $3::BIGINT)
			UNION
			SELECT user_id FROM membership_history
			WHERE conversation_id = $2 AND joined_seq < $3::BIGINT AND left_seq >= $3::BIGINT
		) p ON true
		WHERE g.id = $1`,
		groupID, conv, seq)
	var users []string
	if err == nil {
		users, err = groupUsers(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: members of group %q at seq %d: %w", groupID, seq, mapError(err))
	}
	return users, nil
}

// groupUsers reads rows of (lead..., user) from a query over groups LEFT
// JOIN users: no row at all means no group (ErrNotFound); a NULL user is
// a group without any. lead is scanned from every row (it is the same in
// each).
func groupUsers(rows pgx.Rows, lead ...any) ([]string, error) {
	found := false
	users := []string{}
	var u *string
	_, err := pgx.ForEachRow(rows, append(lead, &u), func() error {
		found = true
		if u != nil {
			users = append(users, *u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("group: %w", storage.ErrNotFound)
	}
	return users, nil
}

// GetMembership returns the user's membership in a conversation, every
// period of it, or ErrNotFound.
func (s *Store) GetMembership(ctx context.Context, conversationID, userID string) (storage.Membership, error) {
	// The earlier periods, then the current one, whose NULL left_seq
	// (active) reads as OpenSeq. Earlier periods end at or before the
	// current one starts, so ordering by joined_seq puts it last.
	rows, err := s.pool.Query(ctx, `
		SELECT joined_seq, left_seq FROM membership_history WHERE user_id = $1 AND conversation_id = $2
		UNION ALL
		SELECT joined_seq, COALESCE(left_seq, $3::BIGINT) FROM memberships WHERE user_id = $1 AND conversation_id = $2
		ORDER BY 1, 2`,
		userID, conversationID, storage.OpenSeq)
	var periods []storage.Period
	if err == nil {
		periods, err = pgx.CollectRows(rows, pgx.RowToStructByPos[storage.Period])
	}
	if err == nil && len(periods) == 0 {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.Membership{}, fmt.Errorf("postgres: get membership of %q in %q: %w", userID, conversationID, mapError(err))
	}
	return storage.Membership{ConversationID: conversationID, UserID: userID, Periods: periods}, nil
}
