package chat

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/sqlite"
)

// countingStore counts the relation reads of a real store.
type countingStore struct {
	storage.Store
	reads atomic.Int64
}

func (c *countingStore) GetRelation(ctx context.Context, a, b string) (storage.Relation, error) {
	c.reads.Add(1)
	return c.Store.GetRelation(ctx, a, b)
}

// The send path's relation check reads a pair once, then serves it from
// the cache; a change made here is seen at once (forget), and both
// directions of a block refuse.
func TestRelationCache(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range []string{"a", "b"} {
		if err := st.CreateUser(ctx, storage.User{ID: id, Username: "user-" + id, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &countingStore{Store: st}
	c := newRelationCache(cs)
	for range 3 {
		if err := c.checkDM(ctx, DMAnyone, "a", "b"); err != nil {
			t.Fatal(err)
		}
		if err := c.checkDM(ctx, DMAnyone, "b", "a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.reads.Load(); n != 1 {
		t.Fatalf("%d relation reads for one pair, want 1", n)
	}
	if err := c.checkDM(ctx, DMFriends, "a", "b"); !errors.Is(err, apierr.NotFriends) {
		t.Fatalf("friends policy between strangers: %v", err)
	}
	if err := c.checkDM(ctx, DMFriends, "a", "a"); err != nil {
		t.Fatalf("to oneself: %v", err)
	}
	if _, err := st.Block(ctx, "b", "a", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	c.forget("b", "a")
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}} {
		if err := c.checkDM(ctx, DMAnyone, p[0], p[1]); !errors.Is(err, apierr.Blocked) {
			t.Fatalf("%s→%s across a block: %v", p[0], p[1], err)
		}
	}
	if n := cs.reads.Load(); n != 2 {
		t.Fatalf("%d relation reads, want 2", n)
	}
	// A read that started before a change does not cache what it read.
	c.forget("a", "b")
	gen := c.gen
	c.forget("a", "b")
	if c.gen == gen {
		t.Fatal("forget did not move the generation")
	}
	if p, ok := parseRelationKey(relationKey("b", "a")); !ok || p != [2]string{"a", "b"} {
		t.Fatalf("relation key round trip: %v %v", p, ok)
	}
	if _, ok := parseRelationKey("g123"); ok {
		t.Fatal("a group id parsed as a relation key")
	}
}
