-- Membership periods. The SQLite backend's 0002_membership_periods.sql
-- has the same tables, columns and keys; see it for the model. In short:
--
--   * memberships keeps each user's CURRENT (last) period (left_seq IS
--     NULL while active), so the hot reads still find one row per (user,
--     conversation).
--   * membership_history keeps the EARLIER, ended periods, moved there by
--     AddMembers when a user who left is added again, in the transaction
--     that starts the new period. Periods that read nothing (joined_seq =
--     left_seq) are not kept, so a user's stored periods in a
--     conversation never overlap and joined_seq tells them apart.
--
-- The key (user_id, conversation_id, joined_seq) is no single
-- ever-increasing value (see 0001): history rows spread over users like
-- memberships do. The index on (conversation_id, left_seq) serves
-- MembersAt, which looks for periods with left_seq >= a recent seq: the few
-- that ended lately, not a conversation's whole past.
--
-- Only new objects here, like 0001. The conversations table's new column
-- is 0003, on its own: CockroachDB advises one schema change of an
-- existing table per transaction (its schema changes run as jobs, and are
-- not fully transactional).

CREATE TABLE IF NOT EXISTS membership_history (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id),
    user_id         TEXT   NOT NULL REFERENCES users (id),
    joined_seq      BIGINT NOT NULL,
    left_seq        BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id, joined_seq),
    CHECK (joined_seq < left_seq)
);

CREATE INDEX IF NOT EXISTS membership_history_conversation_left ON membership_history (conversation_id, left_seq);
