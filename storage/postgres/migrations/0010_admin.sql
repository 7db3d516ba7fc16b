-- Backend services (AdminService): disabled accounts, and the push tokens
-- devices register so that a backend can wake them while offline. The
-- SQLite backend has the same tables (its 0008).

CREATE TABLE IF NOT EXISTS disabled_users (
    user_id     TEXT   NOT NULL PRIMARY KEY REFERENCES users (id),
    disabled_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS push_tokens (
    user_id    TEXT   NOT NULL REFERENCES users (id),
    device_id  TEXT   NOT NULL,
    platform   TEXT   NOT NULL,
    token      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
