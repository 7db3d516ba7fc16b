-- Groups created before 0003 start at membership epoch 1, as CreateGroup
-- sets it, so every group's epoch is at least 1. (SQLite does this in its
-- 0002, where a transaction may write a column it has just added.)
-- Running it again changes nothing (member_epoch = 0 only), and a group
-- whose members changed since 0003 is past 0 already and keeps its epoch.

UPDATE conversations SET member_epoch = 1
WHERE member_epoch = 0 AND id IN (SELECT 'grp:' || id FROM groups);
