package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

// BenchInbox lists an inbox of 1,000 conversations (900 one-to-one, 100
// groups of 10; 10 messages each, the last 3 unread, half of them read
// cursors; every peer has read, blocks another peer, and has 20 cursors
// elsewhere, rows a plan must not scan), in ms/op, three ways: OnePage,
// all 1,000 in one listing (what ListConversations with page_size 0 does,
// and the Welcome's summary);
// FirstPage, the first page of 50 (an app's first screen); AllPages, every
// page of 50 in turn, each continuing after the last (keyset paging); and
// UnreadTotal, the whole inbox's unread count alone (a push badge). The
// target is at most 20 ms to list the inbox of 1,000 on every backend
// (docs/social.md has the figures of both readings). settle, if not nil, runs after the data is written and
// before the clock starts (PostgreSQL: ANALYZE, which autovacuum does on a
// live database).
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
		// The peers read too: their cursors are the inbox's read ticks,
		// and rows of other users a plan must not scan.
		cursors = append(cursors, storage.ReadCursor{UserID: peer, ConversationID: conv, ReadSeq: perConv - 1})
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
	// Rows of other users that a good plan never reads: blocks between
	// the peers, and the peers' cursors of conversations not in this inbox.
	for i := range convs {
		if _, err := s.Block(ctx, fmt.Sprintf("p%04d", i), fmt.Sprintf("p%04d", (i+1)%convs), time.Now(), nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 20 * convs {
		cursors = append(cursors, storage.ReadCursor{UserID: fmt.Sprintf("p%04d", i%convs), ConversationID: fmt.Sprintf("c2c:elsewhere%06d", i), ReadSeq: 1})
	}
	if err := s.AdvanceReadCursors(ctx, cursors, time.Now()); err != nil {
		b.Fatal(err)
	}
	if settle != nil {
		settle()
	}
	// list lists pages of size from the start until want entries were
	// listed (at most pages pages).
	list := func(b *testing.B, size, pages, want int) {
		var after storage.InboxPosition
		n := 0
		for range pages {
			page, err := s.Inbox(ctx, storage.InboxQuery{UserID: "me", DeviceID: "d", Limit: size, After: after})
			if err != nil {
				b.Fatal(err)
			}
			n += len(page)
			if len(page) < size {
				break
			}
			after = page[len(page)-1].Position()
		}
		if n != want {
			b.Fatalf("listed %d entries, want %d", n, want)
		}
	}
	for _, c := range []struct {
		name              string
		size, pages, want int
	}{
		{"OnePage", convs, 1, convs},
		{"FirstPage", 50, 1, 50},
		{"AllPages", 50, convs/50 + 1, convs},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				list(b, c.size, c.pages, c.want)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
	// UnreadTotal: the badge of an offline push, the whole inbox's unread
	// count without the rest; it must add up to the listing's counts.
	all, err := s.Inbox(ctx, storage.InboxQuery{UserID: "me", DeviceID: "d"})
	if err != nil {
		b.Fatal(err)
	}
	var want int64
	for _, e := range all {
		want += e.Unread
	}
	b.Run("UnreadTotal", func(b *testing.B) {
		for b.Loop() {
			if n, err := s.UnreadTotal(ctx, "me"); err != nil || n != want || n == 0 {
				b.Fatalf("unread total %d (%v), want %d", n, err, want)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
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
