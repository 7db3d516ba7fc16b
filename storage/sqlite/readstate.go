package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/starling-im/starling/storage"
)

// readChunk bounds the rows of one multi-row upsert: SQLite allows 32,766
// bound parameters per statement.
const readChunk = 1000

// AdvanceReadCursors implements storage.ReadState: one multi-row upsert per
// readChunk rows, in one transaction.
func (s *Store) AdvanceReadCursors(ctx context.Context, cursors []storage.ReadCursor, at time.Time) error {
	if len(cursors) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for rest := cursors; len(rest) > 0; {
			chunk := rest[:min(len(rest), readChunk)]
			rest = rest[len(chunk):]
			var b strings.Builder
			b.WriteString(`INSERT INTO read_state (user_id, conversation_id, read_seq, delivered_seq, updated_at) VALUES `)
			args := make([]any, 0, 5*len(chunk))
			for i, c := range chunk {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString("(?,?,?,?,?)")
				args = append(args, c.UserID, c.ConversationID, c.ReadSeq, max(c.DeliveredSeq, c.ReadSeq), at.UnixMilli())
			}
			// Every expression on the right reads the row as it was: the
			// change time moves only when a position does.
			b.WriteString(` ON CONFLICT (user_id, conversation_id) DO UPDATE SET
				read_seq = max(read_seq, excluded.read_seq),
				delivered_seq = max(delivered_seq, excluded.delivered_seq),
				updated_at = CASE WHEN excluded.read_seq > read_seq OR excluded.delivered_seq > delivered_seq
					THEN max(updated_at, excluded.updated_at) ELSE updated_at END`)
			if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: advance read cursors: %w", mapErr(err))
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
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO read_state (user_id, conversation_id, muted_until, updated_at) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET muted_until = ?3, updated_at = max(updated_at, ?4)`,
			userID, conversationID, mutedMillis(until), at.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set mute: %w", mapErr(err))
	}
	return nil
}

// inboxSQL lists one page of a user's inbox in one statement. page picks
// the user's one-to-one and group conversations in inbox order; each row
// then gets its cursors, its last message (the one at the visible top),
// the group's name and size, the other user's cursor (one-to-one; none
// while a block stands between the two, either way), and the unread
// count (inboxUnread): messages of others (system messages, sender "",
// excluded) after max(read cursor, current period's joined seq), looked
// at among the newest storage.UnreadScan, plus those older than that
// window, counted by seq arithmetic. unreadTotalSQL shares the page and
// the count, so the badge and the inbox never disagree.
const (
	// inboxFrom is the page of conversations in inbox order, each with
	// the user's read cursor and unread floor lo (the CTEs page and floor).
	inboxFrom = `WITH page AS (
	SELECT m.conversation_id AS conv, m.joined_seq AS cur_joined,
		CASE WHEN m.left_seq IS NULL THEN c.latest_seq ELSE min(m.left_seq, c.latest_seq) END AS top,
		coalesce((SELECT min(h.joined_seq) FROM membership_history h
			WHERE h.user_id = m.user_id AND h.conversation_id = m.conversation_id), m.joined_seq) AS first_joined,
		c.updated_at AS updated_at
	FROM memberships m
	JOIN conversations c ON c.id = m.conversation_id
	WHERE m.user_id = ?1 AND substr(m.conversation_id, 1, 4) IN ('c2c:', 'grp:')
		AND (?3 = '' OR c.updated_at < ?4 OR (c.updated_at = ?4 AND m.conversation_id > ?3))
	ORDER BY c.updated_at DESC, m.conversation_id
	LIMIT ?5
), floor AS (
	SELECT x.*, coalesce(r.read_seq, 0) AS read_seq, max(coalesce(r.read_seq, 0), x.cur_joined) AS lo,
		coalesce(r.muted_until, 0) AS muted_until, coalesce(r.updated_at, 0) AS read_updated
	FROM page x LEFT JOIN read_state r ON r.user_id = ?1 AND r.conversation_id = x.conv
)
`
	// inboxUnread is a floor row's unread count.
	inboxUnread = `CASE WHEN x.top <= x.lo THEN 0 ELSE
		(SELECT count(*) FROM messages u WHERE u.conversation_id = x.conv
			AND u.seq > max(x.lo, x.top - ?6) AND u.seq <= x.top AND u.sender_id <> ?1 AND u.sender_id <> '')
		+ max(0, x.top - ?6 - x.lo) END`
	inboxSQL = inboxFrom + `SELECT x.conv, x.top, coalesce(d.delivered_seq, 0), x.first_joined, x.updated_at,
	x.read_seq, x.muted_until, x.read_updated,
	` + inboxUnread + `,
	lm.msg_id, lm.sender_id, lm.sender_device_id, lm.client_msg_id, lm.content, lm.created_at,
	g.name,
	coalesce(g.member_count, 0),
	coalesce(p.read_seq, 0), coalesce(p.delivered_seq, 0), coalesce(p.updated_at, 0)
FROM floor x
LEFT JOIN device_cursors d ON d.user_id = ?1 AND d.device_id = ?2 AND d.conversation_id = x.conv
LEFT JOIN messages lm ON lm.conversation_id = x.conv AND lm.seq = x.top
LEFT JOIN groups g ON substr(x.conv, 1, 4) = 'grp:' AND g.id = substr(x.conv, 5)
LEFT JOIN read_state p ON substr(x.conv, 1, 4) = 'c2c:' AND p.conversation_id = x.conv AND p.user_id <> ?1
	AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = ?1 AND b.blocked_id = p.user_id)
	AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.user_id AND b.blocked_id = ?1)
ORDER BY x.updated_at DESC, x.conv`
	// unreadTotalSQL sums inboxUnread over the whole inbox (no page:
	// ?3 '', ?5 -1), reading nothing else: the badge of an offline push.
	unreadTotalSQL = inboxFrom + `SELECT coalesce(sum(` + inboxUnread + `), 0) FROM floor x`
)

// Inbox implements storage.ReadState.
func (s *Store) Inbox(ctx context.Context, q storage.InboxQuery) ([]storage.InboxEntry, error) {
	limit := int64(q.Limit)
	if limit <= 0 {
		limit = -1 // no limit
	}
	rows, err := s.reads.QueryContext(ctx, inboxSQL, q.UserID, q.DeviceID, q.After.ConversationID, q.After.UpdatedAt.UnixMilli(), limit, storage.UnreadScan)
	if err != nil {
		return nil, fmt.Errorf("sqlite: inbox of %q: %w", q.UserID, mapErr(err))
	}
	defer rows.Close()
	out := []storage.InboxEntry{}
	for rows.Next() {
		var (
			e                                   storage.InboxEntry
			updated, muted, readUpd, peerUpd    int64
			msgID, created                      sql.NullInt64
			sender, senderDev, clientMsg, gname sql.NullString
			content                             []byte
		)
		err := rows.Scan(&e.ConversationID, &e.LatestSeq, &e.DeliveredSeq, &e.JoinedSeq, &updated,
			&e.ReadSeq, &muted, &readUpd, &e.Unread,
			&msgID, &sender, &senderDev, &clientMsg, &content, &created,
			&gname, &e.MemberCount, &e.PeerReadSeq, &e.PeerDeliveredSeq, &peerUpd)
		if err != nil {
			return nil, fmt.Errorf("sqlite: inbox of %q: %w", q.UserID, mapErr(err))
		}
		e.UpdatedAt = fromMillis(updated)
		e.MutedUntil = mutedTime(muted)
		e.GroupName = gname.String
		e.ChangedAt = fromMillis(max(updated, readUpd, peerUpd))
		if msgID.Valid {
			e.Last = &storage.Message{ConversationID: e.ConversationID, Seq: e.LatestSeq, MsgID: msgID.Int64,
				SenderID: sender.String, SenderDeviceID: senderDev.String, ClientMsgID: clientMsg.String,
				Content: content, CreatedAt: fromMillis(created.Int64)}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: inbox of %q: %w", q.UserID, mapErr(err))
	}
	return out, nil
}

// UnreadTotal implements storage.ReadState.
func (s *Store) UnreadTotal(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := s.reads.QueryRowContext(ctx, unreadTotalSQL, userID, "", "", 0, -1, storage.UnreadScan).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: unread total of %q: %w", userID, mapErr(err))
	}
	return n, nil
}

// ReadCursorOf implements storage.ReadState.
func (s *Store) ReadCursorOf(ctx context.Context, userID, conversationID string) (storage.ReadCursor, error) {
	c := storage.ReadCursor{UserID: userID, ConversationID: conversationID}
	err := s.reads.QueryRowContext(ctx, `SELECT read_seq, delivered_seq FROM read_state WHERE user_id = ? AND conversation_id = ?`,
		userID, conversationID).Scan(&c.ReadSeq, &c.DeliveredSeq)
	if err != nil && err != sql.ErrNoRows {
		return c, fmt.Errorf("sqlite: read cursor: %w", mapErr(err))
	}
	return c, nil
}

// MutedUntil implements storage.ReadState.
func (s *Store) MutedUntil(ctx context.Context, userID, conversationID string) (time.Time, error) {
	var ms int64
	err := s.reads.QueryRowContext(ctx, `SELECT muted_until FROM read_state WHERE user_id = ? AND conversation_id = ?`, userID, conversationID).Scan(&ms)
	if err != nil && err != sql.ErrNoRows {
		return time.Time{}, fmt.Errorf("sqlite: muted until: %w", mapErr(err))
	}
	return mutedTime(ms), nil
}

// readBySQL finds the readers of one message: cursors at or past it, of
// users whose current period contains it or an earlier period did.
const readBySQL = `SELECT r.user_id FROM read_state r
	JOIN memberships m ON m.user_id = r.user_id AND m.conversation_id = r.conversation_id
	WHERE r.conversation_id = ?1 AND r.read_seq >= ?2 AND r.user_id <> ?3
		AND ((m.joined_seq < ?2 AND (m.left_seq IS NULL OR m.left_seq >= ?2))
			OR EXISTS (SELECT 1 FROM membership_history h WHERE h.user_id = r.user_id
				AND h.conversation_id = r.conversation_id AND h.joined_seq < ?2 AND h.left_seq >= ?2))
	ORDER BY r.user_id`

// ReadBy implements storage.ReadState.
func (s *Store) ReadBy(ctx context.Context, conversationID string, seq int64, exclude string, limit int) (int, []string, error) {
	rows, err := s.reads.QueryContext(ctx, readBySQL, conversationID, seq, exclude)
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite: read by: %w", mapErr(err))
	}
	defer rows.Close()
	n, users := 0, []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return 0, nil, fmt.Errorf("sqlite: read by: %w", mapErr(err))
		}
		if n < limit {
			users = append(users, u)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("sqlite: read by: %w", mapErr(err))
	}
	return n, users, nil
}

// LastSeen implements storage.ReadState.
func (s *Store) LastSeen(ctx context.Context, userID, deviceID string) (time.Time, error) {
	var ms int64
	err := s.reads.QueryRowContext(ctx, `SELECT seen_at FROM device_seen WHERE user_id = ? AND device_id = ?`, userID, deviceID).Scan(&ms)
	switch {
	case err == sql.ErrNoRows:
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("sqlite: last seen: %w", mapErr(err))
	}
	return fromMillis(ms), nil
}

// MarkSeen implements storage.ReadState.
func (s *Store) MarkSeen(ctx context.Context, seen []storage.DeviceSeen) error {
	if len(seen) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO device_seen (user_id, device_id, seen_at) VALUES (?, ?, ?)
			ON CONFLICT (user_id, device_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, d := range seen {
			if _, err := st.ExecContext(ctx, d.UserID, d.DeviceID, d.At.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: mark seen: %w", mapErr(err))
	}
	return nil
}
