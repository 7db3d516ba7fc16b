-- Group roles and info.
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
-- The PostgreSQL backend has the same columns (its 0009).

ALTER TABLE groups ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN avatar_url TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN join_policy INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN add_policy INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN disbanded_at INTEGER;
ALTER TABLE memberships ADD COLUMN role INTEGER NOT NULL DEFAULT 0;
