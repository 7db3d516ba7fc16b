package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/starling-im/starling/storage"
)

const messageColumns = `conversation_id, seq, msg_id, sender_id, sender_device_id, client_msg_id, content, created_at`

// AppendMessages implements storage.Messages. The whole batch is one
// IMMEDIATE transaction, so one fsync pays for every message in it.
func (s *Store) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	for i, m := range msgs {
		if m.ClientMsgID == "" {
			return nil, fmt.Errorf("sqlite: append messages: message %d: empty client_msg_id", i)
		}
		if _, err := storage.ParseConversationID(m.ConversationID); err != nil {
			return nil, fmt.Errorf("sqlite: append messages: message %d: %w", i, err)
		}
	}
	var results []storage.AppendResult
	err := s.writeTx(ctx, func(tx *sql.Tx) (err error) {
		results, err = s.appendTx(ctx, tx, msgs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: append messages: %w", err)
	}
	return results, nil
}

// convBatch is the new (not duplicate) messages of one conversation in a batch.
type convBatch struct {
	id      string
	msgs    []int // indexes into the batch, in input order
	members []string
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	results := make([]storage.AppendResult, len(msgs))

	// Dedup first, so duplicates consume no seq. A resend within the batch
	// points at its first copy (dupOf), which is filled in below.
	type key struct{ sender, clientMsgID string }
	first := make(map[key]int, len(msgs))
	dupOf := make(map[int]int)
	var convs []*convBatch // in order of first appearance
	byID := make(map[string]*convBatch)
	find := tx.StmtContext(ctx, s.findMessage)
	for i, m := range msgs {
		k := key{m.SenderID, m.ClientMsgID}
		if j, ok := first[k]; ok {
			dupOf[i] = j
			continue
		}
		first[k] = i
		stored, err := scanMessage(find.QueryRowContext(ctx, m.SenderID, m.ClientMsgID))
		switch {
		case err == nil:
			results[i] = storage.AppendResult{Message: stored, Duplicate: true}
			continue
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		c := byID[m.ConversationID]
		if c == nil {
			c = &convBatch{id: m.ConversationID}
			byID[m.ConversationID] = c
			convs = append(convs, c)
		}
		c.msgs = append(c.msgs, i)
		for _, u := range m.Members {
			if !slices.Contains(c.members, u) {
				c.members = append(c.members, u)
			}
		}
	}

	bump := tx.StmtContext(ctx, s.bumpSeq)
	insert := tx.StmtContext(ctx, s.insertMessage)
	member := tx.StmtContext(ctx, s.insertMember)
	for _, c := range convs {
		// One statement reserves the conversation's seqs (and creates the
		// conversation on its first message).
		last := msgs[c.msgs[len(c.msgs)-1]]
		var latest int64
		if err := bump.QueryRowContext(ctx, c.id, len(c.msgs), millis(last.CreatedAt)).Scan(&latest); err != nil {
			return nil, fmt.Errorf("conversation %q: reserve seqs: %w", c.id, err)
		}
		seq := latest - int64(len(c.msgs))
		for _, i := range c.msgs {
			seq++
			m := msgs[i]
			stored := storage.Message{
				ConversationID: m.ConversationID,
				Seq:            seq,
				MsgID:          m.MsgID,
				SenderID:       m.SenderID,
				SenderDeviceID: m.SenderDeviceID,
				ClientMsgID:    m.ClientMsgID,
				Content:        nonNil(m.Content),
				CreatedAt:      fromMillis(millis(m.CreatedAt)), // as a later read returns it
			}
			if _, err := insert.ExecContext(ctx, stored.ConversationID, stored.Seq, stored.MsgID, stored.SenderID,
				stored.SenderDeviceID, stored.ClientMsgID, stored.Content, millis(stored.CreatedAt)); err != nil {
				return nil, fmt.Errorf("conversation %q: insert seq %d: %w", c.id, seq, mapErr(err))
			}
			results[i] = storage.AppendResult{Message: stored}
		}
		for _, u := range c.members {
			if _, err := member.ExecContext(ctx, c.id, u); err != nil {
				return nil, fmt.Errorf("conversation %q: membership of %q: %w", c.id, u, mapErr(err))
			}
		}
	}

	for i, j := range dupOf {
		results[i] = storage.AppendResult{Message: results[j].Message, Duplicate: true}
	}
	return results, nil
}

// ListMessages implements storage.Messages. A limit <= 0 returns nothing.
func (s *Store) ListMessages(ctx context.Context, conversationID string, afterSeq, uptoSeq int64, limit int) ([]storage.Message, error) {
	if uptoSeq <= 0 {
		uptoSeq = math.MaxInt64
	}
	msgs, err := s.queryMessages(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
		conversationID, afterSeq, uptoSeq, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages of %q: %w", conversationID, err)
	}
	return msgs, nil
}

// ListMessagesBefore implements storage.Messages. A limit <= 0 returns nothing.
func (s *Store) ListMessagesBefore(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]storage.Message, error) {
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	msgs, err := s.queryMessages(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		conversationID, afterSeq, beforeSeq, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages of %q before %d: %w", conversationID, beforeSeq, err)
	}
	slices.Reverse(msgs) // newest were picked; callers get them ascending
	return msgs, nil
}

func (s *Store) queryMessages(ctx context.Context, query string, args ...any) ([]storage.Message, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var msgs []storage.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}

func scanMessage(row scanner) (storage.Message, error) {
	var m storage.Message
	var created int64
	if err := row.Scan(&m.ConversationID, &m.Seq, &m.MsgID, &m.SenderID, &m.SenderDeviceID,
		&m.ClientMsgID, &m.Content, &created); err != nil {
		return storage.Message{}, err
	}
	m.CreatedAt = fromMillis(created)
	return m, nil
}

// LatestSeq implements storage.Messages.
func (s *Store) LatestSeq(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := s.r.QueryRowContext(ctx, `SELECT latest_seq FROM conversations WHERE id = ?`, conversationID).Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: latest seq of %q: %w", conversationID, err)
	}
	return seq, nil
}

// AdvanceCursors implements storage.Cursors.
func (s *Store) AdvanceCursors(ctx context.Context, cursors []storage.DeviceCursor) error {
	if len(cursors) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO device_cursors (user_id, device_id, conversation_id, delivered_seq)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (user_id, device_id, conversation_id)
			DO UPDATE SET delivered_seq = max(delivered_seq, excluded.delivered_seq)`)
		if err != nil {
			return err
		}
		for _, c := range cursors {
			if _, err := st.ExecContext(ctx, c.UserID, c.DeviceID, c.ConversationID, c.DeliveredSeq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: advance cursors: %w", err)
	}
	return nil
}

// ListConversations implements storage.Cursors.
func (s *Store) ListConversations(ctx context.Context, userID, deviceID string, onlyBehind bool) ([]storage.ConversationState, error) {
	// The user may see up to left_seq of a group they left, else up to the
	// conversation's latest seq.
	rows, err := s.r.QueryContext(ctx, `SELECT m.conversation_id,
			coalesce(m.left_seq, c.latest_seq),
			coalesce(d.delivered_seq, 0),
			m.joined_seq,
			c.updated_at
		FROM memberships m
		JOIN conversations c ON c.id = m.conversation_id
		LEFT JOIN device_cursors d
			ON d.user_id = m.user_id AND d.device_id = ?2 AND d.conversation_id = m.conversation_id
		WHERE m.user_id = ?1
			AND (NOT ?3 OR coalesce(m.left_seq, c.latest_seq) > max(coalesce(d.delivered_seq, 0), m.joined_seq))
		ORDER BY c.updated_at DESC, m.conversation_id`, userID, deviceID, onlyBehind)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conversations of %q: %w", userID, err)
	}
	defer rows.Close()
	var out []storage.ConversationState
	for rows.Next() {
		var cs storage.ConversationState
		var updated int64
		if err := rows.Scan(&cs.ConversationID, &cs.LatestSeq, &cs.DeliveredSeq, &cs.JoinedSeq, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: list conversations of %q: %w", userID, err)
		}
		cs.UpdatedAt = fromMillis(updated)
		out = append(out, cs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list conversations of %q: %w", userID, err)
	}
	return out, nil
}
