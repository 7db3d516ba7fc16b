package chat

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/storage"
)

// toProto turns a stored message into its wire form. Content is stored as
// the encoded starling.v1.Content the client sent.
func toProto(m storage.Message) (*starlingv1.Message, error) {
	c := new(starlingv1.Content)
	if err := proto.Unmarshal(m.Content, c); err != nil {
		return nil, fmt.Errorf("chat: decode content of %s/%d: %w", m.ConversationID, m.Seq, err)
	}
	return &starlingv1.Message{
		MsgId:          m.MsgID,
		ConversationId: m.ConversationID,
		Seq:            m.Seq,
		SenderId:       m.SenderID,
		SenderDeviceId: m.SenderDeviceID,
		ClientMsgId:    m.ClientMsgID,
		Content:        c,
		ServerTime:     timestamppb.New(m.CreatedAt),
	}, nil
}

func toProtos(ms []storage.Message) ([]*starlingv1.Message, error) {
	out := make([]*starlingv1.Message, len(ms))
	for i, m := range ms {
		p, err := toProto(m)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}
