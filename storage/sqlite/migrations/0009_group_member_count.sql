-- groups.member_count: the group's active members (memberships rows with
-- left_seq NULL), kept by every transaction that starts or ends a period
-- (recountMembers), so the inbox, GetGroup and the user's group list read
-- a column instead of counting a big group's rows on every listing. The
-- PostgreSQL backend has the same column (its 0011 and 0012).

ALTER TABLE groups ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE groups SET member_count = (SELECT count(*) FROM memberships m
	WHERE m.conversation_id = 'grp:' || groups.id AND m.left_seq IS NULL);
