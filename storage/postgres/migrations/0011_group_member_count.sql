-- groups.member_count: the group's active members (memberships rows with
-- left_seq NULL), kept by every transaction that starts or ends a period
-- (recountMembers), so the inbox, GetGroup and the user's group list read
-- a column instead of counting a big group's rows on every listing.
-- Alone in its migration (see 0002); 0012 fills it for existing groups.
-- The SQLite backend has the same column (its 0009).

ALTER TABLE groups ADD COLUMN IF NOT EXISTS member_count BIGINT NOT NULL DEFAULT 0;
