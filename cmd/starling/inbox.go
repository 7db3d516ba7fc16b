package main

import (
	"context"
	"fmt"
	"time"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// cmdInbox prints the inbox: one line per conversation, newest activity
// first, with its unread count and last message.
func cmdInbox(ctx context.Context, a *app, args []string) error {
	fs := newFlags("inbox")
	limit := fs.Int("limit", 50, "at most this many conversations (1-1000)")
	asJSON := fs.Bool("json", false, "one JSON object per conversation (with its id)")
	verbose := fs.Bool("v", false, "also print each conversation's id")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 {
		return usageErrorf("inbox: --limit must be 1-1000 (see 'starling inbox --help')")
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	list, next, err := cl.Inbox(ctx, int32(*limit), "")
	if err != nil {
		return err
	}
	p := newPrinter(a.stdout, cl, c, *asJSON)
	for _, st := range list {
		if err := p.conversation(ctx, st, *verbose); err != nil {
			return err
		}
	}
	if next != "" && !*asJSON {
		say(a.stderr, "(more conversations: --limit %d)\n", min(1000, 2**limit))
	}
	return nil
}

// conversation prints one inbox entry (-v: with the conversation id).
func (p *printer) conversation(ctx context.Context, st *starlingv1.ConversationState, verbose bool) error {
	if id, isGroup, _ := client.Peer(st.GetConversationId(), p.self.UserID); isGroup && st.GetGroupName() != "" {
		p.groups[id] = st.GetGroupName() // the inbox names its groups: no lookup
	}
	label := p.label(ctx, st.GetConversationId())
	last := st.GetLastMessage()
	if p.json {
		v := map[string]any{
			"conversation_id": st.GetConversationId(), "name": label, "unread": st.GetUnreadCount(),
			"read_seq": st.GetReadSeq(), "latest_seq": st.GetLatestSeq(), "muted": st.GetMuted(),
			"peer_read_seq": st.GetPeerReadSeq(), "peer_delivered_seq": st.GetPeerDeliveredSeq(),
			"member_count": st.GetMemberCount(),
		}
		if last != nil {
			v["last_sender"] = p.name(ctx, last.GetSenderId())
			v["last_text"] = last.GetContent().GetText()
			v["last_time"] = last.GetServerTime().AsTime()
		}
		return writeJSON(p.out, v)
	}
	line := fmt.Sprintf("%-24s %3d unread", label, st.GetUnreadCount())
	if st.GetMuted() {
		line += " (muted)"
	}
	if last != nil {
		tick := ""
		if last.GetSenderId() == p.self.UserID {
			// One tick delivered, two read (one-to-one).
			switch {
			case st.GetPeerReadSeq() >= last.GetSeq():
				tick = " ✓✓"
			case st.GetPeerDeliveredSeq() >= last.GetSeq():
				tick = " ✓"
			}
		}
		line += fmt.Sprintf("  %s %s: %s%s", last.GetServerTime().AsTime().Local().Format(time.DateTime),
			p.name(ctx, last.GetSenderId()), body(last.GetContent()), tick)
	}
	return say(p.out, "%s%s\n", line, idSuffix(verbose, st.GetConversationId()))
}

// cmdRead marks a conversation read, up to its newest message or --seq.
func cmdRead(ctx context.Context, a *app, args []string) error {
	fs := newFlags("read")
	seq := fs.Int64("seq", 0, "read up to this seq (default: the newest message)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *seq < 0 {
		return usageErrorf("read: --seq must not be negative (see 'starling read --help')")
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	conv, err := conversationID(ctx, cl, c, pos[0])
	if err != nil {
		return err
	}
	upto := *seq
	if upto == 0 {
		page, err := cl.GetHistory(ctx, conv, 0, 1)
		if err != nil {
			return err
		}
		msgs := page.GetMessages()
		if len(msgs) == 0 {
			return say(a.stdout, "nothing to read\n")
		}
		upto = msgs[len(msgs)-1].GetSeq()
	}
	if err := cl.MarkRead(ctx, conv, upto); err != nil {
		return err
	}
	p := newPrinter(a.stdout, cl, c, false)
	return say(a.stdout, "%s read up to #%d\n", p.label(ctx, conv), upto)
}

// receipt prints a Receipt (listen).
func (p *printer) receipt(ctx context.Context, r *starlingv1.Receipt) error {
	who := p.name(ctx, r.GetUserId())
	if p.json {
		return writeJSON(p.out, map[string]any{"event": "receipt", "conversation_id": r.GetConversationId(),
			"user_id": r.GetUserId(), "user": who, "delivered_seq": r.GetDeliveredSeq(), "read_seq": r.GetReadSeq()})
	}
	return say(p.out, "[%s] %s: delivered #%d, read #%d\n", p.label(ctx, r.GetConversationId()), who, r.GetDeliveredSeq(), r.GetReadSeq())
}

// typing prints a TypingNotice (listen).
func (p *printer) typing(ctx context.Context, n *starlingv1.TypingNotice) error {
	who := p.name(ctx, n.GetUserId())
	if p.json {
		return writeJSON(p.out, map[string]any{"event": "typing", "conversation_id": n.GetConversationId(), "user_id": n.GetUserId(), "user": who})
	}
	return say(p.out, "[%s] %s is typing…\n", p.label(ctx, n.GetConversationId()), who)
}
