-- Session collection: DeleteSessions finds expired sessions by expires_at
-- and revoked ones by a partial index that holds only those, so a
-- collection pass reads what it deletes rather than the whole table.
-- The PostgreSQL backend has the same indexes (its 0005).

CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (id) WHERE revoked = 1;
