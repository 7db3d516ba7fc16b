-- Starling's schema for CockroachDB and PostgreSQL. It mirrors the SQLite
-- backend's (same tables, columns and keys) and stays in the SQL the two
-- servers share: BIGINT spelt out (INT is 64-bit on CockroachDB but 32-bit
-- on PostgreSQL), no SERIAL or sequences, no UPSERT. Times are unix
-- milliseconds (UTC) in BIGINT columns, like SQLite's, so both backends
-- return the same values.
--
-- No primary key is a single ever-increasing value: on CockroachDB such a
-- key sends every insert to the same range. Messages are keyed by
-- (conversation_id, seq), which spreads writes over conversations.
--
-- IF NOT EXISTS everywhere: the runner applies this file once, but a
-- half-created schema from a crashed start must not stop the next one.

CREATE TABLE IF NOT EXISTS users (
    id            TEXT   NOT NULL PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    display_name  TEXT   NOT NULL,
    password_hash BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    device_id  TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT false
);

-- For "every session of this user" (revoke all, list devices).
CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions (user_id);

CREATE TABLE IF NOT EXISTS groups (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    owner_id   TEXT   NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);

-- One row per conversation: the seq counter (latest_seq is the newest seq
-- stored) and the time of the newest message. Bumping latest_seq in the
-- transaction that inserts the messages is what makes seq gapless.
CREATE TABLE IF NOT EXISTS conversations (
    id         TEXT   NOT NULL PRIMARY KEY,
    latest_seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- left_seq IS NULL while the membership is active.
CREATE TABLE IF NOT EXISTS memberships (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id),
    user_id         TEXT   NOT NULL REFERENCES users (id),
    joined_seq      BIGINT NOT NULL,
    left_seq        BIGINT,
    PRIMARY KEY (user_id, conversation_id)
);

-- The members of a conversation (the primary key serves "my conversations").
CREATE INDEX IF NOT EXISTS memberships_conversation_user ON memberships (conversation_id, user_id);

CREATE TABLE IF NOT EXISTS messages (
    conversation_id  TEXT   NOT NULL REFERENCES conversations (id),
    seq              BIGINT NOT NULL,
    msg_id           BIGINT NOT NULL,
    sender_id        TEXT   NOT NULL,
    sender_device_id TEXT   NOT NULL,
    client_msg_id    TEXT   NOT NULL,
    content          BYTEA  NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id) -- dedup of resends
);

CREATE TABLE IF NOT EXISTS device_cursors (
    user_id         TEXT   NOT NULL,
    device_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    delivered_seq   BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
);
