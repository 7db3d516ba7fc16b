-- Membership periods and the membership epoch.
--
-- A user can leave a group and be added again; each stay is a period
-- (joined_seq, left_seq]. Until now a rejoin overwrote the one memberships
-- row and lost the earlier stay. Now:
--
--   * memberships keeps each user's CURRENT (last) period, as before:
--     left_seq IS NULL while it is active. Every hot read (is this user a
--     member now, who are the members, my conversations) still reads one
--     row per (user, conversation) and needs no change of plan.
--   * membership_history keeps the EARLIER, ended periods. AddMembers moves
--     the ended current period here when the user rejoins, in the same
--     transaction that starts the new one. Periods that read nothing
--     (joined_seq = left_seq, e.g. leaving before the first message) are
--     not moved: nothing can read them, and leaving them out keeps the
--     stored periods non-empty and non-overlapping, so joined_seq alone
--     tells a user's periods in a conversation apart (the primary key).
--
-- The PostgreSQL backend has the same tables, columns and keys (in its
-- migrations 0002 to 0004: CockroachDB needs the steps apart).

CREATE TABLE membership_history (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    user_id         TEXT    NOT NULL REFERENCES users (id),
    joined_seq      INTEGER NOT NULL,
    left_seq        INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, joined_seq),
    CHECK (joined_seq < left_seq)
) STRICT, WITHOUT ROWID;

-- MembersAt(seq) looks for periods with left_seq >= seq. It is asked about
-- recent messages, so on (conversation_id, left_seq) it reads the few
-- periods that ended recently, not a conversation's whole past. The
-- primary key serves GetMembership and ListConversations (by user).
CREATE INDEX membership_history_conversation_left ON membership_history (conversation_id, left_seq);

-- The membership epoch: every change of a group's members (create, add,
-- leave) increments it in the same transaction, and AppendMessages returns
-- it from the statement that bumps latest_seq. One-to-one conversations
-- stay at 0. Existing groups start at 1, as CreateGroup sets it.
ALTER TABLE conversations ADD COLUMN member_epoch INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET member_epoch = 1
WHERE member_epoch = 0 AND id IN (SELECT 'grp:' || id FROM groups);
