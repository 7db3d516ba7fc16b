package main

import (
	"fmt"
	"sort"
	"sync"
)

// The checker verifies Starling's delivery promise on every run: each
// acknowledged message reaches every online recipient exactly once, in seq
// order. It has two halves:
//
//   - a receiver per device sees messages as they arrive (push, sync, or
//     the device's own SendAck) and keeps, per conversation, the highest
//     seq below which it has everything: seqs are accepted only in order,
//     so "in order" and "nothing skipped" hold by construction, and a
//     message pushed again below that line is a duplicate;
//   - the checker keeps the msg id of every acknowledged seq, per
//     conversation, and at the end compares each expected recipient's
//     state with it: a recipient short of the newest acked seq lost
//     messages, and one whose fingerprint of (seq, msg id) pairs differs
//     was given other messages than the ones acked.

// source says how a message reached a device.
type source int

const (
	viaPush source = iota
	viaSync
)

// outcome is what a receiver made of one arriving message.
type outcome int

const (
	// accepted: the next seq of its conversation; delivered to the "app".
	accepted outcome = iota
	// redundant: already had it, in answer to a Sync the device knew
	// could overlap what it had (a pull over a gap, while pushes went on).
	// The protocol allows this; the device drops it.
	redundant
	// duplicate: pushed again although the device had it — the server
	// broke exactly-once.
	duplicate
	// gap: beyond the next seq; something before it has not arrived. The
	// device drops it and pulls from where it is (docs/design.md, invariant 3).
	gap
)

// maxProblems bounds the problem lines kept for the report.
const maxProblems = 20

// receiver is one device's view of its conversations. Safe for
// concurrent use.
type receiver struct {
	name string

	mu        sync.Mutex
	convs     map[string]*recvConv
	dups      int64
	gaps      int64
	redundant int64
	problems  []string
}

// recvConv is one conversation as one device has it.
type recvConv struct {
	last int64           // every seq in 1..last was accepted once, in order
	sum  uint64          // fingerprint of the accepted (seq, msg id) pairs
	own  map[int64]int64 // the device's own messages above last: seq → msg id (from SendAcks)
	// overlap: the device pulled over a gap while pushes continued, so a
	// push repeating what the pull brought is expected, not a duplicate.
	overlap bool
}

func newReceiver(name string) *receiver {
	return &receiver{name: name, convs: make(map[string]*recvConv)}
}

func (r *receiver) conv(id string) *recvConv {
	c := r.convs[id]
	if c == nil {
		c = &recvConv{}
		r.convs[id] = c
	}
	return c
}

// problem notes a line for the report; r.mu must be held.
func (r *receiver) problem(format string, args ...any) {
	if len(r.problems) < maxProblems {
		r.problems = append(r.problems, r.name+": "+fmt.Sprintf(format, args...))
	}
}

// accept moves c forward by one seq and folds the message into its
// fingerprint, then takes in any of the device's own messages that now
// follow on.
func (c *recvConv) accept(seq, msgID int64) {
	c.last = seq
	c.sum += fingerprint(seq, msgID)
	for {
		id, ok := c.own[c.last+1]
		if !ok {
			return
		}
		delete(c.own, c.last+1)
		c.last++
		c.sum += fingerprint(c.last, id)
	}
}

// deliver records a message that arrived from the server. own says the
// device itself sent it (it may come back by Sync).
func (r *receiver) deliver(conv string, seq, msgID int64, own bool, via source) outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conv(conv)
	switch {
	case seq == c.last+1:
		if id, ok := c.own[seq]; ok && id != msgID {
			r.problem("%s seq %d: pulled msg %d, but its SendAck said %d", conv, seq, msgID, id)
		}
		delete(c.own, seq)
		c.accept(seq, msgID)
		return accepted
	case seq <= c.last:
		if via == viaSync || c.overlap || own {
			r.redundant++
			return redundant
		}
		r.dups++
		r.problem("%s seq %d (msg %d) pushed again; the device had everything up to %d", conv, seq, msgID, c.last)
		return duplicate
	default:
		r.gaps++
		return gap
	}
}

// own records the SendAck of a message this device sent: the device has
// it without being pushed it (the server does not push to the sender).
func (r *receiver) own(conv string, seq, msgID int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conv(conv)
	switch {
	case seq == c.last+1:
		c.accept(seq, msgID)
	case seq > c.last+1:
		if c.own == nil {
			c.own = make(map[int64]int64)
		}
		c.own[seq] = msgID
	}
	// seq <= last: a Sync brought it before its SendAck arrived.
}

// pulledOverGap notes that the device pulls conv over a gap while pushes
// go on, so repeats that follow are its own doing.
func (r *receiver) pulledOverGap(conv string) {
	r.mu.Lock()
	r.conv(conv).overlap = true
	r.mu.Unlock()
}

// last is the highest seq of conv below which the device has everything.
func (r *receiver) last(conv string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.convs[conv]; c != nil {
		return c.last
	}
	return 0
}

// note records a problem the device found in what the server sent (a
// Sync batch that skipped seqs, say) that is not a loss by itself.
func (r *receiver) note(format string, args ...any) {
	r.mu.Lock()
	r.problem(format, args...)
	r.mu.Unlock()
}

// fingerprint mixes a (seq, msg id) pair into 64 bits (splitmix64), so
// that the sum over a conversation changes if any message is swapped,
// missing or extra.
func fingerprint(seq, msgID int64) uint64 {
	x := uint64(seq)*0x9e3779b97f4a7c15 ^ uint64(msgID)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// checker holds what was acknowledged and who must have received it.
// Safe for concurrent use.
type checker struct {
	mu    sync.Mutex
	convs map[string]*convLog
}

// convLog is one conversation's acknowledged messages.
type convLog struct {
	ids        []int64 // msg id of seq i+1; 0: not acknowledged
	maxSeq     int64   // newest acknowledged seq
	recipients map[*receiver]bool
	problems   []string
}

func newChecker() *checker { return &checker{convs: make(map[string]*convLog)} }

func (c *checker) log(conv string) *convLog {
	l := c.convs[conv]
	if l == nil {
		l = &convLog{recipients: make(map[*receiver]bool)}
		c.convs[conv] = l
	}
	return l
}

// expect says r must receive every acknowledged message of conv.
func (c *checker) expect(conv string, r *receiver) {
	c.mu.Lock()
	c.log(conv).recipients[r] = true
	c.mu.Unlock()
}

// acked records a SendAck and returns how many deliveries it promises:
// one per expected recipient other than the sender.
func (c *checker) acked(conv string, seq, msgID int64, sender *receiver) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.log(conv)
	if seq <= 0 {
		l.problem("SendAck with seq %d", seq)
		return 0
	}
	for int64(len(l.ids)) < seq {
		l.ids = append(l.ids, 0)
	}
	if old := l.ids[seq-1]; old != 0 && old != msgID {
		l.problem("seq %d acknowledged as msg %d and as msg %d", seq, old, msgID)
	}
	l.ids[seq-1] = msgID
	l.maxSeq = max(l.maxSeq, seq)
	n := len(l.recipients)
	if l.recipients[sender] {
		n--
	}
	return n
}

// system records a group's system message (the server's record of a
// membership change, sent by nobody, so no SendAck tells of it): every
// recipient must hold it at its seq like an acknowledged message, but it
// promises no delivery (the bench counts its own messages only).
func (c *checker) system(conv string, seq, msgID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.log(conv)
	if seq <= 0 {
		return
	}
	for int64(len(l.ids)) < seq {
		l.ids = append(l.ids, 0)
	}
	if old := l.ids[seq-1]; old != 0 && old != msgID {
		l.problem("seq %d is msg %d and system message %d", seq, old, msgID)
	}
	l.ids[seq-1] = msgID
}

func (l *convLog) problem(format string, args ...any) {
	if len(l.problems) < maxProblems {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// maxSeq is the newest acknowledged seq of conv.
func (c *checker) maxSeq(conv string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.convs[conv]; l != nil {
		return l.maxSeq
	}
	return 0
}

// missing counts acknowledged messages that expected recipients have not
// got yet; a run waits for it to reach 0 before verifying.
func (c *checker) missing() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for conv, l := range c.convs {
		for r := range l.recipients {
			if last := r.last(conv); last < l.maxSeq {
				n += l.maxSeq - last
			}
		}
	}
	return n
}

// CheckResult is the verdict of a run.
type CheckResult struct {
	OK bool `json:"ok"`
	// Acked is how many acknowledged messages were checked.
	Acked int64 `json:"acked"`
	// Lost: promised deliveries that never happened. Duplicates: messages
	// pushed again to a device that had them. Altered: recipients whose
	// messages differ from the acknowledged ones (or SendAcks that
	// disagree).
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Altered    int64 `json:"altered"`
	// Not failures: Gaps are pushes that skipped ahead (repaired by a
	// Sync); Redundant are repeats the device had asked for; Unverified
	// recipients had messages the bench saw no SendAck for (a send that
	// failed after it was stored), so their fingerprint was not compared.
	Gaps       int64    `json:"gaps"`
	Redundant  int64    `json:"redundant"`
	Unverified int64    `json:"unverified"`
	Problems   []string `json:"problems,omitempty"`
}

// verify compares every expected recipient with what was acknowledged.
// Call it once the devices have stopped.
func (c *checker) verify() CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	var res CheckResult
	add := func(p string) {
		if len(res.Problems) < maxProblems {
			res.Problems = append(res.Problems, p)
		}
	}
	seen := make(map[*receiver]bool)
	convIDs := make([]string, 0, len(c.convs))
	for id := range c.convs {
		convIDs = append(convIDs, id)
	}
	sort.Strings(convIDs) // stable problem lines
	for _, conv := range convIDs {
		l := c.convs[conv]
		for _, p := range l.problems {
			res.Altered++
			add(conv + ": " + p)
		}
		// prefix[i] is the fingerprint of seqs 1..i, valid while every seq
		// up to i was acknowledged; count[i] is how many of 1..i were.
		prefix := make([]uint64, len(l.ids)+1)
		count := make([]int64, len(l.ids)+1)
		complete := len(l.ids) // highest i with seqs 1..i all acknowledged
		for i, id := range l.ids {
			prefix[i+1], count[i+1] = prefix[i], count[i]
			if id == 0 {
				complete = min(complete, i)
				continue
			}
			prefix[i+1] += fingerprint(int64(i+1), id)
			count[i+1]++
		}
		res.Acked += count[len(l.ids)]
		for r := range l.recipients {
			seen[r] = true
			r.mu.Lock()
			var last int64
			var sum uint64
			if rc := r.convs[conv]; rc != nil {
				last, sum = rc.last, rc.sum
			}
			r.mu.Unlock()
			if last < l.maxSeq {
				lost := count[l.maxSeq] - count[last]
				res.Lost += lost
				add(fmt.Sprintf("%s: %s has everything up to seq %d, but %d acknowledged messages up to seq %d never arrived", r.name, conv, last, lost, l.maxSeq))
			}
			switch {
			case last == 0:
			case last > int64(complete):
				res.Unverified++
			case sum != prefix[last]:
				res.Altered++
				add(fmt.Sprintf("%s: %s seqs 1..%d are not the messages that were acknowledged", r.name, conv, last))
			}
		}
	}
	for r := range seen {
		r.mu.Lock()
		res.Duplicates += r.dups
		res.Gaps += r.gaps
		res.Redundant += r.redundant
		for _, p := range r.problems {
			add(p)
		}
		r.mu.Unlock()
	}
	res.OK = res.Lost == 0 && res.Duplicates == 0 && res.Altered == 0
	return res
}
