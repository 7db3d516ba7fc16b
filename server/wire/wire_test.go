package wire

import (
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

func TestSharedEncodesOnceAndPassesThrough(t *testing.T) {
	push := &starlingv1.StreamResponse{Frame: &starlingv1.StreamResponse_Push{Push: &starlingv1.Push{Messages: []*starlingv1.Message{
		{MsgId: 7, ConversationId: "grp:g", Seq: 3, Content: &starlingv1.Content{Text: "hi"}},
	}}}}
	sh := &Shared{Msg: push}
	c := NewCodec()
	var wg sync.WaitGroup
	outs := make([][]byte, 8)
	for i := range outs {
		wg.Go(func() {
			b, err := sh.Bytes()
			if err != nil {
				t.Error(err)
				return
			}
			bs, err := c.Marshal(b)
			if err != nil {
				t.Error(err)
				return
			}
			outs[i] = bs.Materialize()
		})
	}
	wg.Wait()
	for _, o := range outs {
		got := new(starlingv1.StreamResponse)
		if err := proto.Unmarshal(o, got); err != nil || !proto.Equal(got, push) {
			t.Fatalf("decoded %v (%v), want %v", got, err, push)
		}
	}
	// Ordinary messages go through the protobuf codec.
	bs, err := c.Marshal(push)
	if err != nil {
		t.Fatal(err)
	}
	got := new(starlingv1.StreamResponse)
	if err := c.Unmarshal(bs, got); err != nil || !proto.Equal(got, push) {
		t.Fatalf("round trip %v (%v)", got, err)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("a non-message was encoded")
	}
}
