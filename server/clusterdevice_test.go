package server_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

// clusterDevice is one device of a cluster test, on the raw generated
// stubs: it holds a Stream to one node, and when the stream breaks (a
// Disconnect, a crash, any stream error) it connects again, to the next
// node of its list, after a short backoff, until stopped. It is a strict
// client: per conversation it takes messages only in seq order, and fails
// the test on
//
//   - a duplicate: a seq it was given twice (a message it sent itself and
//     learnt from its SendAck may come again, by a Sync or on a new stream:
//     that is not a duplicate);
//   - a gap: a Push whose seq is not the next one it lacks, or a SyncBatch
//     that does not fill from the Sync's after_seq up to its end (up to
//     latest_seq when has_more is false);
//   - an Error frame it has no reason to get, or a Disconnect that says not
//     to reconnect.
//
// It answers what the protocol asks: a PushAck after every Push and
// SyncBatch; a Sync{after_seq: the highest seq it holds with nothing
// missing below} for every Notify, one Sync per conversation at a time,
// continued while has_more. A device that sends gives each message a
// unique client_msg_id; a send not acknowledged when its stream breaks (or
// refused UNAVAILABLE) goes again, with the same client_msg_id, on the
// next stream.
type clusterDevice struct {
	t      *testing.T
	Name   string // user/device, for messages
	User   servertest.User
	device string
	token  string
	nodes  []*servertest.ClusterNode

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cur      *devStream // nil while (re)connecting
	streams  uint64     // streams opened
	refs     uint64
	convs    map[string]*devConv
	outbox   []*outgoing // sends not acknowledged yet, oldest first
	sent     int         // messages made by Send
	acked    []AckedMsg
	resent   int // Send frames written again for a message
	welcomes []string
	ended    string // why the last stream ended
}

// devStream is one stream of a device.
type devStream struct {
	id   uint64
	node string
	cs   grpc.BidiStreamingClient[starlingv1.StreamRequest, starlingv1.StreamResponse]

	sendMu sync.Mutex // gRPC allows one Send at a time

	// Under clusterDevice.mu:
	sends map[uint64]*outgoing // Send frames awaiting their answer, by ref
	syncs map[uint64]syncReq   // Syncs awaiting their answer, by ref
}

type syncReq struct {
	conv  string
	after int64
	// beyond are the seqs past after the device held when it asked: got
	// across a gap (reported then) or its own. The batch repeats them;
	// that is not a duplicate.
	beyond map[int64]bool
}

// devConv is what a device holds of one conversation.
type devConv struct {
	last int64                         // highest seq held with nothing missing below
	top  int64                         // highest seq held; above last after a gap
	gap  bool                          // a gap was reported, not filled yet (one report per gap)
	msgs map[int64]*starlingv1.Message // every seq held
	via  map[int64]string              // how each came: push, sync, ack (own SendAck)
	// For the current stream:
	syncing  bool  // a Sync is in flight
	again    bool  // a Notify came while it was: sync again after it
	retry    bool  // a Sync was refused UNAVAILABLE: sync again
	pushAckd int64 // highest seq acknowledged
}

// outgoing is one message to send, until its SendAck.
type outgoing struct {
	clientID        string
	toUser, toGroup string
	stream          uint64 // the stream it was last sent on (0: none yet)
	tries           int    // Send frames written for it
	done            bool
}

// AckedMsg is a message a device sent and got a SendAck for.
type AckedMsg struct {
	Conv        string
	Seq         int64
	MsgID       int64
	ClientMsgID string
	Duplicate   bool
	At          time.Time
}

const (
	devReconnectBackoff = 50 * time.Millisecond
	devResendEvery      = 50 * time.Millisecond // sends refused UNAVAILABLE, Syncs refused
	devMaxInflight      = 100                   // under the server's 256 sends in flight
	devSyncLimit        = 20                    // small, so that has_more is exercised
)

// newClusterDevice logs device in as user (through nodes[0]) and connects
// it to nodes[0]; it moves along nodes when a stream breaks. It stops at
// the end of the test, before the cluster does.
func newClusterDevice(t *testing.T, user servertest.User, device string, nodes ...*servertest.ClusterNode) *clusterDevice {
	t.Helper()
	d := &clusterDevice{
		t:      t,
		Name:   user.Username + "/" + device,
		User:   user,
		device: device,
		token:  nodes[0].Login(t, user, device),
		nodes:  nodes,
		convs:  make(map[string]*devConv),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(2)
	go d.run()
	go d.resendLoop()
	t.Cleanup(d.Stop)
	return d
}

// Stop closes the device's stream and waits for its goroutines.
func (d *clusterDevice) Stop() {
	d.cancel()
	d.wg.Wait()
}

func (d *clusterDevice) fail(format string, args ...any) {
	d.t.Errorf("%s: %s", d.Name, fmt.Sprintf(format, args...))
}

// run keeps a stream open, moving to the next node after each break.
func (d *clusterDevice) run() {
	defer d.wg.Done()
	backoff := time.NewTimer(0)
	defer backoff.Stop()
	for i := 0; ; i++ {
		select {
		case <-d.ctx.Done():
			return
		case <-backoff.C:
		}
		node := d.nodes[i%len(d.nodes)]
		err := d.session(node)
		d.mu.Lock()
		d.cur = nil
		d.ended = fmt.Sprintf("%s: %v", node.Name, err)
		d.mu.Unlock()
		backoff.Reset(devReconnectBackoff)
	}
}

// session runs one stream on node until it breaks.
func (d *clusterDevice) session(node *servertest.ClusterNode) error {
	cc, err := grpc.NewClient(node.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(servertest.WithToken(d.ctx, d.token))
	defer cancel()
	cs, err := starlingv1.NewChatServiceClient(cc).Stream(ctx)
	if err != nil {
		return err
	}
	f, err := cs.Recv()
	if err != nil {
		return err
	}
	w := f.GetWelcome()
	if w == nil {
		// A node that cannot take the stream now (shutting down, say)
		// refuses it with a fatal Error: try the next.
		return fmt.Errorf("first frame %v", f)
	}
	d.mu.Lock()
	d.streams++
	st := &devStream{id: d.streams, node: w.GetNodeId(), cs: cs, sends: make(map[uint64]*outgoing), syncs: make(map[uint64]syncReq)}
	d.cur = st
	d.welcomes = append(d.welcomes, w.GetNodeId())
	for _, c := range d.convs {
		c.syncing, c.again, c.retry, c.pushAckd = false, false, false, 0
	}
	d.mu.Unlock()
	d.flush() // what was not acknowledged on the last stream
	for {
		f, err := cs.Recv()
		if err != nil {
			return err
		}
		st.send(d.handle(st, f))
	}
}

func (st *devStream) send(frames []*starlingv1.StreamRequest) {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	for _, f := range frames {
		if st.cs.Send(f) != nil {
			return // the stream broke: Recv says so, and the device reconnects
		}
	}
}

// resendLoop sends again what was refused UNAVAILABLE (sends and Syncs).
func (d *clusterDevice) resendLoop() {
	defer d.wg.Done()
	t := time.NewTicker(devResendEvery)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.flush()
		}
	}
}

// Send queues a message to a user or a group and sends it when the device
// is connected; it returns its client_msg_id.
func (d *clusterDevice) Send(toUser, toGroup string) string {
	d.mu.Lock()
	d.sent++
	o := &outgoing{clientID: fmt.Sprintf("%s-%d", d.Name, d.sent), toUser: toUser, toGroup: toGroup}
	d.outbox = append(d.outbox, o)
	d.mu.Unlock()
	d.flush()
	return o.clientID
}

// flush sends, on the current stream, every queued message not in flight
// on it (up to devMaxInflight), and the Syncs that were refused.
func (d *clusterDevice) flush() {
	d.mu.Lock()
	st := d.cur
	if st == nil {
		d.mu.Unlock()
		return
	}
	var out []*starlingv1.StreamRequest
	inflight := len(st.sends)
	for _, o := range d.outbox {
		if inflight >= devMaxInflight {
			break
		}
		if o.stream == st.id {
			continue
		}
		if o.tries > 0 {
			d.resent++
		}
		o.tries++
		o.stream = st.id
		d.refs++
		st.sends[d.refs] = o
		inflight++
		send := &starlingv1.Send{ClientMsgId: o.clientID, Content: &starlingv1.Content{Text: "from " + d.Name}}
		if o.toGroup != "" {
			send.To = &starlingv1.Send_GroupId{GroupId: o.toGroup}
		} else {
			send.To = &starlingv1.Send_UserId{UserId: o.toUser}
		}
		out = append(out, &starlingv1.StreamRequest{Ref: d.refs, Frame: &starlingv1.StreamRequest_Send{Send: send}})
	}
	for id, c := range d.convs {
		if c.retry && !c.syncing {
			c.retry = false
			out = append(out, d.syncLocked(st, id, c))
		}
	}
	d.mu.Unlock()
	st.send(out)
}

// syncLocked starts a Sync of conv after the last seq held; d.mu is held.
func (d *clusterDevice) syncLocked(st *devStream, conv string, c *devConv) *starlingv1.StreamRequest {
	c.syncing = true
	d.refs++
	req := syncReq{conv: conv, after: c.last}
	for seq := range c.msgs {
		if seq > c.last {
			if req.beyond == nil {
				req.beyond = make(map[int64]bool)
			}
			req.beyond[seq] = true
		}
	}
	st.syncs[d.refs] = req
	return &starlingv1.StreamRequest{Ref: d.refs, Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{
		ConversationId: conv, AfterSeq: c.last, Limit: devSyncLimit,
	}}}
}

func (d *clusterDevice) conv(id string) *devConv {
	c := d.convs[id]
	if c == nil {
		c = &devConv{msgs: make(map[int64]*starlingv1.Message), via: make(map[int64]string)}
		d.convs[id] = c
	}
	return c
}

// handle takes one frame of stream st and returns the frames to answer.
func (d *clusterDevice) handle(st *devStream, f *starlingv1.StreamResponse) []*starlingv1.StreamRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*starlingv1.StreamRequest
	switch fr := f.Frame.(type) {
	case *starlingv1.StreamResponse_Push:
		var touched []string
		for _, m := range fr.Push.GetMessages() {
			c := d.conv(m.GetConversationId())
			if seq := m.GetSeq(); seq > c.last+1 && !(d.own(m) && c.msgs[seq] != nil) && !c.gap {
				c.gap = true
				d.fail("gap: pushed %s seq %d (from node %s) while holding up to %d", m.GetConversationId(), m.GetSeq(), st.node, c.last)
			}
			d.take(c, m, "push", false)
			if !slices.Contains(touched, m.GetConversationId()) {
				touched = append(touched, m.GetConversationId())
			}
		}
		for _, conv := range touched {
			out = append(out, d.pushAckLocked(conv)...)
		}
	case *starlingv1.StreamResponse_Notify:
		conv := fr.Notify.GetConversationId()
		if storage.IsEventsConversation(conv) {
			break // the group's creation event: not what this device checks
		}
		c := d.conv(conv)
		if c.syncing {
			c.again = true
			break
		}
		out = append(out, d.syncLocked(st, conv, c))
	case *starlingv1.StreamResponse_SyncBatch:
		req, ok := st.syncs[f.GetRef()]
		if !ok {
			d.fail("SyncBatch for unknown ref %d", f.GetRef())
			break
		}
		delete(st.syncs, f.GetRef())
		out = append(out, d.syncBatchLocked(st, req, fr.SyncBatch)...)
	case *starlingv1.StreamResponse_SendAck:
		o := st.sends[f.GetRef()]
		if o == nil {
			d.fail("SendAck for unknown ref %d", f.GetRef())
			break
		}
		delete(st.sends, f.GetRef())
		d.ackLocked(o, fr.SendAck)
	case *starlingv1.StreamResponse_Error:
		d.errorLocked(st, f.GetRef(), fr.Error)
	case *starlingv1.StreamResponse_Disconnect:
		if !fr.Disconnect.GetReconnect() {
			d.fail("Disconnect %v from %s without reconnect", fr.Disconnect, st.node)
		}
	case *starlingv1.StreamResponse_Pong:
	case *starlingv1.StreamResponse_Event:
		// The group's creation event: acknowledged, not checked here.
		out = append(out, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{
			ConversationId: fr.Event.GetConversationId(), Seq: fr.Event.GetSeq()}}})
	case *starlingv1.StreamResponse_Receipt, *starlingv1.StreamResponse_Typing:
		// Receipts of the peers' acks; nothing to check here.
	default:
		d.fail("unexpected frame %v", f)
	}
	return out
}

// own reports whether m is a message this device sent.
func (d *clusterDevice) own(m *starlingv1.Message) bool {
	return m.GetSenderId() == d.User.ID && m.GetSenderDeviceId() == d.device
}

// take records m, got by via; d.mu is held. The caller checked its place
// in the order; again says that m may be held already (see syncReq).
func (d *clusterDevice) take(c *devConv, m *starlingv1.Message, via string, again bool) {
	seq := m.GetSeq()
	if prev, ok := c.msgs[seq]; ok {
		switch {
		case prev.GetMsgId() != m.GetMsgId():
			d.fail("%s seq %d is msg %d by %s and msg %d by %s", m.GetConversationId(), seq, prev.GetMsgId(), c.via[seq], m.GetMsgId(), via)
		case !d.own(m) && !again:
			d.fail("duplicate: %s seq %d by %s, already held (by %s)", m.GetConversationId(), seq, via, c.via[seq])
		}
		return // a message of its own, known from its SendAck
	}
	c.msgs[seq], c.via[seq] = m, via
	c.top = max(c.top, seq)
	for c.msgs[c.last+1] != nil {
		c.last++
	}
	if c.last == c.top {
		c.gap = false
	}
}

// pushAckLocked acknowledges what the device holds of conv, if it moved.
func (d *clusterDevice) pushAckLocked(conv string) []*starlingv1.StreamRequest {
	c := d.convs[conv]
	if c.last <= c.pushAckd {
		return nil
	}
	c.pushAckd = c.last
	return []*starlingv1.StreamRequest{{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{ConversationId: conv, Seq: c.last}}}}
}

// syncBatchLocked checks a SyncBatch against the Sync it answers: every
// seq from after_seq on, none missing, up to latest_seq when it is the
// last batch. Then it goes on: the next batch, or again if a Notify came
// meanwhile.
func (d *clusterDevice) syncBatchLocked(st *devStream, req syncReq, b *starlingv1.SyncBatch) []*starlingv1.StreamRequest {
	c := d.conv(req.conv)
	c.syncing = false
	next := req.after + 1
	for _, m := range b.GetMessages() {
		if m.GetConversationId() != req.conv {
			d.fail("Sync of %s answered with a message of %s", req.conv, m.GetConversationId())
			continue
		}
		if m.GetSeq() != next {
			d.fail("gap: Sync of %s after %d from %s: seq %d where %d was due", req.conv, req.after, st.node, m.GetSeq(), next)
		}
		next = m.GetSeq() + 1
		d.take(c, m, "sync", req.beyond[m.GetSeq()])
	}
	if !b.GetHasMore() && next-1 < b.GetLatestSeq() {
		d.fail("gap: last SyncBatch of %s after %d from %s ends at %d, latest_seq %d", req.conv, req.after, st.node, next-1, b.GetLatestSeq())
	}
	out := d.pushAckLocked(req.conv)
	if b.GetHasMore() || c.again {
		c.again = false
		out = append(out, d.syncLocked(st, req.conv, c))
	}
	return out
}

// ackLocked records a SendAck of o.
func (d *clusterDevice) ackLocked(o *outgoing, a *starlingv1.SendAck) {
	if o.done {
		d.fail("second SendAck for %s", o.clientID)
		return
	}
	o.done = true
	d.outbox = slices.DeleteFunc(d.outbox, func(x *outgoing) bool { return x == o })
	d.acked = append(d.acked, AckedMsg{Conv: a.GetConversationId(), Seq: a.GetSeq(), MsgID: a.GetMsgId(), ClientMsgID: o.clientID, Duplicate: a.GetDuplicate(), At: time.Now()})
	m := &starlingv1.Message{
		MsgId: a.GetMsgId(), ConversationId: a.GetConversationId(), Seq: a.GetSeq(),
		SenderId: d.User.ID, SenderDeviceId: d.device, ClientMsgId: o.clientID,
	}
	d.take(d.conv(a.GetConversationId()), m, "ack", false)
}

// errorLocked handles an Error frame: UNAVAILABLE (and RESOURCE_EXHAUSTED
// for a send) means try again; anything else is a failure.
func (d *clusterDevice) errorLocked(st *devStream, ref uint64, e *starlingv1.Error) {
	code := codes.Code(e.GetCode())
	if o := st.sends[ref]; o != nil {
		delete(st.sends, ref)
		if code == codes.Unavailable || code == codes.ResourceExhausted {
			o.stream = 0 // resendLoop sends it again
			return
		}
		d.fail("send %s refused: %v", o.clientID, e)
		return
	}
	if req, ok := st.syncs[ref]; ok {
		delete(st.syncs, ref)
		c := d.conv(req.conv)
		c.syncing = false
		if code == codes.Unavailable {
			c.retry = true
			return
		}
		d.fail("Sync of %s refused: %v", req.conv, e)
		return
	}
	if !e.GetFatal() || code != codes.Unavailable {
		d.fail("Error %v (ref %d) from %s", e, ref, st.node)
	}
}

// Acked returns the messages the device sent and got a SendAck for.
func (d *clusterDevice) Acked() []AckedMsg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.acked)
}

// Unacked is how many of the device's sends await their SendAck.
func (d *clusterDevice) Unacked() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.outbox)
}

// Received returns the seqs the device holds of conv, in order.
func (d *clusterDevice) Received(conv string) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.convs[conv]
	if c == nil {
		return nil
	}
	seqs := make([]int64, 0, len(c.msgs))
	for s := range c.msgs {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	return seqs
}

// Holds is the highest seq of conv the device holds with nothing missing
// below it.
func (d *clusterDevice) Holds(conv string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.convs[conv]; c != nil {
		return c.last
	}
	return 0
}

// Welcomes lists the node of every stream the device opened, in order.
func (d *clusterDevice) Welcomes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.welcomes)
}

// Node is the node the device is connected to now ("" while it is not).
func (d *clusterDevice) Node() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return ""
	}
	return d.cur.node
}

// where says where the device is, for messages: its node, or why its last
// stream ended.
func (d *clusterDevice) where() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return "not connected; last stream: " + d.ended
	}
	return "on " + d.cur.node
}

// deviceStats counts what a device did.
type deviceStats struct {
	streams    int // streams opened
	resent     int // Send frames written again for a message
	duplicates int // SendAcks saying duplicate
	pushed     int // messages received by push
	synced     int // messages received by Sync
}

func (d *clusterDevice) stats() deviceStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := deviceStats{streams: int(d.streams), resent: d.resent}
	for _, a := range d.acked {
		if a.Duplicate {
			s.duplicates++
		}
	}
	for _, c := range d.convs {
		for _, via := range c.via {
			switch via {
			case "push":
				s.pushed++
			case "sync":
				s.synced++
			}
		}
	}
	return s
}

// clusterConv is a conversation of a test and the users in it.
type clusterConv struct {
	ID      string
	Members []servertest.User
}

func c2cConv(a, b servertest.User) clusterConv {
	lo, hi := min(a.ID, b.ID), max(a.ID, b.ID)
	return clusterConv{ID: "c2c:" + lo + ":" + hi, Members: []servertest.User{a, b}}
}

func (c clusterConv) has(u servertest.User) bool {
	return slices.ContainsFunc(c.Members, func(m servertest.User) bool { return m.ID == u.ID })
}

// ackedByConv gathers the SendAcks of every device by conversation.
func ackedByConv(devices []*clusterDevice) map[string][]AckedMsg {
	out := make(map[string][]AckedMsg)
	for _, d := range devices {
		for _, a := range d.Acked() {
			out[a.Conv] = append(out[a.Conv], a)
		}
	}
	return out
}

// waitDelivered waits, up to timeout, until no device has a send awaiting
// its SendAck and every device holds every acknowledged message of every
// conversation its user is in; it returns how long that took.
func waitDelivered(t *testing.T, timeout time.Duration, devices []*clusterDevice, convs []clusterConv) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		missing := deliveryMissing(devices, convs)
		if missing == "" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered within %v: %s", timeout, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliveryMissing says what is not delivered yet ("" when nothing).
func deliveryMissing(devices []*clusterDevice, convs []clusterConv) string {
	var missing []string
	for _, d := range devices {
		if n := d.Unacked(); n > 0 {
			missing = append(missing, fmt.Sprintf("%s awaits %d SendAcks (%s)", d.Name, n, d.where()))
		}
	}
	acked := ackedByConv(devices)
	for _, c := range convs {
		var top int64
		for _, a := range acked[c.ID] {
			top = max(top, a.Seq)
		}
		for _, d := range devices {
			if c.has(d.User) {
				if h := d.Holds(c.ID); h < top {
					missing = append(missing, fmt.Sprintf("%s holds %s up to %d of %d (%s)", d.Name, c.ID, h, top, d.where()))
				}
			}
		}
	}
	return strings.Join(missing, "; ")
}

// checkDelivered is the final check, with the devices stopped: every
// message of every conversation is in the database (read back through
// node) exactly as its sender's SendAck said, the database holds nothing
// else, and every device of every member holds each one, once. It returns
// how many messages were acknowledged.
func checkDelivered(t *testing.T, node *servertest.ClusterNode, devices []*clusterDevice, convs []clusterConv) int {
	t.Helper()
	acked := ackedByConv(devices)
	total := 0
	for _, c := range convs {
		var reader *clusterDevice
		for _, d := range devices {
			if c.has(d.User) {
				reader = d
				break
			}
		}
		stored := readHistory(t, node, reader.token, c.ID)
		for i, m := range stored {
			if m.GetSeq() != int64(i+1) {
				t.Fatalf("%s: stored seqs are not 1..%d: %v at %d", c.ID, len(stored), m.GetSeq(), i)
			}
		}
		bySeq := make(map[int64]AckedMsg)
		byClientID := make(map[string]AckedMsg)
		for _, a := range acked[c.ID] {
			if prev, ok := byClientID[a.ClientMsgID]; ok {
				t.Errorf("%s: %s acknowledged twice (seq %d, %d)", c.ID, a.ClientMsgID, prev.Seq, a.Seq)
			}
			byClientID[a.ClientMsgID] = a
			if prev, ok := bySeq[a.Seq]; ok {
				t.Errorf("%s: seq %d acknowledged for %s and %s", c.ID, a.Seq, prev.ClientMsgID, a.ClientMsgID)
			}
			bySeq[a.Seq] = a
			if a.Seq < 1 || a.Seq > int64(len(stored)) {
				t.Errorf("%s: %s acknowledged at seq %d, not stored (%d stored)", c.ID, a.ClientMsgID, a.Seq, len(stored))
				continue
			}
			if m := stored[a.Seq-1]; m.GetMsgId() != a.MsgID || m.GetClientMsgId() != a.ClientMsgID {
				t.Errorf("%s seq %d: acknowledged as msg %d (%s), stored as msg %d (%s)", c.ID, a.Seq, a.MsgID, a.ClientMsgID, m.GetMsgId(), m.GetClientMsgId())
			}
		}
		system := 0 // a group's creation: stored, sent by no device
		for _, m := range stored {
			if m.GetSenderId() == "" {
				system++
			}
		}
		if len(bySeq) != len(stored)-system {
			t.Errorf("%s: %d messages stored (%d system), %d acknowledged", c.ID, len(stored), system, len(bySeq))
		}
		total += len(bySeq)
		for _, d := range devices {
			if !c.has(d.User) {
				if got := d.Received(c.ID); len(got) > 0 {
					t.Errorf("%s got %d messages of %s, which its user is not in", d.Name, len(got), c.ID)
				}
				continue
			}
			got := d.Received(c.ID)
			if len(got) != len(stored) || (len(got) > 0 && got[len(got)-1] != int64(len(got))) {
				t.Errorf("%s holds %d messages of %s (up to %d), want %d", d.Name, len(got), c.ID, d.Holds(c.ID), len(stored))
			}
			d.mu.Lock()
			for seq, m := range d.convs[c.ID].msgs {
				if seq <= int64(len(stored)) && stored[seq-1].GetMsgId() != m.GetMsgId() {
					t.Errorf("%s holds msg %d at %s seq %d; stored: msg %d", d.Name, m.GetMsgId(), c.ID, seq, stored[seq-1].GetMsgId())
				}
			}
			d.mu.Unlock()
		}
	}
	return total
}

// readHistory reads a whole conversation through node, oldest first.
func readHistory(t *testing.T, node *servertest.ClusterNode, token, conv string) []*starlingv1.Message {
	t.Helper()
	client := starlingv1.NewChatServiceClient(node.Dial(t))
	ctx := servertest.WithToken(t.Context(), token)
	var all []*starlingv1.Message
	before := int64(0)
	for {
		res, err := client.GetHistory(ctx, &starlingv1.GetHistoryRequest{ConversationId: conv, BeforeSeq: before, Limit: 500})
		if err != nil {
			t.Fatalf("history of %s through %s: %v", conv, node.Name, err)
		}
		all = append(res.GetMessages(), all...)
		if !res.GetHasMore() || len(res.GetMessages()) == 0 {
			break
		}
		before = res.GetMessages()[0].GetSeq()
	}
	sort.Slice(all, func(i, j int) bool { return all[i].GetSeq() < all[j].GetSeq() })
	return all
}
