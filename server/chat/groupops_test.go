package chat

import (
	"context"
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/storage"
)

// A batch with group changes is cut so that each change commits alone, in
// its place among the sends.
func TestSplitChanges(t *testing.T) {
	change := func(context.Context, storage.NewMessage) (storage.AppendResult, *starlingv1.Content, error) {
		return storage.AppendResult{}, nil, nil
	}
	send, chg := func() *pending { return &pending{} }, func() *pending { return &pending{change: change} }
	for _, tc := range []struct {
		batch []*pending
		want  []int // part sizes; a change is a part of its own
	}{
		{[]*pending{chg()}, []int{1}},
		{[]*pending{send(), send(), chg(), send()}, []int{2, 1, 1}},
		{[]*pending{chg(), chg(), send()}, []int{1, 1, 1}},
		{[]*pending{send(), chg()}, []int{1, 1}},
	} {
		if !hasChange(tc.batch) {
			t.Fatalf("hasChange(%v) = false", tc.batch)
		}
		parts := splitChanges(tc.batch)
		var sizes []int
		n := 0
		for _, p := range parts {
			sizes = append(sizes, len(p))
			for _, s := range p {
				if s != tc.batch[n] {
					t.Fatalf("part order broken at %d", n)
				}
				n++
			}
			if len(p) > 1 && hasChange(p) {
				t.Fatalf("a change shares a part: %v", p)
			}
		}
		if len(sizes) != len(tc.want) {
			t.Fatalf("parts %v, want %v", sizes, tc.want)
		}
		for i := range sizes {
			if sizes[i] != tc.want[i] {
				t.Fatalf("parts %v, want %v", sizes, tc.want)
			}
		}
	}
	if hasChange([]*pending{send(), send()}) {
		t.Fatal("hasChange of sends only")
	}
}
