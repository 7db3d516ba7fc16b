package main

import (
	"bufio"
	"context"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

func cmdListen(ctx context.Context, a *app, args []string) error {
	fs := newFlags("listen")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	// Receipts and typing notices come on the session's loop; they are
	// printed here, with the messages and events, so lines never
	// interleave.
	signals := make(chan any, 256)
	signal := func(v any) {
		select {
		case signals <- v:
		default: // a stalled terminal: drop rather than stall the session
		}
	}
	s, err := a.openSession(ctx, c, cl, client.WithEvents(),
		client.WithReceipts(func(r *starlingv1.Receipt) { signal(r) }),
		client.WithTyping(func(n *starlingv1.TypingNotice) { signal(n) }),
		client.WithConnected(func(w *starlingv1.Welcome, reconnect bool) {
			if reconnect { // the first is printed below, before any message
				signal(reconnected{w})
			}
		}))
	if err != nil {
		return err
	}
	defer s.Close()
	p := newPrinter(a.stdout, cl, c, *asJSON)
	server := a.target(c).addr
	if err := p.connected(s.Welcome(), c, server); err != nil {
		return err
	}
	msgs, evs := s.Messages(), s.Events()
	for msgs != nil || evs != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			if err := p.message(ctx, m); err != nil {
				return err
			}
		case ev, ok := <-evs:
			if !ok {
				evs = nil
				continue
			}
			if err := p.event(ctx, ev); err != nil {
				return err
			}
		case sg := <-signals:
			var err error
			switch sg := sg.(type) {
			case *starlingv1.Receipt:
				err = p.receipt(ctx, sg)
			case *starlingv1.TypingNotice:
				err = p.typing(ctx, sg)
			case reconnected:
				err = p.reconnected(sg.welcome, server)
			}
			if err != nil {
				return err
			}
		}
	}
	return sessionEnd(ctx, s)
}

// reconnected is a stream welcomed after the connection was lost.
type reconnected struct{ welcome *starlingv1.Welcome }

// connected prints that listen is connected, so a person sees it works.
func (p *printer) connected(w *starlingv1.Welcome, c *config, server string) error {
	if p.json {
		return writeJSON(p.out, map[string]any{"event": "connected", "username": c.Username, "user_id": w.GetUserId(),
			"device_id": w.GetDeviceId(), "server": server, "node_id": w.GetNodeId()})
	}
	return say(p.out, "listening as %s (device %s) on %s\n", c.Username, w.GetDeviceId(), server)
}

// reconnected prints that a lost connection came back.
func (p *printer) reconnected(w *starlingv1.Welcome, server string) error {
	if p.json {
		return writeJSON(p.out, map[string]any{"event": "reconnected", "server": server, "node_id": w.GetNodeId()})
	}
	return say(p.out, "reconnected to %s\n", server)
}

// openSession opens this device's stream with the per-device state file, so
// only what is new since the last run is printed.
func (a *app) openSession(ctx context.Context, c *config, cl *client.Client, opts ...client.SessionOption) (*client.Session, error) {
	store, err := a.openState(c)
	if err != nil {
		return nil, err
	}
	return cl.Open(ctx, append([]client.SessionOption{client.WithStateStore(store)}, opts...)...)
}

// sessionEnd is the command's result once the session is over: nil when
// the user interrupted it, else why it ended (logged out, replaced, …).
func sessionEnd(ctx context.Context, s *client.Session) error {
	<-s.Done()
	if ctx.Err() != nil {
		return nil
	}
	return s.Err()
}

// cmdChat sends each line of stdin to a user and prints every incoming
// message (all conversations, so none is skipped for a later listen). At
// the end of stdin it waits for its last message to come back, then stops.
func cmdChat(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("chat"), args, 1, 1)
	if err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	to, err := userID(ctx, cl, pos[0])
	if err != nil {
		return err
	}
	s, err := a.openSession(ctx, c, cl)
	if err != nil {
		return err
	}
	defer s.Close()

	// The reader ends at EOF; a read blocked on a terminal cannot be
	// interrupted, so when the session ends first it is left to the exit.
	finished := make(chan *starlingv1.SendAck, 1)
	go func() {
		var last *starlingv1.SendAck
		sc := bufio.NewScanner(a.stdin)
		for sc.Scan() && ctx.Err() == nil {
			if sc.Text() == "" {
				continue
			}
			ack, err := s.SendText(ctx, client.ToUser(to), sc.Text())
			if err != nil {
				say(a.stderr, "starling: %s\n", a.describe(err))
				continue
			}
			last = ack
		}
		finished <- last
	}()

	p := newPrinter(a.stdout, cl, c, false)
	printed := make(map[string]int64) // conversation → highest seq printed
	var until *starlingv1.SendAck
	for {
		select {
		case m, ok := <-s.Messages():
			if !ok {
				return sessionEnd(ctx, s)
			}
			if err := p.message(ctx, m); err != nil {
				return err
			}
			printed[m.GetConversationId()] = m.GetSeq()
			if until != nil && m.GetConversationId() == until.GetConversationId() && m.GetSeq() >= until.GetSeq() {
				return nil
			}
		case ack := <-finished:
			finished = nil
			if ack == nil || printed[ack.GetConversationId()] >= ack.GetSeq() {
				return nil
			}
			until = ack
		}
	}
}
