package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/server/apierr"
)

func TestToStatus(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	long := strings.Repeat("x", 200<<10)
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		// The table's fixed message, whatever detail wraps it.
		{fmt.Errorf("%w: %d bytes", apierr.ContentTooLarge, 70000), codes.InvalidArgument, apierr.ContentTooLarge.Message},
		{fmt.Errorf("chat: %w", fmt.Errorf("%w: %s", apierr.BadConversationID, long)), codes.InvalidArgument, apierr.BadConversationID.Message},
		{fmt.Errorf("%w: chat: store message: pgconn: connection reset", apierr.Unavailable), codes.Unavailable, apierr.Unavailable.Message},
		{fmt.Errorf("%w: sqlite: add members: 2 members + 1, limit 2", apierr.GroupFull), codes.ResourceExhausted, apierr.GroupFull.Message},
		{apierr.ClientMsgIDReused, codes.AlreadyExists, apierr.ClientMsgIDReused.Message},
		{context.Canceled, codes.Canceled, "canceled"},
		{status.Error(codes.Aborted, "as is"), codes.Aborted, "as is"},
	} {
		st := toStatus(log, tc.err)
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("%.80v → %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
	// The detail is logged, not sent.
	if !strings.Contains(logs.String(), "70000 bytes") {
		t.Error("refusal detail was not logged")
	}
	// Unknown errors (a storage error nobody mapped, a bug) become a bare
	// Internal: the detail is logged, not sent.
	for _, err := range []error{
		errors.New("pq: password authentication failed for user secret"),
		fmt.Errorf("chat: list members: %w", errors.New("not found")),
	} {
		st := toStatus(log, err)
		if st.Code() != codes.Internal || st.Message() != apierr.Internal.Message {
			t.Errorf("%v → %v %q, want a bare Internal", err, st.Code(), st.Message())
		}
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Fatal("internal error was not logged")
	}
}

// Every entry of the table has a code a client can act on and a message of
// its own (a client may switch on the message when codes repeat).
func TestErrorTable(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range apierr.All() {
		if e.Code == codes.OK || e.Code == codes.Unknown || e.Message == "" {
			t.Errorf("entry %q has code %v", e.Message, e.Code)
		}
		if seen[e.Message] {
			t.Errorf("message %q appears twice", e.Message)
		}
		seen[e.Message] = true
	}
}
