package server_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
)

// Several nodes committing to one group on one database at once: seqs stay
// gapless and unique (serializable retries), every acknowledged message is
// stored once, and msg_ids never collide because each node leased its own
// node number. (Pushes across nodes need the cluster bus; this is the
// storage and identity half of it.)
func TestNodesWriteOneConversation(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	open := func(t testing.TB) storage.Store { return pgtest.Open(t, dbURL) }
	const nodes, sendersPerNode, perSender = 3, 2, 15
	var srvs []*servertest.Server
	for i := range nodes {
		srvs = append(srvs, servertest.Start(t, servertest.WithStore(open),
			servertest.WithConfig(func(c *server.Config) { c.NodeID = fmt.Sprint("node-", i) })))
	}
	owner := srvs[0].NewUser(t, "owner")
	type sender struct {
		node int
		dev  device
	}
	var (
		senders []sender
		members []servertest.User
	)
	for n, srv := range srvs {
		for k := range sendersPerNode {
			u := srv.NewUser(t, fmt.Sprintf("s%d%d", n, k))
			members = append(members, u)
			senders = append(senders, sender{node: n, dev: device{user: u}})
		}
	}
	ownerDev := connect(t, srvs[0], owner, "phone")
	g := newGroup(t, srvs[0], ownerDev, members...)
	for i := range senders { // each logs in on its own node (tokens are per node here)
		senders[i].dev = connect(t, srvs[senders[i].node], senders[i].dev.user, "phone")
	}

	var (
		mu     sync.Mutex
		acks   = map[int64]int64{}        // seq → msg_id
		byNode = map[int]map[int64]bool{} // node → node bits seen in its msg_ids
	)
	t.Run("senders", func(t *testing.T) {
		for i, s := range senders {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				for k := range perSender {
					ack, _ := expectAck(t, s.dev, s.dev.Text(t, "", g.GetGroupId(), fmt.Sprintf("%d-%d", i, k), "concurrent"))
					mu.Lock()
					if prev, dup := acks[ack.GetSeq()]; dup {
						t.Errorf("seq %d acked twice: msg_ids %d and %d", ack.GetSeq(), prev, ack.GetMsgId())
					}
					acks[ack.GetSeq()] = ack.GetMsgId()
					if byNode[s.node] == nil {
						byNode[s.node] = map[int64]bool{}
					}
					byNode[s.node][ack.GetMsgId()>>12&1023] = true
					mu.Unlock()
				}
			})
		}
	})
	const total = nodes * sendersPerNode * perSender
	var seqs []int64
	for seq := range acks {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	// Seq 1 is the group's creation.
	if len(seqs) != total || seqs[0] != 2 || seqs[len(seqs)-1] != total+1 {
		t.Fatalf("acked %d seqs from %v to %v, want exactly 2..%d", len(seqs), seqs[0], seqs[len(seqs)-1], total+1)
	}
	stored, err := srvs[0].Store().ListMessages(t.Context(), g.GetConversationId(), 1, storage.OpenSeq, total+10)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	for i, m := range stored {
		if m.Seq != int64(i+2) || acks[m.Seq] != m.MsgID {
			t.Fatalf("stored #%d: seq %d msg_id %d, acked msg_id %d", i, m.Seq, m.MsgID, acks[m.Seq])
		}
		ids[m.MsgID] = true
	}
	if len(stored) != total || len(ids) != total {
		t.Fatalf("%d stored, %d distinct msg_ids; want %d", len(stored), len(ids), total)
	}
	numbers := map[int64]int{}
	for n, bits := range byNode {
		if len(bits) != 1 {
			t.Fatalf("node %d minted ids with node numbers %v", n, bits)
		}
		for b := range bits {
			if other, taken := numbers[b]; taken {
				t.Fatalf("nodes %d and %d share node number %d", other, n, b)
			}
			numbers[b] = n
		}
	}
}
