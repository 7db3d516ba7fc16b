-- Counts the members of the groups that existed before 0011. Running it
-- again writes the same counts.

UPDATE groups g SET member_count = (SELECT count(*) FROM memberships m
	WHERE m.conversation_id = 'grp:' || g.id AND m.left_seq IS NULL);
