package main

import (
	"fmt"
	"slices"
	"testing"
)

// TestChunkIDs: a group of 10,000 is created in one call (every member
// joins at seq 0), and longer lists split below the frame bound without
// losing or reordering an id.
func TestChunkIDs(t *testing.T) {
	ids := func(n, width int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%0*d", width, i)
		}
		return out
	}
	if c := chunkIDs(ids(9999, 17)); len(c) != 1 || len(c[0]) != 9999 {
		t.Fatalf("10,000 members of 17-character ids: %d chunks", len(c))
	}
	if c := chunkIDs(nil); len(c) != 0 {
		t.Fatalf("no ids: %d chunks", len(c))
	}
	long := ids(20000, 40)
	chunks := chunkIDs(long)
	if len(chunks) < 2 {
		t.Fatalf("%d chunks for 20,000 ids of 40 bytes", len(chunks))
	}
	var joined []string
	for _, c := range chunks {
		size := 0
		for _, id := range c {
			size += len(id) + 3
		}
		if size > groupChunkBytes {
			t.Fatalf("a chunk of %d bytes, bound %d", size, groupChunkBytes)
		}
		joined = append(joined, c...)
	}
	if !slices.Equal(joined, long) {
		t.Fatal("chunks lost or reordered ids")
	}
}
