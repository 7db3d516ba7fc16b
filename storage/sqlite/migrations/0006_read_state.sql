-- Read state: per user and conversation, the read cursor, the delivered
-- position (the highest seq any of the user's devices acknowledged), the
-- mute, and when any of them last changed (updated_at, unix ms): what the
-- inbox's unread counts and receipts are made of. The server writes
-- cursors in batches every few hundred milliseconds, never one per
-- message. muted_until is 0 when not muted, the largest INTEGER when muted
-- for ever. The PostgreSQL backend has the same tables (its 0008).

CREATE TABLE read_state (
    user_id         TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    muted_until     INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) STRICT, WITHOUT ROWID;

-- Who read a message (read_seq >= seq, a range), and the other user's row
-- of a one-to-one conversation for the inbox's receipts.
CREATE INDEX read_state_conversation_read ON read_state (conversation_id, read_seq);

-- When each device's last stream ended: Welcome lists what changed since.
CREATE TABLE device_seen (
    user_id   TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT, WITHOUT ROWID;
