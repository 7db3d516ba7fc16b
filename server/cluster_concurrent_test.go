package server_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// Six members of one group, two on each of three nodes, each send K
// messages at once. Every send is acknowledged; the seqs acknowledged are
// exactly 1..N, the msg_ids distinct; the history holds exactly those N
// messages; and every member's device ends up with all N, in order, once
// each (pushed, or pulled after a Notify).
func TestClusterConcurrentGroupWriters(t *testing.T) {
	t.Parallel()
	const nodes, perNode, k = 3, 2, 30
	const members, total = nodes * perNode, nodes * perNode * k
	m := newMetered(nil)
	c := servertest.StartCluster(t, nodes, m.configure)
	var (
		users []servertest.User
		devs  []device
		homes []*servertest.ClusterNode
	)
	for i := range members {
		n := c.Nodes[i/perNode]
		u := n.NewUser(t, fmt.Sprint("member", i))
		users = append(users, u)
		devs = append(devs, connect(t, n.Server, u, "phone"))
		homes = append(homes, n)
	}
	m.awaitDevices(t, members, c.Nodes...)
	g := newGroup(t, c.Nodes[0].Server, devs[0], users[1:]...)
	conv := g.GetConversationId()
	readCreation(t, devs...) // seq 1: the members' messages are 2..total+1

	var (
		mu    sync.Mutex
		acked = map[int64]int64{} // seq → msg_id
		ids   = map[int64]bool{}
	)
	// Goroutines, not parallel subtests: those would wait for a free slot
	// (-parallel, GOMAXPROCS by default), and a member that has not
	// started never sends what the others wait for.
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			t := goroutineT{t}
			in := newInbox(d, conv)
			in.last = 1 // the creation
			for j := range k {
				in.sent[d.Text(t, "", g.GetGroupId(), fmt.Sprintf("%d-%d", i, j), "concurrent")] = fmt.Sprintf("%d-%d", i, j)
			}
			in.run(t, k, total+1)
			mu.Lock()
			defer mu.Unlock()
			for seq, id := range in.acked {
				if prev, dup := acked[seq]; dup {
					t.Errorf("seq %d acknowledged twice: msg_ids %d and %d", seq, prev, id)
				}
				if ids[id] {
					t.Errorf("msg_id %d acknowledged twice", id)
				}
				acked[seq], ids[id] = id, true
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(acked) != total {
		t.Fatalf("%d seqs acknowledged, want %d", len(acked), total)
	}
	for seq := int64(2); seq <= total+1; seq++ {
		if _, ok := acked[seq]; !ok {
			t.Fatalf("seq %d never acknowledged; acknowledged seqs are not 2..%d", seq, total+1)
		}
	}

	// The history, paged through another node, is exactly the creation and
	// the N messages.
	var hist []*starlingv1.Message
	before := int64(0)
	for {
		res, err := chatClient(t, c.Nodes[1].Server).GetHistory(servertest.WithToken(t.Context(), devs[2].token),
			&starlingv1.GetHistoryRequest{ConversationId: conv, BeforeSeq: before, Limit: 50})
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		page := res.GetMessages()
		if len(page) == 0 {
			t.Fatalf("empty history page before seq %d (has_more %v)", before, res.GetHasMore())
		}
		hist = append(slices.Clone(page), hist...)
		before = page[0].GetSeq()
		if !res.GetHasMore() {
			break
		}
	}
	wantSeqs(t, hist, 1, total+1)
	clientIDs := map[string]bool{}
	for _, msg := range hist[1:] {
		key := msg.GetSenderId() + "/" + msg.GetClientMsgId()
		if clientIDs[key] || msg.GetMsgId() != acked[msg.GetSeq()] {
			t.Fatalf("history message %v: repeated, or not the one acknowledged at its seq (msg_id %d)", msg, acked[msg.GetSeq()])
		}
		clientIDs[key] = true
	}
}

// goroutineT is the test's testing.TB for a goroutine of its own: a fatal
// failure marks the test failed and ends that goroutine only (FailNow may
// not be called from another goroutine than the test's).
type goroutineT struct{ testing.TB }

func (g goroutineT) Fatalf(format string, args ...any) {
	g.TB.Helper()
	g.TB.Errorf(format, args...)
	runtime.Goexit()
}

func (g goroutineT) Fatal(args ...any) {
	g.TB.Helper()
	g.TB.Error(args...)
	runtime.Goexit()
}

func (g goroutineT) FailNow() {
	g.TB.Fail()
	runtime.Goexit()
}

// inbox is one member's device in TestClusterConcurrentGroupWriters: it
// reads its stream as an app's client does for one conversation, and
// checks that the server never makes it see a message twice or skip one.
type inbox struct {
	d     device
	conv  string
	sent  map[uint64]string // ref → client_msg_id of the device's own sends
	acked map[int64]int64   // seq → msg_id of its own sends, from SendAcks
	own   map[int64]string  // its own sends not yet in line (earlier ones still coming): seq → client_msg_id
	last  int64             // every seq up to last was seen once, in order
	// syncRef is the Sync in flight (0: none); again: a Notify came
	// meanwhile.
	syncRef uint64
	again   bool
	seen    map[int64]string // seq → client_msg_id of what it has
	trace   []string
}

func newInbox(d device, conv string) *inbox {
	return &inbox{d: d, conv: conv, sent: map[uint64]string{}, acked: map[int64]int64{}, own: map[int64]string{}, seen: map[int64]string{}}
}

// take moves last over seq (client_msg_id id), which must be next in line.
func (in *inbox) take(t testing.TB, seq int64, id, how string) {
	t.Helper()
	switch {
	case seq <= in.last:
		t.Fatalf("%s: seq %d again (the device has everything up to %d)", how, seq, in.last)
	case seq > in.last+1:
		t.Fatalf("%s: seq %d jumps a gap (the device has everything up to %d, and none of its own sends in between)", how, seq, in.last)
	}
	in.last, in.seen[seq] = seq, id
	delete(in.own, seq)
	for { // its own sends that are now in line
		id, ok := in.own[in.last+1]
		if !ok {
			return
		}
		delete(in.own, in.last+1)
		in.last++
		in.seen[in.last] = id
	}
}

func (in *inbox) sync(t testing.TB) {
	in.syncRef = in.d.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{ConversationId: in.conv, AfterSeq: in.last, Limit: 100}}})
}

// run reads frames until the device's sends are acknowledged and it has
// every message up to total.
func (in *inbox) run(t testing.TB, sends int, total int64) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("user %s last=%d own=%v trace:\n%s", in.d.user.ID, in.last, in.own, strings.Join(in.trace, "\n"))
		}
	}()
	for len(in.acked) < sends || in.last < total || in.syncRef != 0 {
		f := in.d.Next(t)
		in.trace = append(in.trace, time.Now().Format("15:04:05.000")+" "+traceFrame(f))
		switch {
		case in.sent[f.GetRef()] != "":
			ack := f.GetSendAck()
			if ack == nil {
				t.Fatalf("send %s answered %v", in.sent[f.GetRef()], f)
			}
			id := in.sent[f.GetRef()]
			delete(in.sent, f.GetRef())
			in.acked[ack.GetSeq()] = ack.GetMsgId()
			switch seq := ack.GetSeq(); {
			case seq == in.last+1:
				in.take(t, seq, id, "SendAck")
			case seq > in.last:
				in.own[seq] = id
			case in.seen[seq] != id:
				// A Sync may return the device's own message before its
				// SendAck comes: the same message, not a second one.
				t.Fatalf("SendAck of %s at seq %d, where the device has %q", id, seq, in.seen[seq])
			}
		case f.GetPush() != nil:
			for _, msg := range f.GetPush().GetMessages() {
				if msg.GetConversationId() != in.conv {
					t.Fatalf("pushed %v of another conversation", msg)
				}
				in.take(t, msg.GetSeq(), msg.GetClientMsgId(), "Push")
			}
			in.d.Ack(t, in.conv, in.last)
		case f.GetNotify() != nil:
			if f.GetNotify().GetConversationId() != in.conv {
				t.Fatalf("Notify %v of another conversation", f.GetNotify())
			}
			if in.syncRef != 0 {
				in.again = true
			} else {
				in.sync(t)
			}
		case f.GetRef() == in.syncRef && f.GetSyncBatch() != nil:
			b := f.GetSyncBatch()
			for _, msg := range b.GetMessages() {
				if msg.GetSeq() <= in.last && in.seen[msg.GetSeq()] == msg.GetClientMsgId() && msg.GetSenderId() == in.d.user.ID {
					continue // its own, acknowledged after the Sync was sent
				}
				in.take(t, msg.GetSeq(), msg.GetClientMsgId(), "SyncBatch")
			}
			if in.last > 0 {
				in.d.Ack(t, in.conv, in.last)
			}
			in.syncRef = 0
			if b.GetHasMore() || in.again {
				in.again = false
				in.sync(t)
			}
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}
}

func traceFrame(f *starlingv1.StreamResponse) string {
	switch {
	case f.GetPush() != nil:
		return fmt.Sprint("push ", seqs(f.GetPush().GetMessages()))
	case f.GetSyncBatch() != nil:
		return fmt.Sprint("batch ", seqs(f.GetSyncBatch().GetMessages()), " more=", f.GetSyncBatch().GetHasMore(), " latest=", f.GetSyncBatch().GetLatestSeq())
	case f.GetSendAck() != nil:
		return fmt.Sprint("ack ", f.GetSendAck().GetSeq())
	case f.GetNotify() != nil:
		return fmt.Sprint("notify latest=", f.GetNotify().GetLatestSeq(), " delivered=", f.GetNotify().GetDeliveredSeq())
	}
	return f.String()
}
