-- Node leases: each node holds one number (the node bits of its message
-- ids) while its lease lasts. Times are unix milliseconds by the process
-- clock (one host). The PostgreSQL backend has the same table (its 0006).

CREATE TABLE node_leases (
    number      INTEGER NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
