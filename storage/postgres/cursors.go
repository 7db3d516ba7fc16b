package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// AdvanceCursors moves each cursor to max(current, DeliveredSeq), in one
// transaction and one statement. Cursors never move back.
func (s *Store) AdvanceCursors(ctx context.Context, cursors []storage.DeviceCursor) error {
	if len(cursors) == 0 {
		return nil
	}
	// One row per cursor, the highest seq of each: ON CONFLICT DO UPDATE may
	// not touch a row twice in one statement. Key order keeps concurrent
	// calls from deadlocking.
	best := make(map[storage.DeviceCursor]int64, len(cursors))
	for _, c := range cursors {
		k := c
		k.DeliveredSeq = 0
		if seq, ok := best[k]; !ok || c.DeliveredSeq > seq {
			best[k] = c.DeliveredSeq
		}
	}
	keys := make([]storage.DeviceCursor, 0, len(best))
	for k, seq := range best {
		k.DeliveredSeq = seq
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b storage.DeviceCursor) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.DeviceID, b.DeviceID),
			cmp.Compare(a.ConversationID, b.ConversationID))
	})
	users, devices, convs := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	seqs := make([]int64, len(keys))
	for i, k := range keys {
		users[i], devices[i], convs[i], seqs[i] = k.UserID, k.DeviceID, k.ConversationID, k.DeliveredSeq
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The WHERE skips rows already at or past the new seq: no write, no
		// conflict with another device's ack.
		_, err := tx.Exec(ctx, `
			INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq)
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
			ON CONFLICT (user_id, device_id, conversation_id) DO UPDATE
			SET delivered_seq = excluded.delivered_seq
			WHERE device_cursors.delivered_seq < excluded.delivered_seq`,
			users, devices, convs, seqs)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: advance cursors: %w", mapError(err))
	}
	return nil
}

// ListConversations returns every conversation the user is or was a member
// of, with the device's cursor, newest activity first. With onlyBehind,
// only those with messages past max(DeliveredSeq, JoinedSeq).
func (s *Store) ListConversations(ctx context.Context, userID, deviceID string, onlyBehind bool) ([]storage.ConversationState, error) {
	// One row per current period. For a user who left, the conversation
	// ends at its left_seq. JoinedSeq is the first period's: the smallest
	// joined_seq in membership_history when there were earlier periods
	// (its primary key finds it at once), else the current one's.
	rows, err := s.pool.Query(ctx, `
		SELECT m.conversation_id,
		       CASE WHEN m.left_seq IS NULL THEN c.latest_seq ELSE LEAST(m.left_seq, c.latest_seq) END,
		       COALESCE(d.delivered_seq, 0),
		       COALESCE((SELECT min(h.joined_seq) FROM membership_history h
		                 WHERE h.user_id = m.user_id AND h.conversation_id = m.conversation_id), m.joined_seq),
		       c.updated_at
		FROM memberships m
		JOIN conversations c ON c.id = m.conversation_id
		LEFT JOIN device_cursors d
		       ON d.user_id = m.user_id AND d.device_id = $2 AND d.conversation_id = m.conversation_id
		WHERE m.user_id = $1
		ORDER BY c.updated_at DESC, m.conversation_id`,
		userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list conversations of %q: %w", userID, mapError(err))
	}
	states := []storage.ConversationState{}
	var st storage.ConversationState
	var updated int64
	_, err = pgx.ForEachRow(rows, []any{&st.ConversationID, &st.LatestSeq, &st.DeliveredSeq, &st.JoinedSeq, &updated}, func() error {
		st.UpdatedAt = fromMillis(updated)
		if !onlyBehind || st.LatestSeq > max(st.DeliveredSeq, st.JoinedSeq) {
			states = append(states, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list conversations of %q: %w", userID, mapError(err))
	}
	return states, nil
}
