-- Group roles and info (SQLite: its 0007).
--
--   * groups gets the info admins may change (description, avatar_url),
--     the join policy (0 invite only, 1 open), the add policy (0 any
--     member adds, 1 only admins) and disbanded_at (NULL while the group
--     lives). The defaults are how every group behaved before: invite
--     only, any member adds.
--   * memberships.role is 1 for admins, 0 otherwise. The owner is
--     groups.owner_id, so there is exactly one by construction; the column
--     of the owner's row is not read. Only an active row's role means
--     anything (leaving resets it to 0).
--
-- Constant defaults add the columns without rewriting the tables, and no
-- row is written here (see 0003: CockroachDB does not let a transaction
-- write a column it has just added).

ALTER TABLE groups ADD COLUMN IF NOT EXISTS description TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN IF NOT EXISTS avatar_url TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN IF NOT EXISTS join_policy BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN IF NOT EXISTS add_policy BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN IF NOT EXISTS disbanded_at BIGINT;
ALTER TABLE memberships ADD COLUMN IF NOT EXISTS role BIGINT NOT NULL DEFAULT 0;
