package storagetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var messageTests = []test{
	{"AppendOne", testAppendOne},
	{"BatchAcrossConversations", testBatchAcrossConversations},
	{"EmptyBatch", testEmptyBatch},
	{"C2CMemberships", testC2CMemberships},
	{"DedupAcrossCalls", testDedupAcrossCalls},
	{"DedupWithinBatch", testDedupWithinBatch},
	{"DedupIsPerSender", testDedupPerSender},
	{"EmptyClientMsgID", testEmptyClientMsgID},
	{"ConcurrentAppendsAreGapless", testConcurrentSeqs},
	{"ConcurrentResendsStoreOnce", testConcurrentDedup},
	{"ListMessages", testListMessages},
	{"ListMessagesBefore", testListMessagesBefore},
	{"LatestSeq", testLatestSeq},
	{"ContentRoundTrip", testContentRoundTrip},
	{"CreatedAtRoundTrip", testCreatedAtRoundTrip},
}

// stored is the message a NewMessage becomes at seq.
func stored(m storage.NewMessage, seq int64) storage.Message {
	return storage.Message{
		ConversationID: m.ConversationID,
		Seq:            seq,
		MsgID:          m.MsgID,
		SenderID:       m.SenderID,
		SenderDeviceID: m.SenderDeviceID,
		ClientMsgID:    m.ClientMsgID,
		Content:        m.Content,
		CreatedAt:      m.CreatedAt,
	}
}

func testAppendOne(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("bob", "alice")
	m := fx.msg(conv, "alice", "hello")
	res := fx.append(m)
	if res[0].Duplicate {
		t.Fatal("first send reported as duplicate")
	}
	wantMessage(t, res[0].Message, stored(m, 1), "result of the first message")
	got := fx.wantSeqs(conv, 1)
	wantMessage(t, got[0], stored(m, 1), "stored message")

	m2 := fx.msg(conv, "bob", "hi")
	res = fx.append(m2)
	wantMessage(t, res[0].Message, stored(m2, 2), "result of the second message")
	fx.wantSeqs(conv, 2)
}

func testBatchAcrossConversations(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("a", "b", "c")
	fx.group("g", "a", "b", "c")
	ab, ac, g := storage.C2CConversationID("a", "b"), storage.C2CConversationID("a", "c"), storage.GroupConversationID("g")
	fx.send(ab, "a", 2)

	batch := []storage.NewMessage{
		fx.msg(ab, "a", "ab3"),
		fx.msg(g, "b", "g1"),
		fx.msg(ab, "b", "ab4"),
		fx.msg(ac, "c", "ac1"),
		fx.msg(g, "c", "g2"),
		fx.msg(ab, "a", "ab5"),
	}
	res := fx.append(batch...)
	wantSeqs := []int64{3, 1, 4, 1, 2, 5} // consecutive per conversation, in input order
	for i, r := range res {
		if r.Duplicate {
			t.Fatalf("result %d: Duplicate on a new message", i)
		}
		wantMessage(t, r.Message, stored(batch[i], wantSeqs[i]), fmt.Sprintf("result %d", i))
	}
	for conv, n := range map[string]int64{ab: 5, ac: 1, g: 2} {
		msgs := fx.wantSeqs(conv, n)
		for _, m := range msgs {
			for i, r := range res {
				if r.Message.ConversationID == conv && r.Message.Seq == m.Seq {
					wantMessage(t, m, stored(batch[i], m.Seq), fmt.Sprintf("%s seq %d", conv, m.Seq))
				}
			}
		}
	}
}

func testEmptyBatch(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	res, err := fx.s.AppendMessages(t.Context(), nil)
	must(t, err, "append an empty batch")
	if len(res) != 0 {
		t.Fatalf("empty batch returned %d results", len(res))
	}
}

func testC2CMemberships(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	fx.append(fx.msg(conv, "bob", "first"))
	for _, u := range []string{"alice", "bob"} {
		if m := fx.wantPeriods(conv, u, storage.Period{JoinedSeq: 0, LeftSeq: openSeq}); !m.Active() {
			t.Fatalf("c2c membership of %s = %+v, want active", u, m)
		}
	}
	// Later messages leave the memberships as they are.
	fx.send(conv, "alice", 2)
	fx.wantPeriods(conv, "bob", storage.Period{JoinedSeq: 0, LeftSeq: openSeq})
}

func testDedupAcrossCalls(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob", "carol")
	conv := storage.C2CConversationID("alice", "bob")
	first := fx.msg(conv, "alice", "original")
	fx.append(first)

	// A resend gets a new msg id and time from the server, maybe other
	// content: the first copy still wins, and nothing is stored.
	resend := first
	resend.MsgID = 999_999
	resend.Content = []byte("changed")
	resend.CreatedAt = first.CreatedAt.Add(time.Minute)
	res := fx.append(resend)
	if !res[0].Duplicate {
		t.Fatal("resend not reported as duplicate")
	}
	wantMessage(t, res[0].Message, stored(first, 1), "result of the resend")
	fx.wantSeqs(conv, 1)

	// Dedup is by sender and client id, whatever the conversation.
	elsewhere := resend
	elsewhere.ConversationID = storage.C2CConversationID("alice", "carol")
	elsewhere.Members = []string{"alice", "carol"}
	res = fx.append(elsewhere)
	if !res[0].Duplicate {
		t.Fatal("resend to another conversation not reported as duplicate")
	}
	wantMessage(t, res[0].Message, stored(first, 1), "result of the resend to another conversation")
	if seq := fx.latestSeq(elsewhere.ConversationID); seq != 0 {
		t.Fatalf("LatestSeq of the other conversation = %d, want 0", seq)
	}

	// The duplicates consumed no seq.
	next := fx.msg(conv, "bob", "next")
	res = fx.append(next)
	wantMessage(t, res[0].Message, stored(next, 2), "message after the resends")
	got := fx.wantSeqs(conv, 2)
	wantMessage(t, got[0], stored(first, 1), "stored first message")
}

func testDedupWithinBatch(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	a := fx.msg(conv, "alice", "a")
	aAgain := a
	aAgain.MsgID, aAgain.Content = a.MsgID+1, []byte("a again")
	b := fx.msg(conv, "bob", "b")

	res := fx.append(a, aAgain, b)
	if res[0].Duplicate || res[2].Duplicate {
		t.Fatal("new messages reported as duplicates")
	}
	if !res[1].Duplicate {
		t.Fatal("second copy in the batch not reported as duplicate")
	}
	wantMessage(t, res[0].Message, stored(a, 1), "first copy")
	wantMessage(t, res[1].Message, stored(a, 1), "second copy")
	wantMessage(t, res[2].Message, stored(b, 2), "message after the copy")
	fx.wantSeqs(conv, 2)

	// Two resends of a stored message in one batch, around a new one.
	c := fx.msg(conv, "alice", "c")
	res = fx.append(aAgain, c, aAgain)
	if !res[0].Duplicate || res[1].Duplicate || !res[2].Duplicate {
		t.Fatalf("Duplicate flags = %v %v %v, want true false true", res[0].Duplicate, res[1].Duplicate, res[2].Duplicate)
	}
	wantMessage(t, res[0].Message, stored(a, 1), "resend of a stored message")
	wantMessage(t, res[2].Message, stored(a, 1), "second resend of a stored message")
	wantMessage(t, res[1].Message, stored(c, 3), "new message between resends")
	fx.wantSeqs(conv, 3)
}

func testDedupPerSender(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	a := fx.msg(conv, "alice", "from alice")
	b := fx.msg(conv, "bob", "from bob")
	b.ClientMsgID = a.ClientMsgID // clients make ids independently
	res := fx.append(a)
	res = append(res, fx.append(b)...)
	if res[0].Duplicate || res[1].Duplicate {
		t.Fatal("same client id from two senders reported as duplicate")
	}
	wantMessage(t, res[1].Message, stored(b, 2), "bob's message")
	fx.wantSeqs(conv, 2)
}

func testEmptyClientMsgID(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	good := fx.msg(conv, "alice", "good")
	bad := fx.msg(conv, "alice", "bad")
	bad.ClientMsgID = ""
	res, err := fx.s.AppendMessages(t.Context(), []storage.NewMessage{good, bad})
	if err == nil {
		t.Fatalf("append with an empty ClientMsgID succeeded: %+v", res)
	}
	// On error nothing is stored: not the good message, not its dedup key.
	if seq := fx.latestSeq(conv); seq != 0 {
		t.Fatalf("LatestSeq after a failed batch = %d, want 0", seq)
	}
	res = fx.append(good)
	if res[0].Duplicate || res[0].Message.Seq != 1 {
		t.Fatalf("good message after the failed batch: %+v, want new at seq 1", res[0])
	}
}

func testConcurrentSeqs(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	const workers, rounds = 64, 3

	var (
		mu      sync.Mutex
		results []storage.AppendResult
		wg      sync.WaitGroup
	)
	start := make(chan struct{})
	for w := range workers {
		// Built up front, so the workers all start appending at once.
		var batches [][]storage.NewMessage
		for r := range rounds {
			var batch []storage.NewMessage
			for k := range 1 + (w+r)%3 { // batches of 1, 2 and 3
				batch = append(batch, fx.msg(conv, []string{"alice", "bob"}[k%2], fmt.Sprintf("w%d r%d k%d", w, r, k)))
			}
			batches = append(batches, batch)
		}
		wg.Go(func() {
			<-start
			for _, batch := range batches {
				res, err := fx.s.AppendMessages(t.Context(), batch)
				if err != nil {
					t.Errorf("worker %d: append: %v", w, err)
					return
				}
				for k := 1; k < len(res); k++ {
					if res[k].Message.Seq != res[k-1].Message.Seq+1 {
						t.Errorf("worker %d: a batch got seqs %d then %d, want consecutive", w, res[k-1].Message.Seq, res[k].Message.Seq)
					}
				}
				mu.Lock()
				results = append(results, res...)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	// Every seq from 1 to N exactly once, and the stored messages are the
	// ones the results named.
	slices.SortFunc(results, func(a, b storage.AppendResult) int { return int(a.Message.Seq - b.Message.Seq) })
	for i, r := range results {
		if r.Duplicate {
			t.Fatalf("seq %d: distinct message reported as duplicate", r.Message.Seq)
		}
		if r.Message.Seq != int64(i)+1 {
			t.Fatalf("seqs are not exactly 1..%d: position %d holds seq %d", len(results), i, r.Message.Seq)
		}
	}
	got := fx.wantSeqs(conv, int64(len(results)))
	for i := range got {
		wantMessage(t, got[i], results[i].Message, fmt.Sprintf("stored seq %d", i+1))
	}
}

func testConcurrentDedup(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	const senders = 32
	base := fx.msg(conv, "alice", "once")
	var wg sync.WaitGroup
	results := make([]storage.AppendResult, senders)
	start := make(chan struct{})
	for i := range senders {
		m := base
		m.MsgID = base.MsgID + int64(i) // each attempt gets its own msg id
		wg.Go(func() {
			<-start
			res, err := fx.s.AppendMessages(t.Context(), []storage.NewMessage{m})
			if err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
			results[i] = res[0]
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	var winners []storage.AppendResult
	for _, r := range results {
		if !r.Duplicate {
			winners = append(winners, r)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d identical sends were stored, want exactly 1", len(winners), senders)
	}
	for i, r := range results {
		wantMessage(t, r.Message, winners[0].Message, fmt.Sprintf("answer %d", i))
	}
	got := fx.wantSeqs(conv, 1)
	wantMessage(t, got[0], winners[0].Message, "stored message")
}

// tenMessages stores messages with seqs 1..10 and contents "m1".."m10".
func tenMessages(t *testing.T, f Factory) (*fixture, string) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	var batch []storage.NewMessage
	for i := 1; i <= 10; i++ {
		batch = append(batch, fx.msg(conv, "alice", fmt.Sprintf("m%d", i)))
	}
	fx.append(batch...)
	// Another conversation's messages must not leak into the listings.
	fx.users("carol")
	fx.send(storage.C2CConversationID("alice", "carol"), "carol", 3)
	return fx, conv
}

func wantPage(t *testing.T, msgs []storage.Message, err error, want []int64, what string) {
	t.Helper()
	must(t, err, what)
	if got := seqsOf(msgs); !slices.Equal(got, want) {
		t.Fatalf("%s: seqs %v, want %v", what, got, want)
	}
	for _, m := range msgs {
		if string(m.Content) != fmt.Sprintf("m%d", m.Seq) {
			t.Fatalf("%s: seq %d holds %q", what, m.Seq, m.Content)
		}
	}
}

func testListMessages(t *testing.T, f Factory) {
	fx, conv := tenMessages(t, f)
	s, ctx := fx.s, t.Context()
	for _, c := range []struct {
		after, upto int64
		limit       int
		want        []int64
	}{
		{0, openSeq, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, openSeq, 3, []int64{1, 2, 3}},
		{3, 7, 100, []int64{4, 5, 6, 7}},
		{3, 7, 2, []int64{4, 5}},
		{3, openSeq, 2, []int64{4, 5}},
		{9, openSeq, 100, []int64{10}},
		{10, openSeq, 100, nil},
		{5, 5, 100, nil},
		{0, 1, 100, []int64{1}},
		{8, 100, 100, []int64{9, 10}},
		// The bound is a bound: 0 (a period that ended before the first
		// message) and anything <= afterSeq read nothing. It once meant
		// "no upper bound".
		{0, 0, 100, nil},
		{3, 0, 100, nil},
		{0, -1, 100, nil},
		{5, 4, 100, nil},
	} {
		msgs, err := s.ListMessages(ctx, conv, c.after, c.upto, c.limit)
		wantPage(t, msgs, err, c.want, fmt.Sprintf("ListMessages(after %d, upto %d, limit %d)", c.after, c.upto, c.limit))
	}
	msgs, err := s.ListMessages(ctx, storage.C2CConversationID("x", "y"), 0, openSeq, 10)
	wantPage(t, msgs, err, nil, "ListMessages of an unknown conversation")
}

func testListMessagesBefore(t *testing.T, f Factory) {
	fx, conv := tenMessages(t, f)
	s, ctx := fx.s, t.Context()
	for _, c := range []struct {
		after, before int64
		limit         int
		want          []int64
	}{
		{0, openSeq, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, openSeq, 3, []int64{8, 9, 10}}, // the newest, ascending
		{0, 5, 3, []int64{2, 3, 4}},
		{2, 5, 10, []int64{3, 4}},
		{3, 5, 10, []int64{4}},
		{0, 1, 10, nil},
		{4, 5, 10, nil},
		{7, openSeq, 10, []int64{8, 9, 10}},
		{0, 100, 2, []int64{9, 10}},
		// 0 is a bound like any other, not "no bound".
		{0, 0, 10, nil},
		{0, -1, 3, nil},
		{7, 0, 10, nil},
	} {
		msgs, err := s.ListMessagesBefore(ctx, conv, c.after, c.before, c.limit)
		wantPage(t, msgs, err, c.want, fmt.Sprintf("ListMessagesBefore(after %d, before %d, limit %d)", c.after, c.before, c.limit))
	}
	msgs, err := s.ListMessagesBefore(ctx, storage.GroupConversationID("nope"), 0, openSeq, 10)
	wantPage(t, msgs, err, nil, "ListMessagesBefore of an unknown conversation")
}

func testLatestSeq(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	if seq := fx.latestSeq(conv); seq != 0 {
		t.Fatalf("LatestSeq of an unknown conversation = %d, want 0", seq)
	}
	fx.send(conv, "alice", 4)
	if seq := fx.latestSeq(conv); seq != 4 {
		t.Fatalf("LatestSeq = %d, want 4", seq)
	}
	if seq := fx.latestSeq(storage.GroupConversationID("nope")); seq != 0 {
		t.Fatalf("LatestSeq of an unknown group = %d, want 0", seq)
	}
}

func testContentRoundTrip(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	big := bytes.Repeat([]byte{0, 0xff, 'x'}, 100_000)
	contents := [][]byte{nil, {}, {0}, every, []byte("\xff\xfe not UTF-8 \xc3\x28"), []byte("trailing zeros\x00\x00"), big}

	var batch []storage.NewMessage
	for _, c := range contents {
		m := fx.msg(conv, "alice", "")
		m.Content = c
		batch = append(batch, m)
	}
	res := fx.append(batch...)
	got := fx.wantSeqs(conv, int64(len(contents)))
	for i, c := range contents {
		if !bytes.Equal(res[i].Message.Content, c) {
			t.Errorf("content %d: result holds %d bytes, want %d", i, len(res[i].Message.Content), len(c))
		}
		if !bytes.Equal(got[i].Content, c) {
			t.Errorf("content %d: stored %d bytes %.40q, want %d bytes %.40q", i, len(got[i].Content), got[i].Content, len(c), c)
		}
	}
}

func testCreatedAtRoundTrip(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	fx.users("alice", "bob")
	conv := storage.C2CConversationID("alice", "bob")
	times := []time.Time{
		time.Date(2031, 12, 31, 23, 59, 59, 987_654_321, time.FixedZone("far east", 14*3600)),
		time.Date(1999, 1, 2, 3, 4, 5, 6_000_000, time.UTC),
		time.Now(),
	}
	var batch []storage.NewMessage
	for _, ts := range times {
		m := fx.msg(conv, "bob", "t")
		m.CreatedAt = ts
		batch = append(batch, m)
	}
	fx.append(batch...)
	got := fx.wantSeqs(conv, int64(len(times)))
	for i, ts := range times {
		if !sameTime(got[i].CreatedAt, ts) {
			t.Errorf("CreatedAt %d: stored %v, want %v (to the millisecond)", i, got[i].CreatedAt, ts)
		}
	}
}
