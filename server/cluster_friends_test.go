package server_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// Two nodes: events made on one reach devices on the other at once, an
// offline device catches up on either node exactly once, a block made on
// one node is enforced by the other's send path (both directions, nothing
// stored), and presence changes cross nodes.
func TestClusterFriendsAndEvents(t *testing.T) {
	t.Parallel()
	c := servertest.StartCluster(t, 2, nil)
	n0, n1 := c.Nodes[0], c.Nodes[1]
	alice, bob := n0.NewUser(t, "alice"), n1.NewUser(t, "bob")
	dev := func(n *servertest.ClusterNode, u servertest.User, name string) device {
		tok := n.Login(t, u, name)
		return device{user: u, token: tok, Stream: n.OpenStream(t, tok)}
	}
	phone := dev(n0, alice, "phone")
	bobTok := n1.Login(t, bob, "phone")       // online once they are friends
	tabletTok := n0.Login(t, alice, "tablet") // offline for now
	af, bf := friendsOf(t, n0.Server, phone), friendsOf(t, n1.Server, device{token: bobTok})

	af.request(t, bob.ID) // on node-0
	nextEvent(t, phone)
	bf.accept(t, alice.ID) // on node-1
	if ev := nextEvent(t, phone); ev.GetFriendRequestAccepted() == nil || ev.GetSeq() != 2 {
		t.Fatalf("alice on node-0 got %v", ev)
	}
	// Bob comes online on node-1: he catches up on his events, and alice
	// on node-0 hears that her friend is online.
	bobPhone := device{user: bob, token: bobTok, Stream: n1.OpenStream(t, bobTok)}
	if n := bobPhone.Next(t).GetNotify(); n.GetLatestSeq() != 2 {
		t.Fatalf("bob's catch-up: %v", n)
	}
	if evs := syncEvents(t, bobPhone, storage.EventsConversationID(bob.ID), 0); len(evs) != 2 || evs[0].GetFriendRequested().GetFromUserId() != alice.ID {
		t.Fatalf("bob synced %v", evs)
	}
	if ev := nextPresence(t, phone); ev.GetPresenceChanged().GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("alice on node-0 got %v", ev)
	}

	// The tablet comes online on the other node and catches up once.
	tablet := device{user: alice, token: tabletTok, Stream: n1.OpenStream(t, tabletTok)}
	conv := storage.EventsConversationID(alice.ID)
	if n := tablet.Next(t).GetNotify(); n.GetConversationId() != conv || n.GetLatestSeq() != 2 {
		t.Fatalf("tablet's catch-up: %v", n)
	}
	evs := syncEvents(t, tablet, conv, 0)
	if len(evs) != 2 || evs[0].GetSeq() != 1 || evs[1].GetSeq() != 2 {
		t.Fatalf("tablet synced %v", evs)
	}

	// Alice talks to bob through node-0 (its relation cache is warm).
	c2c := storage.C2CConversationID(alice.ID, bob.ID)
	expectAck(t, phone, phone.Text(t, bob.ID, "", "m0", "hi"))
	nextPush(t, bobPhone.Stream)

	// Bob blocks alice on node-1: node-0's send path hears of it over the
	// bus (at the latest within the cache's 5 s bound).
	if _, err := bf.c.BlockUser(bf.ctx, &starlingv1.BlockUserRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, bobPhone); ev.GetUserBlocked().GetUserId() != alice.ID {
		t.Fatalf("block event %v", ev)
	}
	deadline := time.Now().Add(6 * time.Second)
	for i := 1; ; i++ {
		ref := phone.Text(t, bob.ID, "", fmt.Sprintf("m%d", i), "still there?")
		f := phone.Next(t)
		for f.GetRef() != ref {
			f = phone.Next(t)
		}
		if e := f.GetError(); e != nil {
			if codes.Code(e.GetCode()) != codes.PermissionDenied {
				t.Fatalf("refused with %v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-0 still sends across a block made on node-1")
		}
		nextPush(t, bobPhone.Stream)
	}
	before := latestOf(t, n0.Server, c2c)
	expectError(t, phone, phone.Text(t, bob.ID, "", "late", "again?"), codes.PermissionDenied)
	expectError(t, bobPhone, bobPhone.Text(t, alice.ID, "", "b1", "and you?"), codes.PermissionDenied)
	if after := latestOf(t, n0.Server, c2c); after != before {
		t.Fatalf("stored %d messages across the block", after-before)
	}
	if _, err := bf.c.UnblockUser(bf.ctx, &starlingv1.UnblockUserRequest{UserId: alice.ID}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, bobPhone)

	// Bob goes offline on node-1: alice's devices on both nodes hear it.
	bobPhone.Close()
	for _, d := range []device{phone, tablet} {
		var ev *starlingv1.Event
		for ev == nil {
			f := d.Next(t)
			if e := f.GetEvent(); e != nil && e.GetPresenceChanged() != nil {
				ev = e
			}
		}
		if p := ev.GetPresenceChanged(); p.GetUserId() != bob.ID || p.GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
			t.Fatalf("presence on %s: %v", d.Welcome.GetNodeId(), ev)
		}
	}
	res, err := af.c.GetPresence(af.ctx, &starlingv1.GetPresenceRequest{UserIds: []string{bob.ID, alice.ID}})
	if err != nil || res.GetPresences()[0].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_OFFLINE || res.GetPresences()[1].GetStatus() != starlingv1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("presence: %v %v", res, err)
	}
}
