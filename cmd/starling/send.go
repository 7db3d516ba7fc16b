package main

import (
	"context"
	"strings"

	"github.com/starling-im/starling/client"
)

func cmdSend(ctx context.Context, a *app, args []string) error {
	return sendCommand(ctx, a, "send", args, resolveTarget)
}

func cmdGsend(ctx context.Context, a *app, args []string) error {
	return sendCommand(ctx, a, "gsend", args, resolveGroup)
}

// sendCommand sends one message: `<name> <to> <text…>`; the words of the
// text are joined with spaces, and resolve says whom <to> names.
func sendCommand(ctx context.Context, a *app, name string, args []string,
	resolve func(context.Context, *client.Client, string) (target, error)) error {
	fs := newFlags(name)
	asJSON := fs.Bool("json", false, "print the SendAck as JSON")
	pos, err := parse(fs, args, 2, -1)
	if err != nil {
		return err
	}
	to, text := pos[0], strings.Join(pos[1:], " ")
	c, err := a.loadConfig()
	if err != nil {
		return err
	}
	token := c.SendToken
	if token == "" {
		token = c.Token // a login saved before send tokens existed
	}
	cl, err := a.dial(c, token)
	if err != nil {
		return err
	}
	defer cl.Close()
	t, err := resolve(ctx, cl, to)
	if err != nil {
		return err
	}
	// A send-only stream: it must not take this device's messages away
	// from a listen or chat running elsewhere.
	s, err := cl.Open(ctx, client.SendOnly())
	if err != nil {
		return err
	}
	defer s.Close()
	ack, err := s.SendText(ctx, t.recipient(), text)
	if err != nil {
		return reword(err, "send to "+t.String())
	}
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"conversation_id": ack.GetConversationId(), "seq": ack.GetSeq(), "msg_id": ack.GetMsgId(),
			"server_time": ack.GetServerTime().AsTime(), "duplicate": ack.GetDuplicate(),
		})
	}
	return say(a.stdout, "sent to %s #%d\n", t.label(), ack.GetSeq())
}
