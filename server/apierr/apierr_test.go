package apierr_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// Database failures worth a retry become Unavailable, keeping the cause for
// the log; others stay unmapped (the edge reports them as Internal).
func TestFromStorage(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{fmt.Errorf("postgres: append: %w", storage.ErrUnavailable), true},
		{fmt.Errorf("postgres: commit: %w", storage.ErrAmbiguousCommit), true},
		{fmt.Errorf("sqlite: %w", storage.ErrNotFound), false},
		{errors.New("driver: syntax error"), false},
	} {
		got := apierr.FromStorage("chat: op", tc.err)
		if errors.Is(got, apierr.Unavailable) != tc.unavailable {
			t.Errorf("%v → %v; want unavailable %v", tc.err, got, tc.unavailable)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%v lost its cause", got)
		}
	}
}
