package server_test

import (
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// nextPush returns the next Push frame's messages, skipping other frames
// (SendAcks of the stream's own sends, say).
func nextPush(t *testing.T, st *servertest.Stream) []*starlingv1.Message {
	t.Helper()
	for {
		f := st.Next(t)
		if p := f.GetPush(); p != nil {
			return p.GetMessages()
		}
		if n := f.GetNotify(); n != nil {
			t.Fatalf("Notify %v where a push was due", n)
		}
	}
}

// Devices on three nodes of one cluster: a c2c message and a group
// message reach every recipient's node once, pushed in order.
func TestClusterDeliversAcrossNodes(t *testing.T) {
	t.Parallel()
	c := servertest.StartCluster(t, 3, nil)
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	alice, bob, carol := n0.NewUser(t, "alice"), n1.NewUser(t, "bob"), n2.NewUser(t, "carol")
	as := n0.OpenStream(t, n0.Login(t, alice, "phone"))
	bs := n1.OpenStream(t, n1.Login(t, bob, "phone"))
	cs := n2.OpenStream(t, n2.Login(t, carol, "phone"))
	if bs.Welcome.GetNodeId() != "node-1" || cs.Welcome.GetNodeId() != "node-2" {
		t.Fatalf("welcomed by %s and %s", bs.Welcome.GetNodeId(), cs.Welcome.GetNodeId())
	}
	g, err := starlingv1.NewGroupServiceClient(n0.Dial(t)).CreateGroup(servertest.WithToken(t.Context(), n0.Login(t, alice, "laptop")),
		&starlingv1.CreateGroupRequest{Name: "three nodes", MemberIds: []string{bob.ID, carol.ID}})
	if err != nil {
		t.Fatal(err)
	}
	gid := g.GetGroup().GetGroupId()
	readCreation(t, device{Stream: bs}, device{Stream: cs})

	for i, text := range []string{"one", "two", "three"} {
		as.Text(t, bob.ID, "", "c2c-"+text, text)
		got := nextPush(t, bs)
		if len(got) != 1 || got[0].GetSeq() != int64(i+1) || got[0].GetContent().GetText() != text {
			t.Fatalf("bob on node-1 got %v, want %q at seq %d", got, text, i+1)
		}
		bs.Ack(t, got[0].GetConversationId(), got[0].GetSeq())
	}
	for i := 1; i <= 3; i++ {
		as.Text(t, "", gid, "g-"+string(rune('0'+i)), "group")
		for _, st := range []*servertest.Stream{bs, cs} {
			got := nextPush(t, st)
			if len(got) != 1 || got[0].GetSeq() != int64(i+1) { // seq 1 is the creation
				t.Fatalf("group push %d: %v", i, got)
			}
			st.Ack(t, got[0].GetConversationId(), got[0].GetSeq())
		}
	}
}
