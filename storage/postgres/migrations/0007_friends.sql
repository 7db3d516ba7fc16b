-- Friends, friend requests and blocks (issue 10). The SQLite backend has
-- the same tables, columns and keys (its 0005). Events about them are
-- messages of the users' event streams ("evt:<user id>"), in the messages
-- table, written in the same transaction as the change.

-- A friendship is two rows, one per side, so "my friends" is a range of
-- the primary key.
CREATE TABLE IF NOT EXISTS friends (
    user_id    TEXT   NOT NULL REFERENCES users (id),
    friend_id  TEXT   NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

-- A pending request; accepting, declining or withdrawing deletes it.
CREATE TABLE IF NOT EXISTS friend_requests (
    from_id    TEXT   NOT NULL REFERENCES users (id),
    to_id      TEXT   NOT NULL REFERENCES users (id),
    message    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
);

-- Incoming and outgoing requests, newest first.
CREATE INDEX IF NOT EXISTS friend_requests_to_created ON friend_requests (to_id, created_at, from_id);
CREATE INDEX IF NOT EXISTS friend_requests_from_created ON friend_requests (from_id, created_at, to_id);

-- blocker_id blocks blocked_id. The send path reads one pair at a time
-- (both directions are point reads of the primary key).
CREATE TABLE IF NOT EXISTS blocks (
    blocker_id TEXT   NOT NULL REFERENCES users (id),
    blocked_id TEXT   NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
