package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// device is one bench client: a user's device and its Stream, on the raw
// generated stubs. It behaves as a minimal correct Starling client, so the
// server is loaded the way real apps load it: it acknowledges every Push
// (cumulative PushAck; never with --no-ack), pulls with Sync on Notify or on a gap until
// has_more is false, keeps its sends until their SendAck and sends them
// again with the same client_msg_id on a new stream, and hands all it
// receives to its receiver for the delivery check.
type device struct {
	e    *env
	idx  int // position in the run; also spreads latency recording over shards
	acct account
	recv *receiver
	node int        // its target slot: the --target its streams go to
	ns   *nodeStats // the counters of that slot
	pool *pool      // where its streams' connections come from
	slot int        // its stream's index in pool (which connection it shares)

	refs  atomic.Uint64 // frame refs, unique across the device's streams
	slots chan struct{} // free places in the window of sends awaiting SendAck

	mu      sync.Mutex
	cur     *session             // the newest stream, live or ended
	sess    *session             // the stream sends go to; nil between streams
	pending map[uint64]*outgoing // sends awaiting their SendAck, by ref

	nextMsg uint64 // the sender goroutine's message counter

	// Pull state, used only by the reader of the current stream (streams
	// of one device follow each other, never overlap) and reset with each:
	// the server's push/pull state is per stream too.
	syncs    map[string]*syncState // conversations with a Sync in flight
	syncRefs map[uint64]string     // Sync ref → conversation
	pulledAt map[string]int64      // latest_seq of a Notify already pulled for (see onNotify)

	welcomeAt atomic.Int64 // e.now() at the latest Welcome, in ns
}

// outgoing is a send awaiting its SendAck.
type outgoing struct {
	req  *starlingv1.StreamRequest
	at   time.Duration // e.now() when it was meant to go out
	sess *session      // the stream it was last written to
}

// session is one Stream of a device.
type session struct {
	stream  grpc.BidiStreamingClient[starlingv1.StreamRequest, starlingv1.StreamResponse]
	cancel  context.CancelFunc
	sendMu  sync.Mutex // gRPC streams allow one sender at a time
	welcome chan struct{}
	welcOne sync.Once
	done    chan struct{} // closed when the reader has stopped
	err     error         // why the reader stopped; read after done
}

// syncState is a pull in progress.
type syncState struct {
	after  int64 // the Sync in flight asks for seqs after this
	latest int64 // newest seq a Notify announced while it was in flight
}

// target is whom a device sends to: a user or a group.
type target struct{ user, group string }

// newDevice makes device idx of the run, for acct, with its streams on
// target slot node.
func (e *env) newDevice(idx int, acct account, node int) *device {
	return e.newDeviceOn(e.conns, idx, acct, node)
}

// newDeviceOn is newDevice with the device's connections taken from
// pools (one per target slot) rather than the run's usual ones.
func (e *env) newDeviceOn(pools []*pool, idx int, acct account, node int) *device {
	d := &device{
		e:       e,
		idx:     idx,
		acct:    acct,
		recv:    newReceiver(acct.Username),
		node:    node,
		ns:      e.nodes[node],
		pool:    pools[node],
		slot:    pools[node].place(),
		slots:   make(chan struct{}, e.cfg.Inflight),
		pending: make(map[uint64]*outgoing),
	}
	d.ns.devices.Add(1)
	for range e.cfg.Inflight {
		d.slots <- struct{}{}
	}
	return d
}

func (s *session) write(req *starlingv1.StreamRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(req)
}

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// connect opens a new stream on cc, authenticated by the token in its
// metadata, waits for its Welcome (at most --timeout) and sends again
// what earlier streams left unacknowledged. The stream lives until ctx
// ends or the device drops it.
func (d *device) connect(ctx context.Context, cc grpc.ClientConnInterface) error {
	sctx, cancel := context.WithCancel(withToken(ctx, d.acct.Token))
	s := &session{cancel: cancel, welcome: make(chan struct{}), done: make(chan struct{})}
	timer := time.AfterFunc(d.e.cfg.Timeout, cancel)
	// WaitForReady: a phone that reconnects waits for the network, it does
	// not fail at once while the TCP connection is being made.
	stream, err := starlingv1.NewChatServiceClient(cc).Stream(sctx, grpc.WaitForReady(true))
	if err != nil {
		timer.Stop()
		cancel()
		return fmt.Errorf("open stream of %s: %w", d.acct.Username, err)
	}
	s.stream = stream
	d.syncs = make(map[string]*syncState)
	d.syncRefs = make(map[uint64]string)
	d.pulledAt = make(map[string]int64)
	d.mu.Lock()
	d.cur = s
	d.mu.Unlock()
	d.e.wg.Go(func() { d.readLoop(s) })

	select {
	case <-s.welcome:
	case <-s.done:
	}
	if !timer.Stop() || s.ended() {
		cancel()
		<-s.done
		return fmt.Errorf("stream of %s: no Welcome: %w", d.acct.Username, s.err)
	}

	// Hand the stream to senders, and take over every send written to an
	// earlier one: under d.mu, so each send is either resent here or
	// written by its sender to this stream, never neither.
	d.mu.Lock()
	d.sess = s
	var resend []*outgoing
	for _, o := range d.pending {
		if o.sess != s {
			resend = append(resend, o)
		}
	}
	slices.SortFunc(resend, func(a, b *outgoing) int { return cmp.Compare(a.req.Ref, b.req.Ref) })
	for _, o := range resend {
		delete(d.pending, o.req.Ref)
		// A new frame, not an edit: a sender may still be writing the
		// old one to the dead stream.
		o.req = &starlingv1.StreamRequest{Ref: d.refs.Add(1), Frame: o.req.Frame}
		o.sess = s
		d.pending[o.req.Ref] = o
	}
	d.mu.Unlock()
	for _, o := range resend {
		d.e.c.resent.Add(1)
		if s.write(o.req) != nil {
			break // this stream is gone too; the next one resends
		}
	}
	return nil
}

// drop ends the device's stream, as a phone losing its network, and waits
// for its reader to stop.
func (d *device) drop() {
	d.mu.Lock()
	s := d.cur
	d.sess = nil
	d.mu.Unlock()
	if s != nil {
		s.cancel()
		<-s.done
	}
}

// supervise reopens the device's stream whenever it ends before ctx does
// (the server cut it as slow, say), as the client library would: the run
// then still checks that the device got everything, through its resync.
func (d *device) supervise(ctx context.Context) {
	for {
		d.mu.Lock()
		s := d.cur
		d.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		d.e.c.reconnects.Add(1)
		d.e.note("stream ended, reconnecting: " + status.Code(s.err).String())
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			cc, err := d.pool.conn(d.slot)
			if err == nil {
				err = d.connect(ctx, cc)
			}
			if err == nil {
				break
			}
			d.e.note("reconnect failed: " + status.Code(err).String())
		}
	}
}

// readLoop receives and handles the frames of s until it ends.
func (d *device) readLoop(s *session) {
	defer func() {
		d.mu.Lock()
		if d.sess == s {
			d.sess = nil
		}
		d.mu.Unlock()
		s.cancel()
		close(s.done)
	}()
	for {
		f, err := s.stream.Recv()
		if err != nil {
			s.err = err
			return
		}
		d.handle(s, f)
	}
}

func (d *device) handle(s *session, f *starlingv1.StreamResponse) {
	c := &d.e.c
	switch fr := f.Frame.(type) {
	case *starlingv1.StreamResponse_Welcome:
		d.e.heartbeat.Store(int64(fr.Welcome.GetHeartbeatInterval().AsDuration()))
		d.welcomeAt.Store(int64(d.e.now()))
		c.welcomes.Add(1)
		s.welcOne.Do(func() { close(s.welcome) })
	case *starlingv1.StreamResponse_Pong:
		c.pongs.Add(1)
	case *starlingv1.StreamResponse_SendAck:
		d.onSendAck(f.GetRef(), fr.SendAck)
	case *starlingv1.StreamResponse_Push:
		d.onPush(s, fr.Push)
	case *starlingv1.StreamResponse_Notify:
		d.onNotify(s, fr.Notify)
	case *starlingv1.StreamResponse_SyncBatch:
		d.onSyncBatch(s, f.GetRef(), fr.SyncBatch)
	case *starlingv1.StreamResponse_Error:
		d.onError(f.GetRef(), fr.Error)
	case *starlingv1.StreamResponse_Receipt:
		c.receipts.Add(1)
	case *starlingv1.StreamResponse_Event:
		// The bench reads no events (each member gets one: the group's
		// creation); acked so they hold no window slot.
		if ev := fr.Event; ev.GetSeq() > 0 {
			_ = s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{ConversationId: ev.GetConversationId(), Seq: ev.GetSeq()}}})
		}
	case *starlingv1.StreamResponse_Disconnect:
		c.disconnects.Add(1)
		d.e.note("disconnect: " + fr.Disconnect.GetReason().String())
	}
}

// send writes one message to to. at is when it was meant to go out (the
// rate schedule), so latency includes any wait for a window slot: no
// coordinated omission. The caller holds a slot.
func (d *device) send(to target, at time.Duration) {
	n := d.nextMsg
	d.nextMsg++
	m := &starlingv1.Send{
		ClientMsgId: fmt.Sprintf("%s-%d-%d", d.e.runID, d.idx, n),
		Content:     &starlingv1.Content{Text: d.e.text, Data: stamp(at, d.node)},
	}
	if to.group != "" {
		m.To = &starlingv1.Send_GroupId{GroupId: to.group}
	} else {
		m.To = &starlingv1.Send_UserId{UserId: to.user}
	}
	req := &starlingv1.StreamRequest{Ref: d.refs.Add(1), Frame: &starlingv1.StreamRequest_Send{Send: m}}
	d.mu.Lock()
	s := d.sess
	d.pending[req.Ref] = &outgoing{req: req, at: at, sess: s}
	d.mu.Unlock()
	d.e.c.sent.Add(1)
	d.ns.sent.Add(1)
	if s != nil {
		_ = s.write(req) // on error the stream is gone and the next one resends
	}
}

// stamp encodes, for the content, a send time (since the run's base) and
// the sender's target slot: each receiver then classes the delivery as
// same-node or cross-node without a shared table of who is where.
func stamp(at time.Duration, node int) []byte {
	b := make([]byte, 10)
	binary.BigEndian.PutUint64(b, uint64(at))
	binary.BigEndian.PutUint16(b[8:], uint16(node))
	return b
}

// unstamp decodes stamp; ok is false for content the bench did not send.
func unstamp(data []byte) (at time.Duration, node int, ok bool) {
	if len(data) < 10 {
		return 0, 0, false
	}
	return time.Duration(binary.BigEndian.Uint64(data)), int(binary.BigEndian.Uint16(data[8:])), true
}

// inflight is how many sends await their SendAck.
func (d *device) inflight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

func (d *device) release() {
	select {
	case d.slots <- struct{}{}:
	default:
	}
}

func (d *device) onSendAck(ref uint64, a *starlingv1.SendAck) {
	d.mu.Lock()
	o := d.pending[ref]
	delete(d.pending, ref)
	d.mu.Unlock()
	if o == nil {
		d.e.note("SendAck for a ref with no send")
		return
	}
	d.release()
	e := d.e
	e.lat.ack.record(d.idx, e.now()-o.at)
	e.c.acked.Add(1)
	d.ns.acked.Add(1)
	if a.GetDuplicate() {
		e.c.dupAcks.Add(1)
	}
	conv := a.GetConversationId()
	e.c.expected.Add(int64(e.check.acked(conv, a.GetSeq(), a.GetMsgId(), d.recv)))
	d.recv.own(conv, a.GetSeq(), a.GetMsgId())
}

func (d *device) onPush(s *session, p *starlingv1.Push) {
	d.e.c.pushFrames.Add(1)
	d.ns.pushFrames.Add(1)
	var buf [4]string
	convs := buf[:0]
	for _, m := range p.GetMessages() {
		d.accept(s, m, viaPush)
		if !slices.Contains(convs, m.GetConversationId()) {
			convs = append(convs, m.GetConversationId())
		}
	}
	for _, conv := range convs {
		d.ack(s, conv)
	}
}

// ack acknowledges everything of conv the device has, cumulatively; with
// --no-ack it does nothing, so the device's push window stays full and the
// server must announce (Notify) rather than push.
func (d *device) ack(s *session, conv string) {
	if d.e.cfg.NoAck {
		return
	}
	if last := d.recv.last(conv); last > 0 {
		_ = s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_PushAck{PushAck: &starlingv1.PushAck{ConversationId: conv, Seq: last}}})
		if d.e.cfg.Read {
			d.e.c.markReads.Add(1)
			_ = s.write(&starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: conv, Seq: last}}})
		}
	}
}

// accept hands one arriving message to the receiver and records its
// latency when it is new and someone else's.
func (d *device) accept(s *session, m *starlingv1.Message, via source) {
	conv := m.GetConversationId()
	own := m.GetSenderId() == d.acct.UserID
	system := m.GetSenderId() == "" // a group change's system message (setup's AddMembers)
	if system {
		d.e.check.system(conv, m.GetSeq(), m.GetMsgId())
	}
	switch d.recv.deliver(conv, m.GetSeq(), m.GetMsgId(), own, via) {
	case accepted:
		if own || system {
			return
		}
		d.delivered(m, via)
	case gap:
		// Something before m is missing: pull from what the device has
		// (m itself comes again in the pull). A pull already in flight is
		// told to go on up to m.
		if via != viaPush {
			return
		}
		d.recv.pulledOverGap(conv)
		if st := d.syncs[conv]; st != nil {
			st.latest = max(st.latest, m.GetSeq())
			return
		}
		d.startSync(s, conv, d.recv.last(conv), m.GetSeq())
	}
}

// delivered counts a new message of someone else's and records its
// latency: send→push overall and by node class, or send→sync.
func (d *device) delivered(m *starlingv1.Message, via source) {
	e := d.e
	e.c.delivered.Add(1)
	d.ns.delivered.Add(1)
	at, from, ok := unstamp(m.GetContent().GetData())
	if via == viaSync {
		e.c.viaSync.Add(1)
		d.ns.viaSync.Add(1)
		if ok {
			e.lat.sync.record(d.idx, e.now()-at)
		}
		return
	}
	e.c.viaPush.Add(1)
	d.ns.viaPush.Add(1)
	if ok {
		lat := e.now() - at
		e.lat.push.record(d.idx, lat)
		e.lat.pushByNode.record(d.idx, from, d.node, lat)
	}
}

func (d *device) onNotify(s *session, n *starlingv1.Notify) {
	conv, latest := n.GetConversationId(), n.GetLatestSeq()
	if strings.HasPrefix(conv, "evt:") {
		return // the user's events: not the bench's business (see handle)
	}
	d.e.c.notifies.Add(1)
	if st := d.syncs[conv]; st != nil {
		st.latest = max(st.latest, latest)
		return
	}
	last := d.recv.last(conv)
	switch {
	case last < latest:
		d.startSync(s, conv, last, latest)
	case d.pulledAt[conv] != latest:
		// The device has everything (the server's cursor lagged when the
		// previous stream ended), yet pushes of the conversation stay
		// stopped until a Sync of this stream reaches the end: as the
		// Notify doc says, one Sync from the device's last seq, whose
		// empty answer resumes pushes. Once per latest_seq, so it cannot
		// loop.
		d.e.c.staleNotifies.Add(1)
		d.pulledAt[conv] = latest
		d.startSync(s, conv, last, latest)
	default:
		d.e.c.staleNotifies.Add(1)
	}
}

func (d *device) startSync(s *session, conv string, after, latest int64) {
	ref := d.refs.Add(1)
	d.syncs[conv] = &syncState{after: after, latest: latest}
	d.syncRefs[ref] = conv
	d.e.c.syncs.Add(1)
	_ = s.write(&starlingv1.StreamRequest{Ref: ref, Frame: &starlingv1.StreamRequest_Sync{Sync: &starlingv1.Sync{
		ConversationId: conv, AfterSeq: after, Limit: int32(d.e.cfg.SyncLimit),
	}}})
}

func (d *device) onSyncBatch(s *session, ref uint64, b *starlingv1.SyncBatch) {
	conv, ok := d.syncRefs[ref]
	delete(d.syncRefs, ref)
	st := d.syncs[conv]
	if !ok || st == nil || conv != b.GetConversationId() {
		d.recv.note("SyncBatch ref %d for %s answers no Sync in flight", ref, b.GetConversationId())
		return
	}
	msgs := b.GetMessages()
	before := d.recv.last(conv)
	for i, m := range msgs {
		if want := st.after + 1 + int64(i); m.GetSeq() != want {
			d.recv.note("%s: Sync after %d returned seq %d where %d was due", conv, st.after, m.GetSeq(), want)
			break
		}
	}
	for _, m := range msgs {
		d.accept(s, m, viaSync)
	}
	d.ack(s, conv)
	delete(d.syncs, conv)
	last := d.recv.last(conv)
	switch {
	case b.GetHasMore() && len(msgs) > 0:
		// Page on from where this batch ended.
		d.startSync(s, conv, max(st.after, msgs[len(msgs)-1].GetSeq()), st.latest)
	case b.GetHasMore():
		d.recv.note("%s: empty SyncBatch after %d says has_more", conv, st.after)
	case st.latest > last && last > before:
		// More was announced while this pull ran; pull on, as long as
		// pulling makes progress (a server that skips seqs must not make
		// the device loop).
		d.startSync(s, conv, last, st.latest)
	}
}

func (d *device) onError(ref uint64, er *starlingv1.Error) {
	msg := codes.Code(er.GetCode()).String() + ": " + er.GetMessage()
	d.mu.Lock()
	o := d.pending[ref]
	delete(d.pending, ref)
	d.mu.Unlock()
	if o != nil {
		d.release()
		d.e.c.sendErrors.Add(1)
		d.e.note("send refused: " + msg)
		return
	}
	d.e.c.frameErrors.Add(1)
	if conv, ok := d.syncRefs[ref]; ok {
		delete(d.syncRefs, ref)
		delete(d.syncs, conv)
		d.e.note("sync refused: " + msg)
		return
	}
	d.e.note("error frame: " + msg)
}

// ping writes a heartbeat on the live stream, if any.
func (d *device) ping() {
	d.mu.Lock()
	s := d.sess
	d.mu.Unlock()
	if s != nil {
		_ = s.write(&starlingv1.StreamRequest{Ref: d.refs.Add(1), Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	}
}

// sendLoop sends to to until ctx ends: at rate messages/s on a fixed
// schedule, or, with rate 0, whenever the window has a free slot.
func (d *device) sendLoop(ctx context.Context, to target, rate float64, phase time.Duration) {
	e := d.e
	if rate <= 0 {
		for {
			select {
			case <-d.slots:
			case <-ctx.Done():
				return
			}
			d.send(to, e.now())
		}
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := e.now() + phase
	timer := time.NewTimer(0)
	defer timer.Stop()
	for n := int64(0); ; n++ {
		due := start + time.Duration(n)*interval
		if wait := due - e.now(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-d.slots:
		case <-ctx.Done():
			return
		}
		d.send(to, due)
	}
}
