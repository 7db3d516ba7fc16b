package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

// BenchInbox lists an inbox of 1,000 conversations (900 one-to-one, 100
// groups of 10; 10 messages each, the last 3 unread, half of them read
// cursors) in one page, in ms/op. The target is at most 20 ms on every
// backend (docs/social.md). settle, if not nil, runs after the data is
// written and before the clock starts (PostgreSQL: ANALYZE, which
// autovacuum does on a live database).
//
//	go test -run '^$' -bench Inbox ./storage/sqlite/ ./storage/postgres/
func BenchInbox(b *testing.B, s storage.Store, settle func()) {
	ctx := b.Context()
	const convs, groups, perConv = 1000, 100, 10
	mk := func(id string) {
		if err := s.CreateUser(ctx, storage.User{ID: id, Username: "u-" + id, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	mk("me")
	for i := range convs {
		mk(fmt.Sprintf("p%04d", i))
	}
	var msgs []storage.NewMessage
	var cursors []storage.ReadCursor
	id := int64(0)
	for i := range convs {
		peer := fmt.Sprintf("p%04d", i)
		conv := storage.C2CConversationID("me", peer)
		members := []string{"me", peer}
		if i < groups {
			gid := fmt.Sprintf("g%04d", i)
			ms := []string{"me", peer}
			for j := range 8 {
				ms = append(ms, fmt.Sprintf("p%04d", (i+j+1)%convs))
			}
			if err := s.CreateGroup(ctx, storage.Group{ID: gid, Name: "Group " + gid, OwnerID: "me", CreatedAt: time.Now()}, uniq(ms), 100); err != nil {
				b.Fatal(err)
			}
			conv, members = storage.GroupConversationID(gid), nil
		}
		for j := range perConv {
			id++
			sender := peer
			if j%4 == 0 {
				sender = "me"
			}
			msgs = append(msgs, storage.NewMessage{ConversationID: conv, MsgID: id, SenderID: sender, SenderDeviceID: "d",
				ClientMsgID: fmt.Sprintf("c%d", id), Content: []byte("hello there, a short text"), CreatedAt: time.Now(), Members: members})
		}
		if i%2 == 0 {
			cursors = append(cursors, storage.ReadCursor{UserID: "me", ConversationID: conv, ReadSeq: perConv - 3})
		}
		if len(msgs) >= 500 {
			if _, err := s.AppendMessages(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	if _, err := s.AppendMessages(ctx, msgs); err != nil {
		b.Fatal(err)
	}
	if err := s.AdvanceReadCursors(ctx, cursors, time.Now()); err != nil {
		b.Fatal(err)
	}
	if settle != nil {
		settle()
	}
	b.ResetTimer()
	for b.Loop() {
		page, err := s.Inbox(ctx, storage.InboxQuery{UserID: "me", DeviceID: "d", Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if len(page) != convs {
			b.Fatalf("inbox has %d entries, want %d", len(page), convs)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

func uniq(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
