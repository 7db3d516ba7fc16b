-- Session collection: DeleteSessions finds expired sessions by expires_at
-- and revoked ones by a partial index that holds only those (CockroachDB
-- 20.2+ and PostgreSQL both have partial indexes), so a collection pass
-- reads what it deletes rather than the whole table. The SQLite backend
-- has the same indexes (its 0003).

CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_revoked ON sessions (id) WHERE revoked;
