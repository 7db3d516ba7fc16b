-- Backend services (AdminService): disabled accounts, and the push tokens
-- devices register so that a backend can wake them while offline. The
-- PostgreSQL backend has the same tables (its 0010).

CREATE TABLE disabled_users (
    user_id     TEXT    NOT NULL PRIMARY KEY REFERENCES users (id),
    disabled_at INTEGER NOT NULL
) STRICT;

CREATE TABLE push_tokens (
    user_id    TEXT    NOT NULL REFERENCES users (id),
    device_id  TEXT    NOT NULL,
    platform   TEXT    NOT NULL,
    token      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT;
