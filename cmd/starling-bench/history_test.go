package main

import (
	"bytes"
	"strings"
	"testing"
)

// goodHistory is a small valid history: alice (devices a1, a2) and bob
// (b1) in c2c conversation "c"; group "g" of alice and bob, where carol
// (c1) is added at seq 2 and bob kicked at seq 4. Every test below breaks
// it in one way and expects exactly that violation.
func goodHistory() []event {
	return []event{
		{Kind: evDevice, Device: "a1", User: "alice"},
		{Kind: evDevice, Device: "a2", User: "alice"},
		{Kind: evDevice, Device: "b1", User: "bob"},
		{Kind: evDevice, Device: "c1", User: "carol"},
		{Kind: evMember, Conv: "c", User: "alice", Op: "join"},
		{Kind: evMember, Conv: "c", User: "bob", Op: "join"},
		{Kind: evMember, Conv: "g", User: "alice", Op: "join"},
		{Kind: evMember, Conv: "g", User: "bob", Op: "join"},
		// c2c: alice sends m1 (acked), m2 (unknown, stored), m3 (unknown, not stored), m4 (refused).
		{Kind: evInvoke, Device: "a1", Conv: "c", ClientMsgID: "m1"},
		{Kind: evOK, Device: "a1", Conv: "c", ClientMsgID: "m1", Seq: 1, MsgID: 101},
		{Kind: evDeliver, Device: "b1", Conv: "c", Seq: 1, MsgID: 101},
		{Kind: evDeliver, Device: "a2", Conv: "c", Seq: 1, MsgID: 101},
		{Kind: evInvoke, Device: "a1", Conv: "c", ClientMsgID: "m2"},
		{Kind: evFault, Op: "kill node 0"},
		{Kind: evUnknown, Device: "a1", Conv: "c", ClientMsgID: "m2", Err: "stream lost"},
		{Kind: evFault, Op: "recovered"},
		{Kind: evInvoke, Device: "a1", Conv: "c", ClientMsgID: "m3"},
		{Kind: evUnknown, Device: "a1", Conv: "c", ClientMsgID: "m3", Err: "stream lost"},
		{Kind: evInvoke, Device: "a1", Conv: "c", ClientMsgID: "m4"},
		{Kind: evFail, Device: "a1", Conv: "c", ClientMsgID: "m4", Err: "InvalidArgument"},
		{Kind: evDeliver, Device: "b1", Conv: "c", Seq: 2, MsgID: 102},
		{Kind: evDeliver, Device: "a2", Conv: "c", Seq: 2, MsgID: 102},
		{Kind: evDeliver, Device: "a1", Conv: "c", Seq: 2, MsgID: 102}, // its own unknown send, synced
		// group: bob sends g1, carol added (system message), carol sends g2, bob kicked.
		{Kind: evInvoke, Device: "b1", Conv: "g", ClientMsgID: "g1"},
		{Kind: evOK, Device: "b1", Conv: "g", ClientMsgID: "g1", Seq: 1, MsgID: 201},
		{Kind: evMember, Conv: "g", User: "carol", Op: "join", Seq: 2},
		{Kind: evInvoke, Device: "c1", Conv: "g", ClientMsgID: "g2"},
		{Kind: evOK, Device: "c1", Conv: "g", ClientMsgID: "g2", Seq: 3, MsgID: 203},
		{Kind: evMember, Conv: "g", User: "bob", Op: "leave", Seq: 4},
		{Kind: evDeliver, Device: "a1", Conv: "g", Seq: 1, MsgID: 201},
		{Kind: evDeliver, Device: "a1", Conv: "g", Seq: 2, MsgID: 202},
		{Kind: evDeliver, Device: "a1", Conv: "g", Seq: 3, MsgID: 203},
		{Kind: evDeliver, Device: "a1", Conv: "g", Seq: 4, MsgID: 204},
		{Kind: evDeliver, Device: "a2", Conv: "g", Seq: 1, MsgID: 201},
		{Kind: evDeliver, Device: "a2", Conv: "g", Seq: 2, MsgID: 202},
		{Kind: evDeliver, Device: "a2", Conv: "g", Seq: 3, MsgID: 203},
		{Kind: evDeliver, Device: "a2", Conv: "g", Seq: 4, MsgID: 204},
		{Kind: evDeliver, Device: "b1", Conv: "g", Seq: 2, MsgID: 202},
		{Kind: evDeliver, Device: "b1", Conv: "g", Seq: 3, MsgID: 203},
		{Kind: evDeliver, Device: "b1", Conv: "g", Seq: 4, MsgID: 204},
		{Kind: evDeliver, Device: "c1", Conv: "g", Seq: 2, MsgID: 202},
		{Kind: evDeliver, Device: "c1", Conv: "g", Seq: 4, MsgID: 204},
		{Kind: evStored, Conv: "c", Seq: 1, MsgID: 101, Sender: "alice", ClientMsgID: "m1"},
		{Kind: evStored, Conv: "c", Seq: 2, MsgID: 102, Sender: "alice", ClientMsgID: "m2"},
		{Kind: evStored, Conv: "g", Seq: 1, MsgID: 201, Sender: "bob", ClientMsgID: "g1"},
		{Kind: evStored, Conv: "g", Seq: 2, MsgID: 202, ContentType: groupChange},
		{Kind: evStored, Conv: "g", Seq: 3, MsgID: 203, Sender: "carol", ClientMsgID: "g2"},
		{Kind: evStored, Conv: "g", Seq: 4, MsgID: 204, ContentType: groupChange},
		{Kind: evSynced, Device: "a1"},
		{Kind: evSynced, Device: "a2"},
		{Kind: evSynced, Device: "b1"},
		{Kind: evSynced, Device: "c1"},
	}
}

func TestCheckHistoryGood(t *testing.T) {
	v := checkHistory(numbered(goodHistory()))
	if !v.OK {
		var b bytes.Buffer
		writeVerdict(&b, v)
		t.Fatalf("a valid history was judged violated:\n%s", b.String())
	}
	if v.Acked != 3 || v.Failed != 1 || v.Unknown != 2 || v.UnknownIn != 1 || v.Stored != 6 || v.Devices != 4 || v.Faults != 1 {
		t.Errorf("counts: %+v", v)
	}
}

// edit changes goodHistory: it returns the events to use.
type edit func(evs []event) []event

// find is the index of the first event matching kind, device, conv and seq.
func find(t testing.TB, evs []event, kind, dev, conv string, seq int64) int {
	t.Helper()
	for i, e := range evs {
		if e.Kind == kind && e.Device == dev && e.Conv == conv && e.Seq == seq {
			return i
		}
	}
	t.Fatalf("no %s event of %q %q seq %d", kind, dev, conv, seq)
	return -1
}

func TestCheckHistoryViolations(t *testing.T) {
	tests := []struct {
		name string
		want string // the one violation kind expected
		dev  string // and its device ("" for none)
		seq  int64
		edit func(t *testing.T, evs []event) []event
	}{
		{"acked message lost", vAckedLost, "a1", 1, func(t *testing.T, evs []event) []event {
			// c seq 1 gone from the store and from the devices (so only the ack tells).
			evs = remove(evs, find(t, evs, evStored, "", "c", 1))
			evs = remove(evs, find(t, evs, evDeliver, "b1", "c", 1))
			evs = remove(evs, find(t, evs, evDeliver, "a2", "c", 1))
			// Renumber c's seq 2 as 1, so the conversation stays gapless.
			for i := range evs {
				if evs[i].Conv == "c" && evs[i].Seq == 2 {
					evs[i].Seq = 1
				}
			}
			return evs
		}},
		{"ack names another message", vAckMismatch, "a1", 1, func(t *testing.T, evs []event) []event {
			evs[find(t, evs, evOK, "a1", "c", 1)].MsgID = 999
			return evs
		}},
		{"refused send stored", vFailedStored, "a1", 3, func(t *testing.T, evs []event) []event {
			return storedEverywhere(evs, event{Kind: evStored, Conv: "c", Seq: 3, MsgID: 103, Sender: "alice", ClientMsgID: "m4"}, "a1", "a2", "b1")
		}},
		{"client_msg_id stored twice", vDedup, "", 3, func(t *testing.T, evs []event) []event {
			return storedEverywhere(evs, event{Kind: evStored, Conv: "c", Seq: 3, MsgID: 103, Sender: "alice", ClientMsgID: "m2"}, "a1", "a2", "b1")
		}},
		{"client_msg_id acked as two messages", vDedup, "a1", 1, func(t *testing.T, evs []event) []event {
			i := find(t, evs, evOK, "a1", "c", 1)
			again := evs[i]
			again.MsgID = 555 // after a crash, the retry was acked as a new message
			return insert(evs, i+1, again)
		}},
		{"seq gap", vSeqGap, "", 1, func(t *testing.T, evs []event) []event {
			// Conversation x, which nobody reads, holds seq 2 but no seq 1.
			return appendStored(evs, event{Kind: evStored, Conv: "x", Seq: 2, MsgID: 900, ContentType: groupChange})
		}},
		{"seq stored twice", vSeqDup, "", 2, func(t *testing.T, evs []event) []event {
			return appendStored(evs, event{Kind: evStored, Conv: "g", Seq: 2, MsgID: 902, ContentType: groupChange})
		}},
		{"msg_id used twice", vMsgIDDup, "", 1, func(t *testing.T, evs []event) []event {
			return appendStored(evs, event{Kind: evStored, Conv: "x", Seq: 1, MsgID: 101, ContentType: groupChange})
		}},
		{"stored message nobody sent", vPhantom, "", 1, func(t *testing.T, evs []event) []event {
			return appendStored(evs, event{Kind: evStored, Conv: "x", Seq: 1, MsgID: 901, Sender: "mallory", ClientMsgID: "zz"})
		}},
		{"message lost to a device", vNotDelivered, "b1", 3, func(t *testing.T, evs []event) []event {
			return remove(evs, find(t, evs, evDeliver, "b1", "g", 3))
		}},
		{"message delivered twice", vDuplicate, "b1", 1, func(t *testing.T, evs []event) []event {
			i := find(t, evs, evDeliver, "b1", "c", 1)
			return insert(evs, i+1, evs[i])
		}},
		{"messages out of order", vReorder, "a2", 2, func(t *testing.T, evs []event) []event {
			i := find(t, evs, evDeliver, "a2", "g", 2)
			j := find(t, evs, evDeliver, "a2", "g", 3)
			evs[i], evs[j] = evs[j], evs[i]
			return evs
		}},
		{"message to a non-member (before joining)", vLeak, "c1", 1, func(t *testing.T, evs []event) []event {
			i := find(t, evs, evDeliver, "c1", "g", 2)
			return insert(evs, i, event{Kind: evDeliver, Device: "c1", Conv: "g", Seq: 1, MsgID: 201})
		}},
		{"message to a kicked member", vLeak, "b1", 5, func(t *testing.T, evs []event) []event {
			// alice sends g3 after the kick; it reaches everyone entitled, and bob.
			k := find(t, evs, evMember, "", "g", 4)
			evs = insert(evs, k+1,
				event{Kind: evInvoke, Device: "a1", Conv: "g", ClientMsgID: "g3"},
				event{Kind: evOK, Device: "a1", Conv: "g", ClientMsgID: "g3", Seq: 5, MsgID: 205})
			return storedEverywhere(evs, event{Kind: evStored, Conv: "g", Seq: 5, MsgID: 205, Sender: "alice", ClientMsgID: "g3"}, "a2", "b1", "c1")
		}},
		{"message to a kicked member, not its own", vLeak, "b1", 6, func(t *testing.T, evs []event) []event {
			// bob's send authorized before the kick and stored after it reaches
			// bob's own device (he wrote it; docs/social.md) and the members.
			// That is no leak; alice's message after it is.
			k := find(t, evs, evMember, "", "g", 4)
			evs = insert(evs, k+1,
				event{Kind: evInvoke, Device: "b1", Conv: "g", ClientMsgID: "late"},
				event{Kind: evOK, Device: "b1", Conv: "g", ClientMsgID: "late", Seq: 5, MsgID: 205},
				event{Kind: evInvoke, Device: "a1", Conv: "g", ClientMsgID: "g3"},
				event{Kind: evOK, Device: "a1", Conv: "g", ClientMsgID: "g3", Seq: 6, MsgID: 206})
			evs = storedEverywhere(evs, event{Kind: evStored, Conv: "g", Seq: 5, MsgID: 205, Sender: "bob", ClientMsgID: "late"}, "a1", "a2", "b1", "c1")
			evs = storedEverywhere(evs, event{Kind: evStored, Conv: "g", Seq: 6, MsgID: 206, Sender: "alice", ClientMsgID: "g3"}, "a2", "c1")
			return insert(evs, find(t, evs, evSynced, "a1", "", 0), event{Kind: evDeliver, Device: "b1", Conv: "g", Seq: 6, MsgID: 206})
		}},
		{"altered message", vAltered, "b1", 1, func(t *testing.T, evs []event) []event {
			evs[find(t, evs, evDeliver, "b1", "c", 1)].MsgID = 777
			return evs
		}},
		{"device never synced", vUnsynced, "c1", 0, func(t *testing.T, evs []event) []event {
			return remove(evs, find(t, evs, evSynced, "c1", "", 0))
		}},
		{"node did not come back", vNodeNotBack, "", 0, func(t *testing.T, evs []event) []event {
			return append(evs, event{Kind: evFault, Op: "restart node 1", Err: "no Welcome in 30s"})
		}},
	}
	covered := make(map[string]bool)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := numbered(tc.edit(t, goodHistory()))
			v := checkHistory(evs)
			var b bytes.Buffer
			writeVerdict(&b, v)
			if v.OK {
				t.Fatalf("not caught:\n%s", b.String())
			}
			if len(v.Counts) != 1 || v.Counts[tc.want] != 1 {
				t.Fatalf("want exactly one %s, got %v:\n%s", tc.want, v.Counts, b.String())
			}
			x := v.Violations[0]
			if x.Device != tc.dev || x.Seq != tc.seq {
				t.Errorf("violation at device %q seq %d, want %q seq %d: %s", x.Device, x.Seq, tc.dev, tc.seq, x)
			}
			if tc.want != vNodeNotBack && tc.want != vUnsynced && len(x.Around) == 0 {
				t.Errorf("no events printed around %s", x)
			}
			if !strings.Contains(b.String(), "verdict: VIOLATED") {
				t.Errorf("table lacks the verdict:\n%s", b.String())
			}
		})
		covered[tc.want] = true
	}
	for _, k := range violationKinds {
		if !covered[k] {
			t.Errorf("violation kind %s has no test", k)
		}
	}
}

// TestHistoryRoundTrip: what --history writes, readHistory reads back to
// the same verdict.
func TestHistoryRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	h := newHistory(&buf)
	for _, e := range goodHistory() {
		h.add(e)
	}
	if err := h.flush(); err != nil {
		t.Fatal(err)
	}
	evs, err := readHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(goodHistory()) {
		t.Fatalf("read %d events, wrote %d", len(evs), len(goodHistory()))
	}
	if v := checkHistory(evs); !v.OK {
		t.Fatalf("round-tripped history violated: %v", v.Counts)
	}
	if _, err := readHistory(strings.NewReader("{\"kind\":\n")); err == nil {
		t.Error("a torn line was read without error")
	}
}

func remove(evs []event, i int) []event { return append(evs[:i:i], evs[i+1:]...) }

func insert(evs []event, i int, add ...event) []event {
	out := append(evs[:i:i], add...)
	return append(out, evs[i:]...)
}

// appendStored puts a stored event before the final syncs.
func appendStored(evs []event, e event) []event {
	i := find(t0{}, evs, evSynced, "a1", "", 0)
	return insert(evs, i, e)
}

// storedEverywhere stores e and delivers it to devs, before the final
// syncs.
func storedEverywhere(evs []event, e event, devs ...string) []event {
	evs = appendStored(evs, e)
	for _, d := range devs {
		evs = appendStored(evs, event{Kind: evDeliver, Device: d, Conv: e.Conv, Seq: e.Seq, MsgID: e.MsgID})
	}
	return evs
}

// t0 is a testing.TB for find outside a test's own t; goodHistory always
// has the event it looks for.
type t0 struct{ testing.TB }

func (t0) Helper()                   {}
func (t0) Fatalf(f string, a ...any) { panic(f) }
