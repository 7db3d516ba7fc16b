package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

// The send path's statements live on the write connection. When
// database/sql replaces that connection (here: it closes it after every
// use), the old one finalizes its statements as it closes and the new one
// prepares its own: appends keep working, in order, batch sizes small
// (prepared once) and large (prepared per use) alike.
func TestAppendAcrossWriterReconnects(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "reconnect.db"))
	ctx := t.Context()
	for _, u := range []string{"a", "b"} {
		if err := s.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	s.w.SetMaxIdleConns(0) // every connection is closed once returned
	conv := storage.C2CConversationID("a", "b")
	var want int64
	for round, n := range []int{1, 2, smallBatch + 1, 1} {
		msgs := make([]storage.NewMessage, n)
		for i := range msgs {
			msgs[i] = storage.NewMessage{
				ConversationID: conv, MsgID: int64(100*round + i), SenderID: "a", SenderDeviceID: "d",
				ClientMsgID: fmt.Sprintf("r%d-%d", round, i), Content: []byte("x"), CreatedAt: time.Now(),
				Members: []string{"a", "b"},
			}
		}
		res, err := s.AppendMessages(ctx, msgs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i, r := range res {
			want++
			if r.Duplicate || r.Message.Seq != want {
				t.Fatalf("round %d, message %d: seq %d duplicate %v, want seq %d", round, i, r.Message.Seq, r.Duplicate, want)
			}
		}
		// A resend through a fresh connection takes the lookup path.
		res, err = s.AppendMessages(ctx, msgs[:1])
		if err != nil || !res[0].Duplicate || res[0].Message.Seq != want-int64(n)+1 {
			t.Fatalf("round %d: resend: %+v, %v; want the duplicate of seq %d", round, res, err, want-int64(n)+1)
		}
	}
	if seq, err := s.LatestSeq(ctx, conv); err != nil || seq != want {
		t.Fatalf("LatestSeq = %d, %v; want %d", seq, err, want)
	}
}

// A write whose context ends while it waits for the single writer is
// refused, and the writer (with its prepared statements) serves the next
// append.
func TestAppendAfterAbandonedWait(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "abandon.db"))
	ctx := t.Context()
	for _, u := range []string{"a", "b"} {
		if err := s.CreateUser(ctx, storage.User{ID: u, Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	conv := storage.C2CConversationID("a", "b")
	msg := func(id string) storage.NewMessage {
		return storage.NewMessage{ConversationID: conv, SenderID: "a", ClientMsgID: id, CreatedAt: time.Now(), Members: []string{"a", "b"}}
	}
	if _, err := s.AppendMessages(ctx, []storage.NewMessage{msg("1")}); err != nil {
		t.Fatal(err)
	}
	conn, err := s.w.Conn(ctx) // holds the writer
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.AppendMessages(cctx, []storage.NewMessage{msg("2")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with its context ended: %v, want context.Canceled", err)
	}
	conn.Close()
	res, err := s.AppendMessages(ctx, []storage.NewMessage{msg("3")})
	if err != nil || res[0].Message.Seq != 2 {
		t.Fatalf("append after: %+v, %v; want seq 2", res, err)
	}
}
