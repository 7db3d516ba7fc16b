package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// AdvanceReadCursors implements storage.ReadState in one statement: every
// row through unnest, in key order so concurrent calls (several nodes)
// take row locks in the same order.
func (s *Store) AdvanceReadCursors(ctx context.Context, cursors []storage.ReadCursor, at time.Time) error {
	if len(cursors) == 0 {
		return nil
	}
	sorted := slices.Clone(cursors)
	slices.SortFunc(sorted, func(a, b storage.ReadCursor) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.ConversationID, b.ConversationID))
	})
	n := len(sorted)
	users, convs := make([]string, n), make([]string, n)
	reads, delivered := make([]int64, n), make([]int64, n)
	for i, c := range sorted {
		users[i], convs[i], reads[i], delivered[i] = c.UserID, c.ConversationID, c.ReadSeq, max(c.DeliveredSeq, c.ReadSeq)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The WHERE skips rows that would not move: no write, no conflict
		// with another node's flush.
		_, err := tx.Exec(ctx, `
			INSERT INTO read_state (user_id, conversation_id, read_seq, delivered_seq, updated_at)
			SELECT u, c, r, d, $5::BIGINT FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS k (u, c, r, d)
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET
				read_seq = GREATEST(read_state.read_seq, excluded.read_seq),
				delivered_seq = GREATEST(read_state.delivered_seq, excluded.delivered_seq),
				updated_at = GREATEST(read_state.updated_at, excluded.updated_at)
			WHERE excluded.read_seq > read_state.read_seq OR excluded.delivered_seq > read_state.delivered_seq`,
			users, convs, reads, delivered, at.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: advance read cursors: %w", mapError(err))
	}
	return nil
}

// mutedMillis stores a mute time: 0 none, MaxInt64 for ever.
func mutedMillis(until time.Time) int64 {
	switch {
	case until.IsZero():
		return 0
	case until.Equal(storage.MutedForever):
		return math.MaxInt64
	}
	return until.UnixMilli()
}

func mutedTime(ms int64) time.Time {
	switch ms {
	case 0:
		return time.Time{}
	case math.MaxInt64:
		return storage.MutedForever
	}
	return fromMillis(ms)
}

// SetMute implements storage.ReadState.
func (s *Store) SetMute(ctx context.Context, userID, conversationID string, until, at time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO read_state (user_id, conversation_id, muted_until, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET muted_until = $3, updated_at = GREATEST(read_state.updated_at, $4)`,
			userID, conversationID, mutedMillis(until), at.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: set mute: %w", mapError(err))
	}
	return nil
}

// inboxSQL and unreadTotalSQL are the SQLite backend's in PostgreSQL's
// words (see there).
const (
	// inboxFrom is the page of conversations in inbox order, each with
	// the user's read cursor and unread floor lo (the CTEs page and floor).
	inboxFrom = `WITH page AS (
	SELECT m.conversation_id AS conv, m.joined_seq AS cur_joined,
		CASE WHEN m.left_seq IS NULL THEN c.latest_seq ELSE LEAST(m.left_seq, c.latest_seq) END AS top,
		COALESCE((SELECT min(h.joined_seq) FROM membership_history h
			WHERE h.user_id = m.user_id AND h.conversation_id = m.conversation_id), m.joined_seq) AS first_joined,
		c.updated_at AS updated_at
	FROM memberships m
	JOIN conversations c ON c.id = m.conversation_id
	WHERE m.user_id = $1 AND substr(m.conversation_id, 1, 4) IN ('c2c:', 'grp:')
		AND ($2::TEXT = '' OR c.updated_at < $3::BIGINT OR (c.updated_at = $3::BIGINT AND m.conversation_id > $2::TEXT))
	ORDER BY c.updated_at DESC, m.conversation_id
	LIMIT $4
), floor AS (
	SELECT x.*, COALESCE(r.read_seq, 0) AS read_seq, GREATEST(COALESCE(r.read_seq, 0), x.cur_joined) AS lo,
		COALESCE(r.muted_until, 0) AS muted_until, COALESCE(r.updated_at, 0) AS read_updated
	FROM page x
	-- LATERAL with LIMIT (which keeps the planner from flattening it): a
	-- primary-key lookup per row whatever the statistics say (a fresh
	-- table's made it scan every row of the user per conversation).
	LEFT JOIN LATERAL (SELECT r.read_seq, r.muted_until, r.updated_at FROM read_state r
		WHERE r.user_id = $1 AND r.conversation_id = x.conv LIMIT 1) r ON true
)
`
	// inboxUnread is a floor row's unread count.
	inboxUnread = `CASE WHEN x.top <= x.lo THEN 0 ELSE
		(SELECT count(*) FROM messages u WHERE u.conversation_id = x.conv
			AND u.seq > GREATEST(x.lo, x.top - $5::BIGINT) AND u.seq <= x.top AND u.sender_id <> $1 AND u.sender_id <> '')
		+ GREATEST(0, x.top - $5::BIGINT - x.lo) END`
	inboxSQL = inboxFrom + `SELECT x.conv, x.top, COALESCE(d.delivered_seq, 0), x.first_joined, x.updated_at,
	x.read_seq, x.muted_until, x.read_updated,
	` + inboxUnread + `,
	lm.msg_id, lm.sender_id, lm.sender_device_id, lm.client_msg_id, lm.content, lm.created_at,
	g.name,
	COALESCE(g.member_count, 0),
	COALESCE(p.read_seq, 0), COALESCE(p.delivered_seq, 0), COALESCE(p.updated_at, 0)
FROM floor x
LEFT JOIN LATERAL (SELECT d.delivered_seq FROM device_cursors d
	WHERE d.user_id = $1 AND d.device_id = $6 AND d.conversation_id = x.conv LIMIT 1) d ON true
LEFT JOIN messages lm ON lm.conversation_id = x.conv AND lm.seq = x.top
LEFT JOIN groups g ON substr(x.conv, 1, 4) = 'grp:' AND g.id = substr(x.conv, 5)
-- The other user's row: a lookup per row too (a plain join may scan every
-- user's rows while the statistics say read_state is small), and each
-- block direction its own primary-key probe.
LEFT JOIN LATERAL (SELECT p.read_seq, p.delivered_seq, p.updated_at FROM read_state p
	WHERE substr(x.conv, 1, 4) = 'c2c:' AND p.conversation_id = x.conv AND p.user_id <> $1
		AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = p.user_id)
		AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.user_id AND b.blocked_id = $1)
	LIMIT 1) p ON true
ORDER BY x.updated_at DESC, x.conv`
	// unreadTotalSQL sums inboxUnread over the whole inbox (no page: $2
	// '', $4 NULL), reading nothing else: the badge of an offline push.
	// It takes $1–$5; the device ($6) is only the listing's.
	unreadTotalSQL = inboxFrom + `SELECT COALESCE(sum(` + inboxUnread + `), 0)::BIGINT FROM floor x`
)

// Inbox implements storage.ReadState.
func (s *Store) Inbox(ctx context.Context, q storage.InboxQuery) ([]storage.InboxEntry, error) {
	var limit *int64 // NULL: no limit
	if q.Limit > 0 {
		l := int64(q.Limit)
		limit = &l
	}
	rows, err := s.pool.Query(ctx, inboxSQL, q.UserID, q.After.ConversationID, q.After.UpdatedAt.UnixMilli(), limit, int64(storage.UnreadScan), q.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: inbox of %q: %w", q.UserID, mapError(err))
	}
	out := []storage.InboxEntry{}
	var (
		e                                         storage.InboxEntry
		updated, muted, readUpd, peerUpd, members int64
		msgID, created                            *int64
		sender, senderDev, clientMsg, gname       *string
		content                                   []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&e.ConversationID, &e.LatestSeq, &e.DeliveredSeq, &e.JoinedSeq, &updated,
		&e.ReadSeq, &muted, &readUpd, &e.Unread,
		&msgID, &sender, &senderDev, &clientMsg, &content, &created,
		&gname, &members, &e.PeerReadSeq, &e.PeerDeliveredSeq, &peerUpd}, func() error {
		x := e
		x.UpdatedAt = fromMillis(updated)
		x.MutedUntil = mutedTime(muted)
		x.MemberCount = int(members)
		x.ChangedAt = fromMillis(max(updated, readUpd, peerUpd))
		x.GroupName, x.Last = "", nil
		if gname != nil {
			x.GroupName = *gname
		}
		if msgID != nil {
			x.Last = &storage.Message{ConversationID: x.ConversationID, Seq: x.LatestSeq, MsgID: *msgID,
				SenderID: *sender, SenderDeviceID: *senderDev, ClientMsgID: *clientMsg,
				Content: slices.Clone(content), CreatedAt: fromMillis(*created)}
		}
		out = append(out, x)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: inbox of %q: %w", q.UserID, mapError(err))
	}
	return out, nil
}

// UnreadTotal implements storage.ReadState.
func (s *Store) UnreadTotal(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, unreadTotalSQL, userID, "", int64(0), nil, int64(storage.UnreadScan)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: unread total of %q: %w", userID, mapError(err))
	}
	return n, nil
}

// ReadCursorOf implements storage.ReadState.
func (s *Store) ReadCursorOf(ctx context.Context, userID, conversationID string) (storage.ReadCursor, error) {
	c := storage.ReadCursor{UserID: userID, ConversationID: conversationID}
	err := s.pool.QueryRow(ctx, `SELECT read_seq, delivered_seq FROM read_state WHERE user_id = $1 AND conversation_id = $2`,
		userID, conversationID).Scan(&c.ReadSeq, &c.DeliveredSeq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("postgres: read cursor: %w", mapError(err))
	}
	return c, nil
}

// MutedUntil implements storage.ReadState.
func (s *Store) MutedUntil(ctx context.Context, userID, conversationID string) (time.Time, error) {
	var ms int64
	err := s.pool.QueryRow(ctx, `SELECT muted_until FROM read_state WHERE user_id = $1 AND conversation_id = $2`, userID, conversationID).Scan(&ms)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("postgres: muted until: %w", mapError(err))
	}
	return mutedTime(ms), nil
}

// ReadBy implements storage.ReadState (see the SQLite backend's readBySQL).
func (s *Store) ReadBy(ctx context.Context, conversationID string, seq int64, exclude string, limit int) (int, []string, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.user_id FROM read_state r
		JOIN memberships m ON m.user_id = r.user_id AND m.conversation_id = r.conversation_id
		WHERE r.conversation_id = $1 AND r.read_seq >= $2 AND r.user_id <> $3
			AND ((m.joined_seq < $2 AND (m.left_seq IS NULL OR m.left_seq >= $2))
				OR EXISTS (SELECT 1 FROM membership_history h WHERE h.user_id = r.user_id
					AND h.conversation_id = r.conversation_id AND h.joined_seq < $2 AND h.left_seq >= $2))
		ORDER BY r.user_id`, conversationID, seq, exclude)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: read by: %w", mapError(err))
	}
	n, users := 0, []string{}
	var u string
	_, err = pgx.ForEachRow(rows, []any{&u}, func() error {
		if n < limit {
			users = append(users, u)
		}
		n++
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: read by: %w", mapError(err))
	}
	return n, users, nil
}

// LastSeen implements storage.ReadState.
func (s *Store) LastSeen(ctx context.Context, userID, deviceID string) (time.Time, error) {
	var ms int64
	err := s.pool.QueryRow(ctx, `SELECT seen_at FROM device_seen WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&ms)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("postgres: last seen: %w", mapError(err))
	}
	return fromMillis(ms), nil
}

// MarkSeen implements storage.ReadState in one statement.
func (s *Store) MarkSeen(ctx context.Context, seen []storage.DeviceSeen) error {
	if len(seen) == 0 {
		return nil
	}
	sorted := slices.Clone(seen)
	slices.SortFunc(sorted, func(a, b storage.DeviceSeen) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.DeviceID, b.DeviceID))
	})
	sorted = slices.CompactFunc(sorted, func(a, b storage.DeviceSeen) bool { return a.UserID == b.UserID && a.DeviceID == b.DeviceID })
	users, devices, at := make([]string, len(sorted)), make([]string, len(sorted)), make([]int64, len(sorted))
	for i, d := range sorted {
		users[i], devices[i], at[i] = d.UserID, d.DeviceID, d.At.UnixMilli()
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO device_seen (user_id, device_id, seen_at)
			SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[])
			ON CONFLICT (user_id, device_id) DO UPDATE SET seen_at = excluded.seen_at
			WHERE device_seen.seen_at < excluded.seen_at`, users, devices, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: mark seen: %w", mapError(err))
	}
	return nil
}
