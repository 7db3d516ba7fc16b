package server_test

import (
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// Receipts and typing cross nodes through the bus: alice on node-0, bob
// on node-1, bob's second device on node-2.
func TestClusterReceiptsAndTyping(t *testing.T) {
	t.Parallel()
	c := servertest.StartCluster(t, 3, nil)
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	alice, bob := n0.NewUser(t, "alice"), n1.NewUser(t, "bob")
	as := n0.OpenStream(t, n0.Login(t, alice, "phone"))
	bs := n1.OpenStream(t, n1.Login(t, bob, "phone"))
	bt := n2.OpenStream(t, n2.Login(t, bob, "tablet"))
	ab := storage.C2CConversationID(alice.ID, bob.ID)

	as.Text(t, bob.ID, "", "m1", "one")
	as.Text(t, bob.ID, "", "m2", "two")
	var last int64
	for last < 2 {
		for _, m := range nextPush(t, bs) {
			last = m.GetSeq()
			bs.Ack(t, ab, last)
		}
	}
	bs.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: ab, Seq: 2}}})
	// Alice (node-0) hears bob read both; bob's tablet (node-2) hears his
	// read cursor.
	for _, st := range []*servertest.Stream{as, bt} {
		for {
			r := st.Next(t).GetReceipt()
			if r != nil && r.GetUserId() == bob.ID && r.GetReadSeq() == 2 {
				break
			}
		}
	}
	// Typing from node-0 reaches both of bob's devices on two other nodes.
	as.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Typing{Typing: &starlingv1.Typing{ConversationId: ab}}})
	for _, st := range []*servertest.Stream{bs, bt} {
		for {
			if n := st.Next(t).GetTyping(); n != nil {
				if n.GetUserId() != alice.ID || n.GetConversationId() != ab {
					t.Fatalf("typing notice %v", n)
				}
				break
			}
		}
	}
}
