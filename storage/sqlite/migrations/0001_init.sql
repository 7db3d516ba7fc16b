-- Starling's schema. The PostgreSQL/CockroachDB backend keeps the same
-- tables, columns and keys, so the two stay easy to compare. Times are unix
-- milliseconds (UTC) in INTEGER columns.
--
-- STRICT makes SQLite check column types like the other databases do.
-- Small rows keyed by text go WITHOUT ROWID, so the primary key is the
-- table's only b-tree; messages keep a rowid because their contents can be
-- large and new rows then go to the end of the table.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    device_id  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0 -- boolean
) STRICT, WITHOUT ROWID;

-- For "every session of this user" (revoke all, list devices).
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE groups (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    owner_id   TEXT    NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- One row per conversation: the seq counter (latest_seq is the newest seq
-- stored) and the time of the newest message.
CREATE TABLE conversations (
    id         TEXT    NOT NULL PRIMARY KEY,
    latest_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- left_seq IS NULL while the membership is active.
CREATE TABLE memberships (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    user_id         TEXT    NOT NULL REFERENCES users (id),
    joined_seq      INTEGER NOT NULL,
    left_seq        INTEGER,
    PRIMARY KEY (user_id, conversation_id)
) STRICT, WITHOUT ROWID;

-- The members of a conversation (the primary key serves "my conversations").
CREATE INDEX memberships_conversation_user ON memberships (conversation_id, user_id);

CREATE TABLE messages (
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    seq              INTEGER NOT NULL,
    msg_id           INTEGER NOT NULL,
    sender_id        TEXT    NOT NULL,
    sender_device_id TEXT    NOT NULL,
    client_msg_id    TEXT    NOT NULL,
    content          BLOB    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id) -- dedup of resends
) STRICT;

CREATE TABLE device_cursors (
    user_id         TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    delivered_seq   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
) STRICT, WITHOUT ROWID;
