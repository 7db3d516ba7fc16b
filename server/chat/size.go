package chat

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// frameSlack is room kept in every response for what is not a message:
// the frame's own fields (ref, conversation id, has_more, latest seq).
const frameSlack = 4 << 10

// messageCost is what m adds to a frame that lists it: its encoding plus
// the field's tag and length.
func messageCost(m *starlingv1.Message) int {
	n := proto.Size(m)
	return protowire.SizeTag(1) + protowire.SizeBytes(n)
}

// fitOldest returns how many of msgs, from the first, fit in maxBytes. At
// least one always fits: a single message is bounded by the content limit,
// far below any frame limit, and a batch must make progress.
func fitOldest(msgs []*starlingv1.Message, maxBytes int) int {
	budget := maxBytes - frameSlack
	for i, m := range msgs {
		if budget -= messageCost(m); budget < 0 && i > 0 {
			return i
		}
	}
	return len(msgs)
}

// fitNewest returns how many of msgs, from the last, fit in maxBytes (at
// least one).
func fitNewest(msgs []*starlingv1.Message, maxBytes int) int {
	budget := maxBytes - frameSlack
	for i := len(msgs) - 1; i >= 0; i-- {
		if budget -= messageCost(msgs[i]); budget < 0 && i < len(msgs)-1 {
			return len(msgs) - 1 - i
		}
	}
	return len(msgs)
}
