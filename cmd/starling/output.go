package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// printer prints messages for people (one line each) or scripts (one JSON
// object per line), turning user ids into usernames.
type printer struct {
	out   io.Writer
	cl    *client.Client
	self  *config
	json  bool
	names map[string]string // user id → username
}

func newPrinter(out io.Writer, cl *client.Client, self *config, asJSON bool) *printer {
	return &printer{out: out, cl: cl, self: self, json: asJSON,
		names: map[string]string{self.UserID: self.Username}}
}

// name is a user's username, or the id when the lookup fails: output must
// not stop because one name cannot be found.
func (p *printer) name(ctx context.Context, userID string) string {
	if n, ok := p.names[userID]; ok {
		return n
	}
	n := userID
	if u, err := p.cl.GetUser(ctx, userID); err == nil {
		n = u.GetUsername()
	}
	p.names[userID] = n
	return n
}

// label names a conversation: "@bob" for one-to-one, "grp:<id>" for groups.
func (p *printer) label(ctx context.Context, conversationID string) string {
	id, isGroup, ok := client.Peer(conversationID, p.self.UserID)
	switch {
	case !ok:
		return conversationID
	case isGroup:
		return client.GroupConversationID(id)
	default:
		return "@" + p.name(ctx, id)
	}
}

// jsonMessage is the --json form of a message.
type jsonMessage struct {
	ConversationID string    `json:"conversation_id"`
	Seq            int64     `json:"seq"`
	MsgID          int64     `json:"msg_id"`
	SenderID       string    `json:"sender_id"`
	Sender         string    `json:"sender"`
	SenderDeviceID string    `json:"sender_device_id"`
	ClientMsgID    string    `json:"client_msg_id"`
	Type           string    `json:"type,omitempty"`
	Text           string    `json:"text"`
	Data           []byte    `json:"data,omitempty"`
	ServerTime     time.Time `json:"server_time"`
}

func (p *printer) message(ctx context.Context, m *starlingv1.Message) error {
	sender := p.name(ctx, m.GetSenderId())
	if p.json {
		return writeJSON(p.out, jsonMessage{
			ConversationID: m.GetConversationId(),
			Seq:            m.GetSeq(),
			MsgID:          m.GetMsgId(),
			SenderID:       m.GetSenderId(),
			Sender:         sender,
			SenderDeviceID: m.GetSenderDeviceId(),
			ClientMsgID:    m.GetClientMsgId(),
			Type:           m.GetContent().GetType(),
			Text:           m.GetContent().GetText(),
			Data:           m.GetContent().GetData(),
			ServerTime:     m.GetServerTime().AsTime(),
		})
	}
	_, err := fmt.Fprintf(p.out, "%s [%s #%d] %s: %s\n",
		m.GetServerTime().AsTime().Local().Format(time.DateTime),
		p.label(ctx, m.GetConversationId()), m.GetSeq(), sender, body(m.GetContent()))
	return err
}

// body is the text of a message on one line; other kinds show their type.
func body(c *starlingv1.Content) string {
	text := strings.ReplaceAll(c.GetText(), "\n", "\n    ")
	if t := c.GetType(); t != "" && t != "text" {
		return fmt.Sprintf("<%s, %d bytes> %s", t, len(c.GetData()), text)
	}
	return text
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
