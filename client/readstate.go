package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Read state, the inbox, receipts and typing.
//
// Receipts and typing notices arrive on the session's stream; give Open a
// handler for each (WithReceipts, WithTyping). Handlers run on the
// session's loop goroutine: they must return quickly (hand the value to
// a channel or the UI thread).

// Inbox lists one page of the caller's conversations, newest activity
// first, each with its last message, unread count, read cursor, mute and
// (groups) name and member count. pageSize 0 lists every conversation;
// pass the returned token to get the next page ("" after the last).
func (c *Client) Inbox(ctx context.Context, pageSize int32, pageToken string) ([]*starlingv1.ConversationState, string, error) {
	resp, err := c.chat.ListConversations(ctx, &starlingv1.ListConversationsRequest{PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return nil, "", fmt.Errorf("inbox: %w", err)
	}
	return resp.GetConversations(), resp.GetNextPageToken(), nil
}

// MarkRead moves the caller's read cursor in a conversation to seq (every
// message up to it is read, on every device of the user). Cursors never
// move back. Session.MarkRead does the same over the stream.
func (c *Client) MarkRead(ctx context.Context, conversationID string, seq int64) error {
	if _, err := c.chat.MarkRead(ctx, &starlingv1.MarkReadRequest{ConversationId: conversationID, Seq: seq}); err != nil {
		return fmt.Errorf("mark %q read to %d: %w", conversationID, seq, err)
	}
	return nil
}

// Mute mutes a conversation for the caller until until, or for ever when
// until is the zero time.
func (c *Client) Mute(ctx context.Context, conversationID string, until time.Time) error {
	req := &starlingv1.SetMuteRequest{ConversationId: conversationID, Forever: until.IsZero()}
	if !until.IsZero() {
		req.MutedUntil = timestamppb.New(until)
	}
	if _, err := c.chat.SetMute(ctx, req); err != nil {
		return fmt.Errorf("mute %q: %w", conversationID, err)
	}
	return nil
}

// Unmute unmutes a conversation for the caller.
func (c *Client) Unmute(ctx context.Context, conversationID string) error {
	if _, err := c.chat.SetMute(ctx, &starlingv1.SetMuteRequest{ConversationId: conversationID}); err != nil {
		return fmt.Errorf("unmute %q: %w", conversationID, err)
	}
	return nil
}

// ReadBy says how many of the other members read the message with seq,
// and who (at most limit; 0 means 20).
func (c *Client) ReadBy(ctx context.Context, conversationID string, seq int64, limit int32) (int32, []string, error) {
	resp, err := c.chat.GetReadReceipts(ctx, &starlingv1.GetReadReceiptsRequest{ConversationId: conversationID, Seq: seq, Limit: limit})
	if err != nil {
		return 0, nil, fmt.Errorf("read receipts of %q %d: %w", conversationID, seq, err)
	}
	return resp.GetReadCount(), resp.GetReadBy(), nil
}

// WithReceipts makes the session call f with every Receipt: where another
// user (delivered and read ticks) or this user on another device (read
// cursor) stands in a conversation. Apply positions with max. After a
// reconnect, f gets one Receipt per one-to-one conversation that changed
// while the device was away.
func WithReceipts(f func(*starlingv1.Receipt)) SessionOption {
	return func(c *sessionConfig) { c.onReceipt = f }
}

// WithTyping makes the session call f with every TypingNotice: another
// member is typing (show it for a few seconds).
func WithTyping(f func(*starlingv1.TypingNotice)) SessionOption {
	return func(c *sessionConfig) { c.onTyping = f }
}

// frameRequest asks the loop to write a frame on the current stream; ok
// says whether there was one.
type frameRequest struct {
	req *starlingv1.StreamRequest
	ok  chan bool
}

// writeFrame writes req on the current stream, if any.
func (s *Session) writeFrame(ctx context.Context, req *starlingv1.StreamRequest) (bool, error) {
	fr := frameRequest{req: req, ok: make(chan bool, 1)}
	if !s.post(ctx, fr) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		return false, ErrClosed
	}
	select {
	case ok := <-fr.ok:
		return ok, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-s.done:
		return false, ErrClosed
	}
}

// MarkRead moves the user's read cursor in a conversation to seq, over the
// stream (no answer; a refusal is logged), or with the unary call while
// the session is reconnecting.
func (s *Session) MarkRead(ctx context.Context, conversationID string, seq int64) error {
	ok, err := s.writeFrame(ctx, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_MarkRead{MarkRead: &starlingv1.MarkRead{ConversationId: conversationID, Seq: seq}}})
	if err != nil || ok {
		return err
	}
	return s.c.MarkRead(ctx, conversationID, seq)
}

// Typing tells the conversation's other members that the user is typing.
// Call it every few seconds while the user types (the server relays one a
// second per device). While the session is reconnecting it does nothing.
func (s *Session) Typing(ctx context.Context, conversationID string) error {
	_, err := s.writeFrame(ctx, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Typing{Typing: &starlingv1.Typing{ConversationId: conversationID}}})
	return err
}
