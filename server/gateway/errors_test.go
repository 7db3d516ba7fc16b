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
	"github.com/starling-im/starling/storage"
)

func TestToStatus(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("%w: content is too big", apierr.ErrInvalidArgument), codes.InvalidArgument, "content is too big"},
		{fmt.Errorf("chat: %w", fmt.Errorf("%w: not a member", apierr.ErrPermissionDenied)), codes.PermissionDenied, "not a member"},
		{fmt.Errorf("sqlite: %w", storage.ErrNotFound), codes.NotFound, "not found"},
		{fmt.Errorf("chat: store message: %w", storage.ErrAmbiguousCommit), codes.Unavailable, "commit outcome unknown"},
		{fmt.Errorf("wrapped: %w", storage.ErrGroupFull), codes.ResourceExhausted, "group is full"},
		{context.Canceled, codes.Canceled, ""},
		{status.Error(codes.Aborted, "as is"), codes.Aborted, "as is"},
	} {
		st := toStatus(log, tc.err)
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%v → %v %q, want %v containing %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
	// Unknown errors become a bare Internal: the detail is logged, not sent.
	st := toStatus(log, errors.New("pq: password authentication failed for user secret"))
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
		t.Fatalf("internal error leaked: %v %q", st.Code(), st.Message())
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Fatal("internal error was not logged")
	}
}
