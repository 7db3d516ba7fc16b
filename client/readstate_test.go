package client_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// The client reads, lists the inbox, mutes, and hears receipts and typing
// through its callbacks.
func TestReadStateAndReceipts(t *testing.T) {
	srv := servertest.Start(t)
	aliceID, bobID := register(t, srv, "alice"), register(t, srv, "bob")
	ac, bc := login(t, srv, "alice", "phone"), login(t, srv, "bob", "phone")
	receipts := make(chan *starlingv1.Receipt, 100)
	typing := make(chan *starlingv1.TypingNotice, 100)
	as := open(t, ac, client.WithReceipts(func(r *starlingv1.Receipt) { receipts <- r }))
	bs := open(t, bc, client.WithTyping(func(n *starlingv1.TypingNotice) { typing <- n }))
	conv := client.DirectConversationID(aliceID, bobID)

	for _, text := range []string{"one", "two", "three"} {
		send(t, as, client.ToUser(bobID), text)
	}
	got := receive(t, bs, 3)
	if err := bs.MarkRead(t.Context(), conv, got[1].GetSeq()); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case r := <-receipts:
			done = r.GetUserId() == bobID && r.GetReadSeq() == got[1].GetSeq()
		case <-timeout:
			t.Fatal("no read receipt")
		}
	}
	list, next, err := bc.Inbox(t.Context(), 10, "")
	if err != nil || next != "" || len(list) != 1 {
		t.Fatalf("inbox %v %q %v", list, next, err)
	}
	if e := list[0]; e.GetUnreadCount() != 1 || e.GetReadSeq() != got[1].GetSeq() || e.GetLastMessage().GetContent().GetText() != "three" {
		t.Fatalf("inbox entry %v", e)
	}
	if err := bc.Mute(t.Context(), conv, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if list, _, _ := bc.Inbox(t.Context(), 0, ""); !list[0].GetMuted() {
		t.Fatalf("not muted: %v", list[0])
	}
	if err := bc.Unmute(t.Context(), conv); err != nil {
		t.Fatal(err)
	}
	if err := bc.MarkRead(t.Context(), conv, 3); err != nil {
		t.Fatal(err)
	}
	n, who, err := ac.ReadBy(t.Context(), conv, 3, 0)
	if err != nil || n != 1 || len(who) != 1 || who[0] != bobID {
		t.Fatalf("read by %d %v %v", n, who, err)
	}
	wantCode(t, bc.MarkRead(t.Context(), conv, 99), codes.InvalidArgument)

	if err := as.Typing(t.Context(), conv); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-typing:
		if n.GetUserId() != aliceID || n.GetConversationId() != conv {
			t.Fatalf("typing %v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no typing notice")
	}
}
