package hub

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// BenchmarkPushFrame measures encoding and decoding a StreamResponse
// carrying a Push of 1 and of 16 typical messages (the writer packs a
// backlog into one frame). The server encodes one such frame per device
// it pushes to, so a group message to 1,000 online members costs 1,000
// encodes of the 1-message frame unless it is encoded once and shared.
//
//	go test -run '^$' -bench PushFrame ./server/hub/
func BenchmarkPushFrame(b *testing.B) {
	for _, n := range []int{1, 16} {
		msgs := make([]*starlingv1.Message, n)
		for i := range msgs {
			msgs[i] = &starlingv1.Message{
				MsgId:          7_300_000_000_000_000 + int64(i),
				ConversationId: "c2c:u3kq7vxd2mfa5qzl7kq:u9zt2a6yq0pnw3rk5jd",
				Seq:            int64(1000 + i),
				SenderId:       "u3kq7vxd2mfa5qzl7kq",
				SenderDeviceId: "phone",
				ClientMsgId:    "5f0c2b9e-6f4c-4d7e-9a8a-1d2c3b4a5e6f",
				Content:        &starlingv1.Content{Text: "a typical short chat message, about this long", Data: []byte("12345678")},
				ServerTime:     timestamppb.New(time.Unix(1_790_000_000, 0)),
			}
		}
		frame := pushFrame(msgs)
		wire, err := proto.Marshal(frame)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("encode/messages=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if _, err := proto.Marshal(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("decode/messages=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				var f starlingv1.StreamResponse
				if err := proto.Unmarshal(wire, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
