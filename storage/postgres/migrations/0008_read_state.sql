-- Read state: per user and conversation, the read cursor, the delivered
-- position (the highest seq any of the user's devices acknowledged), the
-- mute, and when any of them last changed (updated_at, unix ms): what the
-- inbox's unread counts and receipts are made of. The server writes
-- cursors in batches every few hundred milliseconds, never one per
-- message. muted_until is 0 when not muted, the largest BIGINT when muted
-- for ever. The SQLite backend has the same tables (its 0006).

CREATE TABLE IF NOT EXISTS read_state (
    user_id         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    muted_until     BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);

-- Who read a message (read_seq >= seq, a range), and the other user's row
-- of a one-to-one conversation for the inbox's receipts.
CREATE INDEX IF NOT EXISTS read_state_conversation_read ON read_state (conversation_id, read_seq);

-- When each device's last stream ended: Welcome lists what changed since.
CREATE TABLE IF NOT EXISTS device_seen (
    user_id   TEXT   NOT NULL,
    device_id TEXT   NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
