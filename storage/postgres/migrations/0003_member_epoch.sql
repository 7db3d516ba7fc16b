-- The membership epoch: every change of a group's members (create, add,
-- leave) increments it in the same transaction, and AppendMessages returns
-- it from the statement that bumps latest_seq, which holds the row's lock,
-- so a message's epoch names the member set it was stored under.
-- One-to-one conversations stay at 0.
--
-- A constant default adds the column without rewriting the table
-- (PostgreSQL 11+; CockroachDB backfills it online). Alone in its
-- migration (see 0002); the groups' first epoch is written by 0004,
-- because CockroachDB does not let a transaction write a column it has
-- just added (the column becomes public only once the change commits).

ALTER TABLE conversations ADD COLUMN IF NOT EXISTS member_epoch BIGINT NOT NULL DEFAULT 0;
