package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/starling-im/starling/storage"
)

// dedupKey identifies a message for dedup.
type dedupKey struct{ sender, clientMsgID string }

const messageColumns = `conversation_id, seq, msg_id, sender_id, sender_device_id, client_msg_id, content, created_at`

func scanMessage(row pgx.CollectableRow) (storage.Message, error) {
	var m storage.Message
	var created int64
	err := row.Scan(&m.ConversationID, &m.Seq, &m.MsgID, &m.SenderID, &m.SenderDeviceID, &m.ClientMsgID, &m.Content, &created)
	m.CreatedAt = fromMillis(created)
	return m, err
}

// convBatch is a conversation's new messages in a batch.
type convBatch struct {
	msgs      []int // indexes into the batch, in input order
	updatedAt int64 // the newest CreatedAt, unix ms
}

// lookupSQL finds the stored copies of a batch's (sender, client_msg_id)
// pairs in one query, through the UNIQUE (sender_id, client_msg_id) index.
const lookupSQL = `
	SELECT m.conversation_id, m.seq, m.msg_id, m.sender_id, m.sender_device_id, m.client_msg_id, m.content, m.created_at
	FROM unnest($1::TEXT[], $2::TEXT[]) AS k (sender_id, client_msg_id)
	JOIN messages m ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id`

// appendSQL stores a batch's new messages in one statement. bump adds to
// each conversation's latest_seq the number of its new messages (creating
// the row for a conversation's first message) and returns the new
// latest_seq; a message that is `back` places below the last of its
// conversation's batch gets seq latest_seq - back. The bump row stays
// locked (written) until commit, so concurrent senders to a conversation
// are serialised and seq has no gap and no repeat; a rollback undoes it.
// The last SELECT returns each conversation's latest_seq, its membership
// epoch (read under the same row lock, so no membership change can come
// between it and the commit) and how many messages were inserted, as a
// check.
const appendSQL = `
	WITH bump AS (
		INSERT INTO conversations (id, latest_seq, updated_at)
		SELECT c.id, c.n, c.updated_at
		FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS c (id, n, updated_at)
		ON CONFLICT (id) DO UPDATE
		SET latest_seq = conversations.latest_seq + excluded.latest_seq,
		    updated_at = GREATEST(conversations.updated_at, excluded.updated_at)
		RETURNING id, latest_seq, member_epoch
	), ins AS (
		INSERT INTO messages (` + messageColumns + `)
		SELECT m.conversation_id, b.latest_seq - m.back, m.msg_id, m.sender_id, m.sender_device_id,
		       m.client_msg_id, m.content, m.created_at
		FROM unnest($4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BYTEA[], $11::BIGINT[])
		     AS m (conversation_id, back, msg_id, sender_id, sender_device_id, client_msg_id, content, created_at)
		JOIN bump b ON b.id = m.conversation_id
		RETURNING 1
	)
	SELECT id, latest_seq, member_epoch, (SELECT count(*) FROM ins) FROM bump`

// membersSQL gives the users of one-to-one conversations their membership,
// at joined_seq 0, if they do not have it yet.
const membersSQL = `
	INSERT INTO memberships (conversation_id, user_id, joined_seq)
	SELECT p.conversation_id, p.user_id, 0
	FROM unnest($1::TEXT[], $2::TEXT[]) AS p (conversation_id, user_id)
	ON CONFLICT (user_id, conversation_id) DO NOTHING`

// AppendMessages stores msgs in one transaction; see storage.Messages.
// Round trips: BEGIN, the dedup lookup, one batch with the insert and the
// memberships, COMMIT — however many messages and conversations.
func (s *Store) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	for i, m := range msgs {
		if m.ConversationID == "" || m.SenderID == "" || m.ClientMsgID == "" {
			return nil, fmt.Errorf("postgres: append messages: message %d: conversation, sender and client_msg_id are required", i)
		}
	}
	if len(msgs) == 0 {
		return []storage.AppendResult{}, nil
	}
	var results []storage.AppendResult
	var err error
	if s.cockroach {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			results, err = appendTx(ctx, tx, msgs, true, nil) // set afresh on every attempt
			return err
		})
	} else {
		results, err = s.appendPostgres(ctx, msgs)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: append messages: %w", mapError(err))
	}
	return results, nil
}

// postgresBegin begins a write transaction as postgresTx does, one
// statement each, to be queued at the head of an append's first batch.
var postgresBegin = []string{"BEGIN ISOLATION LEVEL SERIALIZABLE", "SET LOCAL enable_seqscan = off"}

// appendPostgres is AppendMessages on PostgreSQL, in two round trips
// instead of four: the BEGIN rides in the batch that inserts, and the first
// attempt looks no stored copies up, since resends are rare; the UNIQUE
// (sender_id, client_msg_id) index refuses a resend, which rolls the
// attempt back (no seq is used up), and the attempts after a failure look
// stored copies up first. Retries and the classification of errors are
// inTx's.
func (s *Store) appendPostgres(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	s.transactions.Add(1)
	var results []storage.AppendResult
	lookup := false
	err := s.retryPostgres(ctx, func(ctx context.Context) error {
		r, err := s.appendAttempt(ctx, msgs, lookup)
		if err != nil {
			lookup = true
			return err
		}
		results = r
		return nil
	})
	return results, mapError(err)
}

// appendAttempt is one whole append transaction on one connection.
func (s *Store) appendAttempt(ctx context.Context, msgs []storage.NewMessage, lookup bool) ([]storage.AppendResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	// Release drops a connection left inside a transaction (a ROLLBACK
	// that failed) or broken.
	defer conn.Release()
	results, err := appendTx(ctx, conn, msgs, lookup, postgresBegin)
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, "ROLLBACK") // on failure Release drops the connection
		}
		return nil, retryableDeadlock(err)
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err == nil && tag.String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback
	}
	if err := s.commitErr(err); err != nil {
		return nil, err
	}
	return results, nil
}

// batcher sends batches: a pgx.Tx, or a connection whose transaction the
// first batch begins.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// queueAll queues statements without arguments or results.
func queueAll(b *pgx.Batch, stmts []string) {
	for _, q := range stmts {
		b.Queue(q)
	}
}

// appendTx is one attempt of AppendMessages. begin is queued at the head
// of its first batch. Without lookup, no stored copies are looked for: a
// stored (sender, client_msg_id) fails the insert.
func appendTx(ctx context.Context, tx batcher, msgs []storage.NewMessage, lookup bool, begin []string) ([]storage.AppendResult, error) {
	// The first message of the batch with each key; later ones with the same
	// key are duplicates of it.
	first := make(map[dedupKey]int, len(msgs))
	senders := make([]string, 0, len(msgs))
	clientIDs := make([]string, 0, len(msgs))
	for i, m := range msgs {
		k := dedupKey{m.SenderID, m.ClientMsgID}
		if _, ok := first[k]; !ok {
			first[k] = i
			senders = append(senders, m.SenderID)
			clientIDs = append(clientIDs, m.ClientMsgID)
		}
	}

	existing := make(map[dedupKey]storage.Message)
	if lookup {
		b := &pgx.Batch{}
		queueAll(b, begin)
		begin = nil
		b.Queue(lookupSQL, senders, clientIDs).Query(func(rows pgx.Rows) error {
			stored, err := pgx.CollectRows(rows, scanMessage)
			for _, m := range stored {
				existing[dedupKey{m.SenderID, m.ClientMsgID}] = m
			}
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
	}

	// The new messages, grouped by conversation in input order.
	byConv := map[string]*convBatch{}
	for i, m := range msgs {
		k := dedupKey{m.SenderID, m.ClientMsgID}
		if _, dup := existing[k]; dup || first[k] != i {
			continue
		}
		c := byConv[m.ConversationID]
		if c == nil {
			c = &convBatch{}
			byConv[m.ConversationID] = c
		}
		c.msgs = append(c.msgs, i)
		c.updatedAt = max(c.updatedAt, toMillis(m.CreatedAt))
	}

	results := make([]storage.AppendResult, len(msgs))
	if len(byConv) > 0 {
		latest, epochs, err := insertNew(ctx, tx, msgs, byConv, begin)
		if err != nil {
			return nil, err
		}
		for conv, c := range byConv {
			for j, i := range c.msgs {
				m := msgs[i]
				results[i].Message = storage.Message{
					ConversationID: conv,
					Seq:            latest[conv] - int64(len(c.msgs)-1-j),
					MsgID:          m.MsgID,
					SenderID:       m.SenderID,
					SenderDeviceID: m.SenderDeviceID,
					ClientMsgID:    m.ClientMsgID,
					Content:        m.Content,
					CreatedAt:      fromMillis(toMillis(m.CreatedAt)), // as stored
				}
				// One-to-one conversations' epoch stays 0: nothing bumps it.
				results[i].MemberEpoch = epochs[conv]
			}
		}
	}
	for i, m := range msgs {
		k := dedupKey{m.SenderID, m.ClientMsgID}
		if old, ok := existing[k]; ok {
			results[i] = storage.AppendResult{Message: old, Duplicate: true}
		} else if f := first[k]; f != i {
			results[i] = storage.AppendResult{Message: results[f].Message, Duplicate: true}
		}
	}
	return results, nil
}

// insertNew stores the new messages, grouped by conversation, and their
// one-to-one memberships, in one round trip. It returns each
// conversation's latest_seq after the insert, and its membership epoch.
func insertNew(ctx context.Context, tx batcher, msgs []storage.NewMessage, byConv map[string]*convBatch, begin []string) (latest, epochs map[string]int64, err error) {
	// Conversations in key order, so that concurrent batches lock their
	// rows in the same order and cannot deadlock.
	convs := slices.Sorted(maps.Keys(byConv))
	var (
		counts, updated                    = make([]int64, len(convs)), make([]int64, len(convs))
		mConv, mSender, mDevice, mClientID []string
		mBack, mMsgID, mCreated            []int64
		mContent                           [][]byte
		pairs                              = map[[2]string]bool{} // (user, conversation) memberships
	)
	total := 0
	for ci, conv := range convs {
		c := byConv[conv]
		counts[ci], updated[ci] = int64(len(c.msgs)), c.updatedAt
		for j, i := range c.msgs {
			m := msgs[i]
			mConv = append(mConv, conv)
			mBack = append(mBack, int64(len(c.msgs)-1-j))
			mMsgID = append(mMsgID, m.MsgID)
			mSender = append(mSender, m.SenderID)
			mDevice = append(mDevice, m.SenderDeviceID)
			mClientID = append(mClientID, m.ClientMsgID)
			mContent = append(mContent, nonNil(m.Content))
			mCreated = append(mCreated, toMillis(m.CreatedAt))
			for _, u := range m.Members {
				pairs[[2]string{u, conv}] = true
			}
		}
		total += len(c.msgs)
	}

	latest = make(map[string]int64, len(convs))
	epochs = make(map[string]int64, len(convs))
	var inserted int64
	b := &pgx.Batch{}
	queueAll(b, begin)
	b.Queue(appendSQL, convs, counts, updated,
		mConv, mBack, mMsgID, mSender, mDevice, mClientID, mContent, mCreated,
	).Query(func(rows pgx.Rows) error {
		var id string
		var seq, epoch int64
		_, err := pgx.ForEachRow(rows, []any{&id, &seq, &epoch, &inserted}, func() error {
			latest[id], epochs[id] = seq, epoch
			return nil
		})
		return err
	})
	if len(pairs) > 0 {
		// In primary key order, for the same reason as convs.
		keys := slices.SortedFunc(maps.Keys(pairs), func(a, b [2]string) int {
			return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
		})
		users, pconvs := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			users[i], pconvs[i] = k[0], k[1]
		}
		b.Queue(membersSQL, pconvs, users)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if sqlState(err) == codeUniqueViolation {
			// A concurrent transaction stored the same (sender,
			// client_msg_id) after our lookup. Retrying finds it and returns
			// it as the duplicate; this attempt rolls back, so no seq is
			// used up. (PostgreSQL usually reports this as 40001 already.)
			return nil, nil, retryable{fmt.Errorf("insert messages: %w", err)}
		}
		return nil, nil, fmt.Errorf("insert messages: %w", err)
	}
	if inserted != int64(total) || len(latest) != len(convs) {
		return nil, nil, fmt.Errorf("insert messages: stored %d messages in %d conversations, want %d in %d",
			inserted, len(latest), total, len(convs))
	}
	return latest, epochs, nil
}

// ListMessages returns the conversation's messages with
// afterSeq < seq <= uptoSeq, ascending, at most limit of them. The bound
// is taken as it is: storage.OpenSeq reads to the end, and 0 (a user who
// left before the first message) reads nothing.
func (s *Store) ListMessages(ctx context.Context, conversationID string, afterSeq, uptoSeq int64, limit int) ([]storage.Message, error) {
	if limit <= 0 {
		return []storage.Message{}, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND seq > $2::BIGINT AND seq <= $3::BIGINT
		ORDER BY seq
		LIMIT $4`,
		conversationID, afterSeq, uptoSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages of %q: %w", conversationID, mapError(err))
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages of %q: %w", conversationID, mapError(err))
	}
	return msgs, nil
}

// ListMessagesBefore returns the newest messages with
// afterSeq < seq < beforeSeq (storage.OpenSeq: no upper bound), at most
// limit of them, ascending.
func (s *Store) ListMessagesBefore(ctx context.Context, conversationID string, afterSeq, beforeSeq int64, limit int) ([]storage.Message, error) {
	if limit <= 0 {
		return []storage.Message{}, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+` FROM messages
		WHERE conversation_id = $1 AND seq > $2::BIGINT AND seq < $3::BIGINT
		ORDER BY seq DESC
		LIMIT $4`,
		conversationID, afterSeq, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages of %q: %w", conversationID, mapError(err))
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages of %q: %w", conversationID, mapError(err))
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// LatestSeq returns the conversation's newest seq, 0 if it has none.
func (s *Store) LatestSeq(ctx context.Context, conversationID string) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT latest_seq FROM conversations WHERE id = $1`, conversationID).Scan(&seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("postgres: latest seq of %q: %w", conversationID, mapError(err))
	}
	return seq, nil
}
