package sqlite

import (
	"context"
	"database/sql"
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

// appendOnce runs one append transaction. The single write connection is
// waited for under ctx (a caller's deadline ends the wait in the queue);
// the transaction itself runs under ctx without its cancellation: the
// driver would start a goroutine per statement to watch ctx, which costs
// more CPU than the statements of a small batch, while a transaction that
// holds the writer is short and a lock wait ends at busyTimeout anyway.
func (s *Store) appendOnce(ctx context.Context, msgs []storage.NewMessage, lookup bool) ([]storage.AppendResult, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx = context.WithoutCancel(ctx)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	results, err := s.appendTx(ctx, tx, msgs, lookup)
	if err != nil {
		tx.Rollback() //nolint:errcheck // the append's error is the one to report
		return nil, err
	}
	if err := tx.Commit(); err != nil {
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
func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, msgs []storage.NewMessage, lookup bool) ([]storage.AppendResult, error) {
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
		if stored, err = s.findStored(ctx, tx, msgs, fresh); err != nil {
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

	latest, epochs, err := s.reserveSeqs(ctx, tx, msgs, convs)
	if err != nil {
		return nil, err
	}
	member := tx.StmtContext(ctx, s.insertMember)
	var rows []storage.Message
	for _, c := range convs {
		seq := latest[c.id] - int64(len(c.msgs))
		if seq == 0 {
			// The conversation is new: its members get their memberships.
			// Later batches skip this, since they were made with it.
			for _, u := range c.members {
				if _, err := member.ExecContext(ctx, c.id, u); err != nil {
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
	if err := s.insertMessages(ctx, tx, rows); err != nil {
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

// smallBatch is the largest row count whose statements are prepared once at
// Open: at low load batches are small and their shapes repeat, and
// preparing costs about as much as running. Larger ones are prepared per
// use (their parse cost is spread over many rows).
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

// batchStmt returns the kind's statement for n rows, bound to tx: one
// prepared at Open for small n, else prepared now for this transaction.
func (s *Store) batchStmt(ctx context.Context, tx *sql.Tx, kind, n int) (*sql.Stmt, error) {
	if n <= smallBatch {
		return tx.StmtContext(ctx, s.small[kind][n]), nil
	}
	return tx.PrepareContext(ctx, batchSQL(kind, n))
}

// findStored looks up, in one statement per chunk, which of msgs[idx] were
// stored before under the same (sender, client_msg_id).
func (s *Store) findStored(ctx context.Context, tx *sql.Tx, msgs []storage.NewMessage, idx []int) (map[struct{ sender, clientMsgID string }]storage.Message, error) {
	found := make(map[struct{ sender, clientMsgID string }]storage.Message)
	for len(idx) > 0 {
		n := min(len(idx), chunk)
		args := make([]any, 0, 2*n)
		for _, i := range idx[:n] {
			args = append(args, msgs[i].SenderID, msgs[i].ClientMsgID)
		}
		st, err := s.batchStmt(ctx, tx, stmtDedup, n)
		if err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("dedup lookup: %w", err)
			}
			found[struct{ sender, clientMsgID string }{m.SenderID, m.ClientMsgID}] = m
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		idx = idx[n:]
	}
	return found, nil
}

// reserveSeqs bumps every conversation of the batch by its count of new
// messages, creating the ones that are new, in one statement per chunk, and
// returns each one's latest seq: its messages get latest-n+1 … latest.
// updated_at never goes back, even if nodes' clocks disagree. It also
// returns each one's membership epoch, read by the same statement: the
// transaction holds the single writer, so no membership change can come
// between it and the commit.
func (s *Store) reserveSeqs(ctx context.Context, tx *sql.Tx, msgs []storage.NewMessage, convs []*convBatch) (latest, epochs map[string]int64, err error) {
	latest = make(map[string]int64, len(convs))
	epochs = make(map[string]int64, len(convs))
	for len(convs) > 0 {
		n := min(len(convs), chunk)
		args := make([]any, 0, 3*n)
		for _, c := range convs[:n] {
			last := msgs[c.msgs[len(c.msgs)-1]]
			args = append(args, c.id, len(c.msgs), millis(last.CreatedAt))
		}
		st, err := s.batchStmt(ctx, tx, stmtReserve, n)
		if err != nil {
			return nil, nil, fmt.Errorf("reserve seqs: %w", err)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return nil, nil, fmt.Errorf("reserve seqs: %w", err)
		}
		for rows.Next() {
			var id string
			var seq, epoch int64
			if err := rows.Scan(&id, &seq, &epoch); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("reserve seqs: %w", err)
			}
			latest[id], epochs[id] = seq, epoch
		}
		if err := rows.Close(); err != nil {
			return nil, nil, fmt.Errorf("reserve seqs: %w", err)
		}
		convs = convs[n:]
	}
	return latest, epochs, nil
}

// insertMessages inserts rows with one multi-row INSERT per chunk.
func (s *Store) insertMessages(ctx context.Context, tx *sql.Tx, rows []storage.Message) error {
	for len(rows) > 0 {
		n := min(len(rows), chunk)
		args := make([]any, 0, 8*n)
		for _, m := range rows[:n] {
			args = append(args, m.ConversationID, m.Seq, m.MsgID, m.SenderID, m.SenderDeviceID, m.ClientMsgID, m.Content, millis(m.CreatedAt))
		}
		st, err := s.batchStmt(ctx, tx, stmtInsert, n)
		if err != nil {
			return fmt.Errorf("insert %d messages: %w", n, err)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
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
