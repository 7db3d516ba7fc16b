package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// The history checker judges a chaos run after the fact, the way Jepsen
// judges a database: the run records what every client did and saw, and
// what the server holds at the end, and checkHistory decides from that
// record alone whether Starling kept its promise. Nothing in it trusts the
// devices' own bookkeeping, so hand-made histories test it (history_test.go)
// and a saved history (--history out.jsonl) can be checked again.

// Event kinds.
const (
	evDevice  = "device"  // Device belongs to User
	evInvoke  = "invoke"  // Device starts sending ClientMsgID to Conv
	evOK      = "ok"      // the send was acknowledged as (Seq, MsgID)
	evFail    = "fail"    // the send was definitely refused (nothing stored)
	evUnknown = "unknown" // the send's fate is unknown (stream lost before its SendAck)
	evDeliver = "deliver" // Device's app was handed message (Conv, Seq, MsgID)
	evMember  = "member"  // User joined (Op "join") or left (Op "leave") Conv at Seq
	evStored  = "stored"  // read back at the end: Conv holds (Seq, MsgID) from Sender
	evSynced  = "synced"  // Device synced every conversation at the end
	evFault   = "fault"   // a fault injected (Op) or a node's recovery; Err: it did not recover
)

// event is one line of a history. Index orders them as the run recorded
// them.
type event struct {
	Index       int    `json:"i"`
	Time        int64  `json:"t,omitempty"` // unix ns
	Kind        string `json:"kind"`
	Device      string `json:"device,omitempty"`
	User        string `json:"user,omitempty"`
	Conv        string `json:"conv,omitempty"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
	Seq         int64  `json:"seq,omitempty"`
	MsgID       int64  `json:"msg_id,omitempty"`
	Sender      string `json:"sender,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Op          string `json:"op,omitempty"`
	Err         string `json:"err,omitempty"`
}

func (e event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s", e.Index, e.Kind)
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	add("device", e.Device)
	add("user", e.User)
	add("conv", e.Conv)
	add("cmid", e.ClientMsgID)
	if e.Seq != 0 {
		fmt.Fprintf(&b, " seq=%d", e.Seq)
	}
	if e.MsgID != 0 {
		fmt.Fprintf(&b, " msg=%d", e.MsgID)
	}
	add("sender", e.Sender)
	add("type", e.ContentType)
	add("op", e.Op)
	add("err", e.Err)
	return b.String()
}

// history records events from many goroutines, and streams them as JSON
// lines to w when w is not nil. Safe for concurrent use.
type history struct {
	mu     sync.Mutex
	events []event
	w      *bufio.Writer
	werr   error
}

func newHistory(w io.Writer) *history {
	h := &history{}
	if w != nil {
		h.w = bufio.NewWriter(w)
	}
	return h
}

// add records ev, giving it its index and time.
func (h *history) add(ev event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev.Index = len(h.events)
	ev.Time = time.Now().UnixNano()
	h.events = append(h.events, ev)
	if h.w != nil && h.werr == nil {
		line, err := json.Marshal(ev)
		if err == nil {
			line = append(line, '\n')
			_, err = h.w.Write(line)
		}
		h.werr = err
	}
}

// snapshot is a copy of the events so far.
func (h *history) snapshot() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// flush writes out what is buffered and reports the first write error.
func (h *history) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w != nil && h.werr == nil {
		h.werr = h.w.Flush()
	}
	if h.werr != nil {
		return fmt.Errorf("write history: %w", h.werr)
	}
	return nil
}

// numbered gives evs their indexes in order, as history.add does.
func numbered(evs []event) []event {
	for i := range evs {
		evs[i].Index = i
	}
	return evs
}

// readHistory parses a history written by history (JSON lines).
func readHistory(r io.Reader) ([]event, error) {
	var evs []event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("history line %d: %w", n, err)
		}
		evs = append(evs, ev)
	}
	return evs, sc.Err()
}

// Violation kinds: each is one way the promise can break.
const (
	vAckedLost     = "acked-not-stored"      // a SendAck for a message the server does not hold
	vAckMismatch   = "ack-mismatch"          // a SendAck naming another seq/msg than the stored one
	vFailedStored  = "failed-stored"         // a definitely refused send is stored
	vDedup         = "dedup"                 // one client_msg_id stored (or acked) as two messages
	vSeqGap        = "seq-gap"               // a conversation's stored seqs skip one
	vSeqDup        = "seq-dup"               // a seq stored twice
	vMsgIDDup      = "msgid-dup"             // a msg_id used by two stored messages
	vPhantom       = "phantom"               // a stored user message nobody sent
	vNotDelivered  = "not-delivered"         // an entitled device never got a stored message
	vDuplicate     = "duplicate-delivery"    // a device's app got a message twice
	vReorder       = "reorder"               // a device's app got a message after a later one
	vLeak          = "leak"                  // a device got a message outside its user's membership
	vAltered       = "altered"               // a device got a message that is not the stored one
	vUnsynced      = "unsynced"              // a device did not finish its final sync
	vNodeNotBack   = "node-not-back"         // a node did not come back after a fault
	maxViolationsV = 200                     // violations kept in a verdict
	aroundEvents   = 6                       // events printed around a violation
	groupChange    = "starling.group_change" // content type of a group's system messages
)

// violationKinds lists every kind, in the verdict table's order.
var violationKinds = []string{
	vAckedLost, vAckMismatch, vFailedStored, vDedup, vSeqGap, vSeqDup, vMsgIDDup,
	vPhantom, vNotDelivered, vDuplicate, vReorder, vLeak, vAltered, vUnsynced, vNodeNotBack,
}

// violation is one broken promise, with the events that show it.
type violation struct {
	Kind   string  `json:"kind"`
	Device string  `json:"device,omitempty"`
	Conv   string  `json:"conv,omitempty"`
	Seq    int64   `json:"seq,omitempty"`
	Detail string  `json:"detail"`
	Around []event `json:"around,omitempty"`
}

func (v violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: device=%q conv=%q seq=%d: %s", v.Kind, v.Device, v.Conv, v.Seq, v.Detail)
	for _, e := range v.Around {
		fmt.Fprintf(&b, "\n    %s", e)
	}
	return b.String()
}

// verdict is the outcome of checkHistory.
type verdict struct {
	OK         bool           `json:"ok"`
	Sends      int            `json:"sends"`   // distinct client_msg_ids invoked
	Acked      int            `json:"acked"`   // of them, acknowledged
	Failed     int            `json:"failed"`  // definitely refused
	Unknown    int            `json:"unknown"` // neither
	UnknownIn  int            `json:"unknown_stored"`
	Stored     int            `json:"stored"` // messages read back
	Deliveries int            `json:"deliveries"`
	Devices    int            `json:"devices"`
	Faults     int            `json:"faults"`
	Counts     map[string]int `json:"violations"` // per kind
	Violations []violation    `json:"problems,omitempty"`
}

// sendKey names one send: its sender's user, conversation and
// client_msg_id (the scope of the server's dedup).
type sendKey struct{ user, conv, cmid string }

// period is a membership period: the user may read seqs from..to.
type period struct{ from, to int64 }

// checkHistory judges a history. See the constants above for what it
// checks.
func checkHistory(evs []event) verdict {
	v := verdict{Counts: make(map[string]int)}
	c := &histCheck{evs: evs, v: &v}
	c.index()
	c.checkStored()
	c.checkSends()
	c.checkDeliveries()
	for _, e := range evs {
		if e.Kind == evFault {
			if e.Err != "" {
				c.violate(vNodeNotBack, "", "", 0, e.Index, "%s: %s", e.Op, e.Err)
			} else if e.Op != "recovered" {
				v.Faults++
			}
		}
	}
	v.OK = len(v.Counts) == 0
	return v
}

type histCheck struct {
	evs []event
	v   *verdict

	userOf  map[string]string              // device → user
	devices []string                       // in order of appearance
	stored  map[string]map[int64]event     // conv → seq → stored message
	convs   []string                       // conversations with stored messages, sorted
	byCMID  map[sendKey][]event            // stored user messages by send
	members map[string]map[string][]period // conv → user → periods
	synced  map[string]bool                // devices that finished the final sync
	near    map[convSeq][]int              // positions of each (conv, seq)'s events, for around
	faults  []int                          // positions of fault events, for around
}

func (c *histCheck) violate(kind, dev, conv string, seq int64, at int, format string, args ...any) {
	c.v.Counts[kind]++
	if len(c.v.Violations) >= maxViolationsV {
		return
	}
	c.v.Violations = append(c.v.Violations, violation{
		Kind: kind, Device: dev, Conv: conv, Seq: seq,
		Detail: fmt.Sprintf(format, args...),
		Around: c.around(conv, seq, at),
	})
}

// around picks the events that explain a violation: those of conv with
// a seq next to seq (or, with neither, the events next to position at),
// and the faults shortly before at; those of seq itself and nearest to
// at first, printed in history order.
func (c *histCheck) around(conv string, seq int64, at int) []event {
	if c.near == nil { // built on the first violation: most runs have none
		c.near = make(map[convSeq][]int)
		for i, e := range c.evs {
			if e.Conv != "" && e.Seq != 0 {
				k := convSeq{e.Conv, e.Seq}
				c.near[k] = append(c.near[k], i)
			}
			if e.Kind == evFault {
				c.faults = append(c.faults, i)
			}
		}
	}
	var pos []int
	if conv == "" && seq == 0 {
		for i := max(at-aroundEvents/2, 0); i <= at+aroundEvents/2 && i < len(c.evs); i++ {
			pos = append(pos, i)
		}
	} else {
		for s := seq - 1; s <= seq+1; s++ {
			pos = append(pos, c.near[convSeq{conv, s}]...)
		}
		for _, i := range c.faults {
			if at >= 0 && i <= at && i >= at-50 {
				pos = append(pos, i) // a fault just before it
			}
		}
	}
	ref := at
	if ref < 0 {
		ref = len(c.evs)
	}
	// The events of seq itself first (a fault has seq 0: after them), then
	// the nearest to ref.
	seqDist := func(i int) int64 {
		if c.evs[i].Seq == 0 {
			return 2
		}
		return max(c.evs[i].Seq-seq, seq-c.evs[i].Seq)
	}
	slices.SortStableFunc(pos, func(a, b int) int {
		return cmp.Or(cmp.Compare(seqDist(a), seqDist(b)), cmp.Compare(abs(a-ref), abs(b-ref)))
	})
	pos = pos[:min(len(pos), aroundEvents)]
	slices.Sort(pos)
	pos = slices.Compact(pos)
	out := make([]event, len(pos))
	for i, p := range pos {
		out[i] = c.evs[p]
	}
	return out
}

type convSeq struct {
	conv string
	seq  int64
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func (c *histCheck) index() {
	c.userOf = make(map[string]string)
	c.stored = make(map[string]map[int64]event)
	c.byCMID = make(map[sendKey][]event)
	c.members = make(map[string]map[string][]period)
	c.synced = make(map[string]bool)
	for _, e := range c.evs {
		switch e.Kind {
		case evDevice:
			if _, ok := c.userOf[e.Device]; !ok {
				c.devices = append(c.devices, e.Device)
			}
			c.userOf[e.Device] = e.User
		case evSynced:
			c.synced[e.Device] = true
		case evMember:
			m := c.members[e.Conv]
			if m == nil {
				m = make(map[string][]period)
				c.members[e.Conv] = m
			}
			ps := m[e.User]
			open := len(ps) > 0 && ps[len(ps)-1].to < 0
			switch e.Op {
			case "join":
				if !open { // joining twice changes nothing
					// The add's own message is the first the member reads.
					m[e.User] = append(ps, period{from: max(e.Seq, 1), to: -1})
				}
			case "leave":
				if open { // the removal is the last message they read
					ps[len(ps)-1].to = e.Seq
				}
			}
		case evStored:
			s := c.stored[e.Conv]
			if s == nil {
				s = make(map[int64]event)
				c.stored[e.Conv] = s
				c.convs = append(c.convs, e.Conv)
			}
			if old, ok := s[e.Seq]; ok {
				c.violate(vSeqDup, "", e.Conv, e.Seq, e.Index, "seq stored as msg %d and as msg %d", old.MsgID, e.MsgID)
				continue
			}
			s[e.Seq] = e
			if e.Sender != "" {
				k := sendKey{e.Sender, e.Conv, e.ClientMsgID}
				c.byCMID[k] = append(c.byCMID[k], e)
			}
		}
	}
	slices.Sort(c.convs)
	c.v.Devices = len(c.devices)
}

// checkStored: seqs gapless per conversation, msg_ids unique, one stored
// message per client_msg_id.
func (c *histCheck) checkStored() {
	ids := make(map[int64]event)
	for _, conv := range c.convs {
		s := c.stored[conv]
		seqs := make([]int64, 0, len(s))
		for seq := range s {
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		next := int64(1)
		for _, seq := range seqs {
			e := s[seq]
			c.v.Stored++
			if seq != next {
				c.violate(vSeqGap, "", conv, next, e.Index, "stored seqs jump from %d to %d", next-1, seq)
			}
			next = seq + 1
			if old, ok := ids[e.MsgID]; ok {
				c.violate(vMsgIDDup, "", conv, seq, e.Index, "msg_id %d is also %s seq %d", e.MsgID, old.Conv, old.Seq)
			} else {
				ids[e.MsgID] = e
			}
		}
	}
	for k, es := range c.byCMID {
		if len(es) > 1 {
			c.violate(vDedup, "", k.conv, es[1].Seq, es[1].Index, "client_msg_id %q of %s stored %d times (seqs %d and %d)", k.cmid, k.user, len(es), es[0].Seq, es[1].Seq)
		}
	}
}

// checkSends: every acked send stored as acked; no refused send stored;
// no stored user message without a send.
func (c *histCheck) checkSends() {
	type sendState struct {
		first           event
		ok              []event
		fails, unknowns int
	}
	sends := make(map[sendKey]*sendState)
	var order []sendKey
	for _, e := range c.evs {
		switch e.Kind {
		case evInvoke, evOK, evFail, evUnknown:
		default:
			continue
		}
		k := sendKey{c.userOf[e.Device], e.Conv, e.ClientMsgID}
		s := sends[k]
		if s == nil {
			s = &sendState{first: e}
			sends[k] = s
			order = append(order, k)
		}
		switch e.Kind {
		case evOK:
			s.ok = append(s.ok, e)
		case evFail:
			s.fails++
		case evUnknown:
			s.unknowns++
		}
	}
	c.v.Sends = len(order)
	for _, k := range order {
		s := sends[k]
		st := c.byCMID[k]
		switch {
		case len(s.ok) > 0:
			c.v.Acked++
			for _, ok := range s.ok {
				if ok.MsgID != s.ok[0].MsgID || ok.Seq != s.ok[0].Seq {
					c.violate(vDedup, ok.Device, k.conv, ok.Seq, ok.Index, "client_msg_id %q acked as seq %d msg %d and as seq %d msg %d", k.cmid, s.ok[0].Seq, s.ok[0].MsgID, ok.Seq, ok.MsgID)
				}
			}
			ok := s.ok[0]
			switch {
			case len(st) == 0:
				c.violate(vAckedLost, ok.Device, k.conv, ok.Seq, ok.Index, "acked client_msg_id %q (msg %d) is not stored", k.cmid, ok.MsgID)
			case st[0].Seq != ok.Seq || st[0].MsgID != ok.MsgID:
				c.violate(vAckMismatch, ok.Device, k.conv, ok.Seq, ok.Index, "acked as seq %d msg %d, but stored as seq %d msg %d", ok.Seq, ok.MsgID, st[0].Seq, st[0].MsgID)
			}
		case s.unknowns > 0:
			c.v.Unknown++
			if len(st) > 0 {
				c.v.UnknownIn++
			}
		default:
			c.v.Failed++
			if len(st) > 0 {
				c.violate(vFailedStored, s.first.Device, k.conv, st[0].Seq, st[0].Index, "client_msg_id %q was refused, yet is stored as msg %d", k.cmid, st[0].MsgID)
			}
		}
	}
	for _, conv := range c.convs {
		for _, e := range sortedSeqs(c.stored[conv]) {
			if e.Sender == "" {
				continue
			}
			if _, ok := sends[sendKey{e.Sender, conv, e.ClientMsgID}]; !ok {
				c.violate(vPhantom, "", conv, e.Seq, e.Index, "msg %d from %q (client_msg_id %q) was never sent", e.MsgID, e.Sender, e.ClientMsgID)
			}
		}
	}
}

func sortedSeqs(s map[int64]event) []event {
	out := make([]event, 0, len(s))
	for _, e := range s {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// entitled reports whether user may read conv's seq.
func (c *histCheck) entitled(user, conv string, seq int64) bool {
	for _, p := range c.members[conv][user] {
		if seq >= p.from && (p.to < 0 || seq <= p.to) {
			return true
		}
	}
	return false
}

// checkDeliveries: each device's app got every message its user may read,
// once, in seq order, and nothing else. A device's own acknowledged
// sends count as seen (the server does not push them back to it).
func (c *histCheck) checkDeliveries() {
	type devConv struct{ dev, conv string }
	seen := make(map[devConv]map[int64]event)
	last := make(map[devConv]event)
	mark := func(k devConv, e event) {
		if seen[k] == nil {
			seen[k] = make(map[int64]event)
		}
		seen[k][e.Seq] = e
	}
	for _, e := range c.evs {
		k := devConv{e.Device, e.Conv}
		switch e.Kind {
		case evOK:
			if _, ok := seen[k][e.Seq]; !ok {
				mark(k, e)
			}
		case evDeliver:
			c.v.Deliveries++
			user := c.userOf[e.Device]
			st, held := c.stored[e.Conv][e.Seq]
			if prev, ok := seen[k][e.Seq]; ok && prev.Kind == evDeliver {
				c.violate(vDuplicate, e.Device, e.Conv, e.Seq, e.Index, "delivered again (first as event #%d)", prev.Index)
				continue
			}
			if p, ok := last[k]; ok && e.Seq < p.Seq {
				c.violate(vReorder, e.Device, e.Conv, e.Seq, e.Index, "delivered after seq %d", p.Seq)
			}
			last[k] = e
			mark(k, e)
			// A user's own message is no leak: a send authorized just before
			// its sender was removed may be stored after the removal
			// (docs/social.md), and the sender's devices hold what they wrote.
			if !c.entitled(user, e.Conv, e.Seq) && !(held && st.Sender == user) {
				c.violate(vLeak, e.Device, e.Conv, e.Seq, e.Index, "user %q is not a member at seq %d", user, e.Seq)
			}
			if !held || st.MsgID != e.MsgID {
				c.violate(vAltered, e.Device, e.Conv, e.Seq, e.Index, "delivered msg %d, stored msg %d", e.MsgID, st.MsgID)
			}
		}
	}
	for _, dev := range c.devices {
		if !c.synced[dev] {
			c.violate(vUnsynced, dev, "", 0, len(c.evs)-1, "the device did not finish its final sync, so what it missed is unknown")
			continue
		}
		user := c.userOf[dev]
		for _, conv := range c.convs {
			for _, st := range sortedSeqs(c.stored[conv]) {
				if !c.entitled(user, conv, st.Seq) {
					continue
				}
				if _, ok := seen[devConv{dev, conv}][st.Seq]; !ok {
					c.violate(vNotDelivered, dev, conv, st.Seq, -1, "msg %d (from %q) never reached the device", st.MsgID, st.Sender)
				}
			}
		}
	}
}

// writeVerdict prints v as a table and its violations.
func writeVerdict(w io.Writer, v verdict) {
	fmt.Fprintf(w, "history: %d devices, %d sends (%d acked, %d refused, %d unknown of which %d stored), %d stored, %d deliveries, %d faults\n",
		v.Devices, v.Sends, v.Acked, v.Failed, v.Unknown, v.UnknownIn, v.Stored, v.Deliveries, v.Faults)
	fmt.Fprintf(w, "%-22s %s\n", "check", "violations")
	for _, k := range violationKinds {
		mark := "ok"
		if n := v.Counts[k]; n > 0 {
			mark = fmt.Sprintf("FAIL %d", n)
		}
		fmt.Fprintf(w, "%-22s %s\n", k, mark)
	}
	if v.OK {
		fmt.Fprintln(w, "verdict: OK")
		return
	}
	fmt.Fprintln(w, "verdict: VIOLATED")
	for _, x := range v.Violations {
		fmt.Fprintf(w, "  %s\n", x)
	}
}
