package storagetest

import (
	"fmt"
	"testing"

	"github.com/starling-im/starling/storage"
)

// Legacy0001 is data as the schema of migration 0001 held it, before
// membership periods and epochs: one memberships row per (user,
// conversation), left_seq NULL while active. The same SQL runs on both
// backends; %[1]s is the backend's empty blob literal. A backend's upgrade
// test stores it in a database migrated to version 1 only, opens the
// database with the current binary (which migrates it) and runs
// CheckUpgraded0001.
//
//   - group g (latest seq 3): alice active; bob left at 2.
//   - group early (latest seq 2): alice active; carol left at 0, before
//     the first message (left_seq 0, which once read as "no bound").
//   - alice and bob's one-to-one conversation (latest seq 1).
const Legacy0001 = `
INSERT INTO users (id, username, display_name, password_hash, created_at) VALUES
    ('alice', 'alice', '', %[1]s, 0), ('bob', 'bob', '', %[1]s, 0), ('carol', 'carol', '', %[1]s, 0);
INSERT INTO groups (id, name, owner_id, created_at) VALUES ('g', 'g', 'alice', 0), ('early', 'early', 'alice', 0);
INSERT INTO conversations (id, latest_seq, updated_at) VALUES
    ('grp:g', 3, 3), ('grp:early', 2, 2), ('c2c:alice:bob', 1, 1);
INSERT INTO memberships (conversation_id, user_id, joined_seq, left_seq) VALUES
    ('grp:g', 'alice', 0, NULL), ('grp:g', 'bob', 0, 2),
    ('grp:early', 'alice', 0, NULL), ('grp:early', 'carol', 0, 0),
    ('c2c:alice:bob', 'alice', 0, NULL), ('c2c:alice:bob', 'bob', 0, NULL);
INSERT INTO messages (conversation_id, seq, msg_id, sender_id, sender_device_id, client_msg_id, content, created_at) VALUES
    ('grp:g', 1, 1, 'alice', 'd', 'legacy-1', %[1]s, 1),
    ('grp:g', 2, 2, 'alice', 'd', 'legacy-2', %[1]s, 2),
    ('grp:g', 3, 3, 'alice', 'd', 'legacy-3', %[1]s, 3),
    ('grp:early', 1, 4, 'alice', 'd', 'legacy-4', %[1]s, 1),
    ('grp:early', 2, 5, 'alice', 'd', 'legacy-5', %[1]s, 2),
    ('c2c:alice:bob', 1, 6, 'bob', 'd', 'legacy-6', %[1]s, 1);
`

// CheckUpgraded0001 checks a store opened on Legacy0001's data: the
// memberships read as periods, a left_seq of 0 as a period that reads
// nothing, groups start at epoch 1 and one-to-one conversations at 0, and
// the upgraded data takes new periods and epochs.
func CheckUpgraded0001(t *testing.T, s storage.Store) {
	t.Helper()
	fx := &fixture{t: t, s: s}
	g, early, ab := storage.GroupConversationID("g"), storage.GroupConversationID("early"), storage.C2CConversationID("alice", "bob")

	for _, id := range []string{"g", "early"} {
		if epoch := fx.wantMembers(id, "alice"); epoch != 1 {
			t.Fatalf("group %s from before the upgrade: epoch %d, want 1", id, epoch)
		}
	}
	fx.wantPeriods(g, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 2})
	fx.wantPeriods(early, "carol", storage.Period{JoinedSeq: 0, LeftSeq: 0})
	fx.wantPeriods(ab, "bob", storage.Period{JoinedSeq: 0, LeftSeq: openSeq})
	fx.wantMembersAt("g", 2, "alice", "bob")
	fx.wantMembersAt("g", 3, "alice")
	fx.wantMembersAt("early", 1, "alice")
	carol, _ := fx.conversations("carol", "phone", false)
	if cs := carol[early]; cs.LatestSeq != 0 {
		t.Fatalf("carol, who left early before its first message, sees up to seq %d, want 0", cs.LatestSeq)
	}

	res := fx.append(fx.msg(g, "alice", "after the upgrade"), fx.msg(ab, "bob", "after the upgrade"))
	if res[0].Message.Seq != 4 || res[0].MemberEpoch != 1 || res[1].Message.Seq != 2 || res[1].MemberEpoch != 0 {
		t.Fatalf("appends after the upgrade: %s seq %d epoch %d, %s seq %d epoch %d; want seq 4 epoch 1, seq 2 epoch 0",
			g, res[0].Message.Seq, res[0].MemberEpoch, ab, res[1].Message.Seq, res[1].MemberEpoch)
	}
	_, err := s.AddMembers(t.Context(), "g", []string{"bob"}, 10)
	must(t, err, "bob rejoins g")
	fx.wantPeriods(g, "bob", storage.Period{JoinedSeq: 0, LeftSeq: 2}, storage.Period{JoinedSeq: 4, LeftSeq: openSeq})
	if epoch := fx.wantMembers("g", "alice", "bob"); epoch != 2 {
		t.Fatalf("epoch after a rejoin = %d, want 2", epoch)
	}
	_, err = s.AddMembers(t.Context(), "early", []string{"carol"}, 10)
	must(t, err, "carol rejoins early")
	m := fx.membership(early, "carol")
	if !m.Active() || m.Contains(1) || m.Contains(2) || !m.Contains(3) {
		t.Fatalf("carol's periods in early after rejoining = %s, want readable from seq 3 on only", periods(m.Periods))
	}
}

// LegacySQL returns Legacy0001 with the backend's empty blob literal.
func LegacySQL(emptyBlob string) string { return fmt.Sprintf(Legacy0001, emptyBlob) }
