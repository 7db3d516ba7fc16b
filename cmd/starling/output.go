package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/starling-im/starling/client"
	"github.com/starling-im/starling/client/textsafe"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Everything the CLI prints goes through say (for people) or writeJSON (for
// scripts), so that text from the server or from other people (message
// text, usernames, group names, ids, error messages) cannot control the
// terminal: a message holding "\r", "ESC [2K" and a fake
// "[@admin #1] admin: …" must not erase its own line and print a forged
// one in its place. TestOutputOnlyThroughSay keeps it so.

// say writes text for a person: format is the program's own text, and every
// argument that is text (strings, errors, Stringers) is escaped first with
// textsafe.Escape, which shows control characters (\n, \r, \t, ESC as \x1b,
// C1 controls) and bidirectional-formatting characters (U+202E as \u202e)
// as visible escapes. A message therefore always prints on one line.
func say(w io.Writer, format string, args ...any) error {
	safe := make([]any, len(args))
	for i, v := range args {
		safe[i] = printable(v)
	}
	_, err := fmt.Fprintf(w, format, safe...)
	return err
}

// printable is v made safe to print: text escaped; numbers, times and the
// like as they are.
func printable(v any) any {
	switch v := v.(type) {
	case nil:
		return v
	case string:
		return textsafe.Escape(v)
	case error:
		return textsafe.Escape(v.Error())
	case fmt.Stringer:
		return textsafe.Escape(v.String())
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = textsafe.Escape(s)
		}
		return out
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.String:
		return textsafe.Escape(rv.String())
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return v
	}
	// Anything else is printed as %v would, then escaped.
	return textsafe.Escape(fmt.Sprint(v))
}

// showUsage prints the usage text (the program's own).
func showUsage(w io.Writer) {
	io.WriteString(w, usage)
}

// showText prints the program's own text (help) as it is.
func showText(w io.Writer, text string) {
	io.WriteString(w, text)
}

// printer prints messages for people (one line each) or scripts (one JSON
// object per line), turning user ids into usernames and group ids into
// group names. It asks the server once per id and run.
type printer struct {
	out    io.Writer
	cl     *client.Client
	self   *config
	json   bool
	names  map[string]string // user id → username
	groups map[string]string // group id → group name
}

func newPrinter(out io.Writer, cl *client.Client, self *config, asJSON bool) *printer {
	return &printer{out: out, cl: cl, self: self, json: asJSON,
		names:  map[string]string{self.UserID: self.Username},
		groups: map[string]string{}}
}

// groupName is a group's name, or its id when the lookup fails (a group
// left or disbanded, the server unreachable).
func (p *printer) groupName(ctx context.Context, groupID string) string {
	if n, ok := p.groups[groupID]; ok {
		return n
	}
	n := groupID
	if g, _, err := p.cl.GetGroup(ctx, groupID); err == nil && g.GetName() != "" {
		n = g.GetName()
	}
	p.groups[groupID] = n
	return n
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

// label names a conversation: "@bob" for one-to-one, "#<group name>" for
// groups (the id in place of a name that cannot be found), "events" for
// the user's event stream.
func (p *printer) label(ctx context.Context, conversationID string) string {
	id, isGroup, ok := client.Peer(conversationID, p.self.UserID)
	switch {
	case conversationID == "evt:"+p.self.UserID:
		return "events" // the user's own event stream
	case !ok:
		return conversationID
	case isGroup:
		return "#" + p.groupName(ctx, id)
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
	if ch, ok := client.GroupChangeOf(m); ok {
		err := say(p.out, "%s [%s #%d] * %s\n",
			m.GetServerTime().AsTime().Local().Format(time.DateTime),
			p.label(ctx, m.GetConversationId()), m.GetSeq(), p.groupChangeText(ctx, ch))
		// A rename: later lines use the new name.
		if id, isGroup, _ := client.Peer(m.GetConversationId(), p.self.UserID); isGroup && ch.GetInfo().GetName() != "" {
			p.groups[id] = ch.GetInfo().GetName()
		}
		return err
	}
	return say(p.out, "%s [%s #%d] %s: %s\n",
		m.GetServerTime().AsTime().Local().Format(time.DateTime),
		p.label(ctx, m.GetConversationId()), m.GetSeq(), sender, body(m.GetContent()))
}

// body is the text of a message; other kinds show their type. say prints
// it on one line: a line break in the text shows as \n.
func body(c *starlingv1.Content) string {
	if t := c.GetType(); t != "" && t != "text" {
		return fmt.Sprintf("<%s, %d bytes> %s", t, len(c.GetData()), c.GetText())
	}
	return c.GetText()
}

// writeJSON prints v as one line of JSON. encoding/json escapes the C0
// controls (\n, \r, ESC, …) but writes DEL, the C1 controls and the
// bidirectional-formatting characters as they are; those are escaped too
// (\u007f, \u009b, \u202e: the same string to a JSON parser), so --json
// output is as safe on a terminal as the rest.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(escapeJSON(b), '\n'))
	return err
}

// escapeJSON replaces every textsafe.Unsafe character of encoded JSON by its
// \uNNNN escape. Marshal writes such characters only inside strings, where
// the escape means the same character.
func escapeJSON(b []byte) []byte {
	if !bytes.ContainsFunc(b, textsafe.Unsafe) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if textsafe.Unsafe(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}
