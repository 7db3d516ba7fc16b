package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// Optimistic first: a resend is rare, so the batch is inserted without
	// looking its (sender, client_msg_id) pairs up first, and the UNIQUE
	// index refuses a resend. Then the transaction is rolled back (nothing
	// was written: no fsync, no seq used up) and done again with the lookup,
	// which tells resends from new messages.
	results, err := s.appendOnce(ctx, msgs, false)
	if errors.Is(err, errMaybeResend) {
		results, err = s.appendOnce(ctx, msgs, true)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: append messages: %w", mapErr(err))
	}
	return results, nil
}

// errMaybeResend ends an optimistic append that met a stored
// (sender, client_msg_id) (or another constraint: the append with the
// lookup reports that one).
var errMaybeResend = errors.New("a message may be a resend")

// appendOnce runs one append transaction (see rawtx.go). The single
// write connection is waited for under ctx: a caller's deadline ends the
// wait in the queue; the transaction that holds the writer is short, and a
// lock wait ends at busyTimeout.
func (s *Store) appendOnce(ctx context.Context, msgs []storage.NewMessage, lookup bool) ([]storage.AppendResult, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var results []storage.AppendResult
	err = conn.Raw(func(dc any) error {
		return dc.(*writerConn).inTx(func(t *rawTx) (err error) {
			results, err = appendTx(t, msgs, lookup)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// convBatch is the new (not duplicate) messages of one conversation in a batch.
type convBatch struct {
	id      string
	msgs    []int // indexes into the batch, in input order
	members []string
}

// appendTx appends msgs in tx. Without lookup, no stored copies are looked
// for: a stored (sender, client_msg_id) fails the insert with
// errMaybeResend.
func appendTx(tx *rawTx, msgs []storage.NewMessage, lookup bool) ([]storage.AppendResult, error) {
	results := make([]storage.AppendResult, len(msgs))

	// Dedup first, so duplicates consume no seq. A resend within the batch
	// points at its first copy (dupOf), which is filled in below.
	type key struct{ sender, clientMsgID string }
	first := make(map[key]int, len(msgs))
	dupOf := make(map[int]int)
	var fresh []int
	for i, m := range msgs {
		k := key{m.SenderID, m.ClientMsgID}
		if j, ok := first[k]; ok {
			dupOf[i] = j
			continue
		}
		first[k] = i
		fresh = append(fresh, i)
	}
	var stored map[struct{ sender, clientMsgID string }]storage.Message
	if lookup {
		var err error
		if stored, err = findStored(tx, msgs, fresh); err != nil {
			return nil, err
		}
	}
	var convs []*convBatch // in order of first appearance
	byID := make(map[string]*convBatch)
	for _, i := range fresh {
		m := msgs[i]
		if prev, ok := stored[key{m.SenderID, m.ClientMsgID}]; ok {
			results[i] = storage.AppendResult{Message: prev, Duplicate: true}
			continue
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
	if len(convs) == 0 {
		for i, j := range dupOf {
			results[i] = storage.AppendResult{Message: results[j].Message, Duplicate: true}
		}
		return results, nil
	}

	latest, epochs, err := reserveSeqs(tx, msgs, convs)
	if err != nil {
		return nil, err
	}
	var rows []storage.Message
	for _, c := range convs {
		seq := latest[c.id] - int64(len(c.msgs))
		if seq == 0 {
			// The conversation is new: its members get their memberships.
			// Later batches skip this, since they were made with it.
			for _, u := range c.members {
				if err := tx.exec(rawMember, c.id, u); err != nil {
					return nil, fmt.Errorf("conversation %q: membership of %q: %w", c.id, u, mapErr(err))
				}
			}
		}
		for _, i := range c.msgs {
			seq++
			m := msgs[i]
			msg := storage.Message{
				ConversationID: m.ConversationID,
				Seq:            seq,
				MsgID:          m.MsgID,
				SenderID:       m.SenderID,
				SenderDeviceID: m.SenderDeviceID,
				ClientMsgID:    m.ClientMsgID,
				Content:        nonNil(m.Content),
				CreatedAt:      fromMillis(millis(m.CreatedAt)), // as a later read returns it
			}
			rows = append(rows, msg)
			// One-to-one conversations' epoch stays 0: nothing bumps it.
			results[i] = storage.AppendResult{Message: msg, MemberEpoch: epochs[c.id]}
		}
	}
	if err := insertMessages(tx, rows); err != nil {
		if !lookup && errors.Is(mapErr(err), storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("%w: %w", errMaybeResend, err)
		}
		return nil, err
	}
	for i, j := range dupOf {
		results[i] = storage.AppendResult{Message: results[j].Message, Duplicate: true}
	}
	return results, nil
}

// chunk bounds the rows of one multi-row statement, well under SQLite's
// limit on bound parameters (32766).
const chunk = 256

// The multi-row statements of the send path, by kind.
const (
	stmtDedup = iota
	stmtReserve
	stmtInsert
	stmtKinds
)

// smallBatch is the largest row count whose statements are prepared once
// per write connection: at low load batches are small and their shapes
// repeat, and preparing costs about as much as running. Larger ones are
// prepared per use (their parse cost is spread over many rows).
const smallBatch = 16

// batchSQL returns the statement of a kind for n rows.
func batchSQL(kind, n int) string {
	var row, head, tail string
	switch kind {
	case stmtDedup:
		head, row, tail = `SELECT `+messageColumns+` FROM messages WHERE (sender_id, client_msg_id) IN (VALUES `, "(?, ?)", ")"
	case stmtReserve:
		head, row = `INSERT INTO conversations (id, latest_seq, updated_at) VALUES `, "(?, ?, ?)"
		tail = ` ON CONFLICT (id) DO UPDATE SET
			latest_seq = latest_seq + excluded.latest_seq,
			updated_at = max(updated_at, excluded.updated_at)
			RETURNING id, latest_seq, member_epoch`
	case stmtInsert:
		head, row = `INSERT INTO messages (`+messageColumns+`) VALUES `, "(?, ?, ?, ?, ?, ?, ?, ?)"
	}
	var q strings.Builder
	q.WriteString(head)
	for k := range n {
		if k > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
	}
	q.WriteString(tail)
	return q.String()
}

// findStored looks up, in one statement per chunk, which of msgs[idx] were
// stored before under the same (sender, client_msg_id).
func findStored(tx *rawTx, msgs []storage.NewMessage, idx []int) (map[struct{ sender, clientMsgID string }]storage.Message, error) {
	found := make(map[struct{ sender, clientMsgID string }]storage.Message)
	for len(idx) > 0 {
		n := min(len(idx), chunk)
		args := make([]any, 0, 2*n)
		for _, i := range idx[:n] {
			args = append(args, msgs[i].SenderID, msgs[i].ClientMsgID)
		}
		err := tx.batch(stmtDedup, n, args, func(v []driver.Value) error {
			m, err := messageOf(v)
			found[struct{ sender, clientMsgID string }{m.SenderID, m.ClientMsgID}] = m
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		idx = idx[n:]
	}
	return found, nil
}

// messageOf is a row of messageColumns as the driver returns it.
func messageOf(v []driver.Value) (storage.Message, error) {
	var m storage.Message
	var ok [8]bool
	m.ConversationID, ok[0] = v[0].(string)
	m.Seq, ok[1] = v[1].(int64)
	m.MsgID, ok[2] = v[2].(int64)
	m.SenderID, ok[3] = v[3].(string)
	m.SenderDeviceID, ok[4] = v[4].(string)
	m.ClientMsgID, ok[5] = v[5].(string)
	var content []byte
	content, ok[6] = v[6].([]byte)
	m.Content = append([]byte{}, content...) // the driver may reuse its buffer
	var created int64
	created, ok[7] = v[7].(int64)
	m.CreatedAt = fromMillis(created)
	for i, good := range ok {
		if !good {
			return storage.Message{}, fmt.Errorf("column %d: unexpected %T", i, v[i])
		}
	}
	return m, nil
}

// reserveSeqs bumps every conversation of the batch by its count of new
// messages, creating the ones that are new, in one statement per chunk, and
// returns each one's latest seq: its messages get latest-n+1 … latest.
// updated_at never goes back, even if nodes' clocks disagree. It also
// returns each one's membership epoch, read by the same statement: the
// transaction holds the single writer, so no membership change can come
// between it and the commit.
func reserveSeqs(tx *rawTx, msgs []storage.NewMessage, convs []*convBatch) (latest, epochs map[string]int64, err error) {
	latest = make(map[string]int64, len(convs))
	epochs = make(map[string]int64, len(convs))
	for len(convs) > 0 {
		n := min(len(convs), chunk)
		args := make([]any, 0, 3*n)
		for _, c := range convs[:n] {
			last := msgs[c.msgs[len(c.msgs)-1]]
			args = append(args, c.id, len(c.msgs), millis(last.CreatedAt))
		}
		err := tx.batch(stmtReserve, n, args, func(v []driver.Value) error {
			id, ok1 := v[0].(string)
			seq, ok2 := v[1].(int64)
			epoch, ok3 := v[2].(int64)
			if !ok1 || !ok2 || !ok3 {
				return fmt.Errorf("unexpected row %T %T %T", v[0], v[1], v[2])
			}
			latest[id], epochs[id] = seq, epoch
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("reserve seqs: %w", err)
		}
		convs = convs[n:]
	}
	return latest, epochs, nil
}

// insertMessages inserts rows with one multi-row INSERT per chunk.
func insertMessages(tx *rawTx, rows []storage.Message) error {
	for len(rows) > 0 {
		n := min(len(rows), chunk)
		args := make([]any, 0, 8*n)
		for _, m := range rows[:n] {
			args = append(args, m.ConversationID, m.Seq, m.MsgID, m.SenderID, m.SenderDeviceID, m.ClientMsgID, m.Content, millis(m.CreatedAt))
		}
		if err := tx.batch(stmtInsert, n, args, nil); err != nil {
			return fmt.Errorf("insert %d messages: %w", n, mapErr(err))
		}
		rows = rows[n:]
	}
	return nil
}

// ListMessages implements storage.Messages. A limit <= 0 returns nothing.
// The bound is taken as it is: storage.OpenSeq reads to the end, and 0 (a
// user who left before the first message) reads nothing.
func (s *Store) ListMessages(ctx context.Context, conversationID string, afterSeq, uptoSeq int64, limit int) ([]storage.Message, error) {
	msgs, err := s.queryMessages(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
		conversationID, afterSeq, uptoSeq, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages of %q: %w", conversationID, mapErr(err))
	}
	return msgs, nil
}

// ListMessagesBefore implements storage.Messages. A limit <= 0 returns
// nothing; beforeSeq storage.OpenSeq means no upper bound.
func (s *Store) ListMessagesBefore(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]storage.Message, error) {
	msgs, err := s.queryMessages(ctx, `SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		conversationID, afterSeq, beforeSeq, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages of %q before %d: %w", conversationID, beforeSeq, mapErr(err))
	}
	slices.Reverse(msgs) // newest were picked; callers get them ascending
	return msgs, nil
}

func (s *Store) queryMessages(ctx context.Context, query string, args ...any) ([]storage.Message, error) {
	rows, err := s.reads.QueryContext(ctx, query, args...)
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
	err := s.reads.QueryRowContext(ctx, `SELECT latest_seq FROM conversations WHERE id = ?`, conversationID).Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: latest seq of %q: %w", conversationID, mapErr(err))
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
		return fmt.Errorf("sqlite: advance cursors: %w", mapErr(err))
	}
	return nil
}

// ListConversations implements storage.Cursors.
func (s *Store) ListConversations(ctx context.Context, userID, deviceID string, onlyBehind bool) ([]storage.ConversationState, error) {
	out, err := s.listConversations(ctx, userID, deviceID, onlyBehind)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conversations of %q: %w", userID, mapErr(err))
	}
	return out, nil
}

// conversationsSQL lists a user's conversations from their current
// periods. The user may see up to the current period's left_seq once they
// left, else up to the conversation's latest seq; JoinedSeq is the first
// period's, from membership_history when there are earlier periods (its
// primary key finds the smallest joined_seq at once).
const conversationsSQL = `SELECT m.conversation_id,
		CASE WHEN m.left_seq IS NULL THEN c.latest_seq ELSE min(m.left_seq, c.latest_seq) END,
		coalesce(d.delivered_seq, 0),
		coalesce((SELECT min(h.joined_seq) FROM membership_history h
			WHERE h.user_id = m.user_id AND h.conversation_id = m.conversation_id), m.joined_seq),
		c.updated_at
	FROM memberships m
	JOIN conversations c ON c.id = m.conversation_id
	LEFT JOIN device_cursors d
		ON d.user_id = m.user_id AND d.device_id = ?2 AND d.conversation_id = m.conversation_id
	WHERE m.user_id = ?1
	ORDER BY c.updated_at DESC, m.conversation_id`

func (s *Store) listConversations(ctx context.Context, userID, deviceID string, onlyBehind bool) ([]storage.ConversationState, error) {
	rows, err := s.reads.QueryContext(ctx, conversationsSQL, userID, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.ConversationState
	for rows.Next() {
		var cs storage.ConversationState
		var updated int64
		if err := rows.Scan(&cs.ConversationID, &cs.LatestSeq, &cs.DeliveredSeq, &cs.JoinedSeq, &updated); err != nil {
			return nil, err
		}
		cs.UpdatedAt = fromMillis(updated)
		if !onlyBehind || cs.LatestSeq > max(cs.DeliveredSeq, cs.JoinedSeq) {
			out = append(out, cs)
		}
	}
	return out, rows.Err()
}
