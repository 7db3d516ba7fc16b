-- Node leases: each node holds one number (the node bits of its message
-- ids) while its lease lasts, so no two nodes on one database make the
-- same msg_id. Times are unix milliseconds by the database's clock
-- (now()), so the nodes' clocks do not decide who holds a number. The
-- SQLite backend has the same table (its 0004).

CREATE TABLE IF NOT EXISTS node_leases (
    number      BIGINT NOT NULL PRIMARY KEY,
    holder      TEXT   NOT NULL,
    node        TEXT   NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
