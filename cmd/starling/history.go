package main

import (
	"context"
)

func cmdHistory(ctx context.Context, a *app, args []string) error {
	fs := newFlags("history")
	before := fs.Int64("before", 0, "only messages with seq below this")
	limit := fs.Int("limit", 20, "at most this many messages (1-500)")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > 500 || *before < 0 {
		return usageErrorf("history: --limit must be 1-500 and --before not negative (see 'starling history --help')")
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
	page, err := cl.GetHistory(ctx, conv, *before, int32(*limit))
	if err != nil {
		return err
	}
	p := newPrinter(a.stdout, cl, c, *asJSON)
	for _, m := range page.GetMessages() {
		if err := p.message(ctx, m); err != nil {
			return err
		}
	}
	if msgs := page.GetMessages(); page.GetHasMore() && len(msgs) > 0 && !*asJSON {
		say(a.stderr, "(older messages: --before %d)\n", msgs[0].GetSeq())
	}
	return nil
}

func cmdConversations(ctx context.Context, a *app, args []string) error {
	fs := newFlags("conversations")
	asJSON := fs.Bool("json", false, "one JSON object per conversation (with its id)")
	verbose := fs.Bool("v", false, "also print each conversation's id")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	convs, err := cl.ListConversations(ctx)
	if err != nil {
		return err
	}
	p := newPrinter(a.stdout, cl, c, *asJSON)
	for _, st := range convs {
		if *asJSON {
			err = writeJSON(a.stdout, map[string]any{
				"conversation_id": st.GetConversationId(), "name": p.label(ctx, st.GetConversationId()),
				"latest_seq": st.GetLatestSeq(), "delivered_seq": st.GetDeliveredSeq(), "joined_seq": st.GetJoinedSeq(),
			})
		} else {
			err = say(a.stdout, "%-24s latest #%d, delivered #%d%s\n",
				p.label(ctx, st.GetConversationId()), st.GetLatestSeq(), st.GetDeliveredSeq(), idSuffix(*verbose, st.GetConversationId()))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// idSuffix is "  (<id>)" for -v, else "".
func idSuffix(verbose bool, id string) string {
	if !verbose {
		return ""
	}
	return "  (" + id + ")"
}
