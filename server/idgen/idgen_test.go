package idgen

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSnowflakeIncreasingUniqueAcrossGoroutines(t *testing.T) {
	s, err := NewSnowflake(7)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 5000
	ids := make(chan int64, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			last := int64(-1)
			for range each {
				id, _ := s.Next()
				if id <= last {
					t.Errorf("id %d not greater than previous %d", id, last)
				}
				last = id
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[int64]bool)
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %d", id)
		}
		seen[id] = true
		if node := id >> counterBits & MaxNode; node != 7 {
			t.Fatalf("id %d has node %d, want 7", id, node)
		}
	}
}

func TestSnowflakeClockStepsBack(t *testing.T) {
	s, _ := NewSnowflake(1)
	now := Epoch.Add(time.Hour)
	s.now = func() time.Time { return now }
	a, _ := s.Next()
	now = now.Add(-time.Minute)
	if b, _ := s.Next(); b <= a {
		t.Fatalf("after clock step back: %d <= %d", b, a)
	}
	if got := Time(a); !got.Equal(Epoch.Add(time.Hour)) {
		t.Fatalf("Time = %v", got)
	}
}

func TestSnowflakeCounterOverflowBorrowsNextMillisecond(t *testing.T) {
	s, _ := NewSnowflake(0)
	now := Epoch.Add(time.Second)
	s.now = func() time.Time { return now }
	var last int64
	for range 1<<counterBits + 10 {
		id, _ := s.Next()
		if id <= last {
			t.Fatalf("not increasing: %d <= %d", id, last)
		}
		last = id
	}
}

func TestNewSnowflakeRejectsBadNode(t *testing.T) {
	for _, n := range []int{-1, MaxNode + 1} {
		if _, err := NewSnowflake(n); err == nil {
			t.Errorf("node %d accepted", n)
		}
	}
}

func TestRandom(t *testing.T) {
	a, b := Random("u"), Random("u")
	if a == b || !strings.HasPrefix(a, "u") || len(a) != 17 || strings.Contains(a, ":") {
		t.Fatalf("Random gave %q and %q", a, b)
	}
}

// A leased Snowflake makes ids only while its lease is valid, with the
// node number of the lease.
func TestSnowflakeStopsAtTheLeaseDeadline(t *testing.T) {
	s := NewLeased()
	if _, err := s.Next(); err != ErrLapsed {
		t.Fatalf("before any lease: %v, want ErrLapsed", err)
	}
	now := Epoch.Add(time.Hour)
	s.now = func() time.Time { return now }
	if err := s.SetLease(5, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	id, err := s.Next()
	if err != nil || id>>counterBits&MaxNode != 5 {
		t.Fatalf("within the lease: id %d (node %d), %v", id, id>>counterBits&MaxNode, err)
	}
	now = now.Add(time.Second)
	if _, err := s.Next(); err != ErrLapsed {
		t.Fatalf("at the deadline: %v, want ErrLapsed", err)
	}
	s.SetValidUntil(now.Add(time.Second)) // renewed
	if next, err := s.Next(); err != nil || next <= id {
		t.Fatalf("after renewal: %d, %v", next, err)
	}
	s.SetValidUntil(time.Time{})
	if _, err := s.Next(); err != ErrLapsed {
		t.Fatalf("stopped: %v, want ErrLapsed", err)
	}
	if err := s.SetLease(MaxNode+1, now.Add(time.Hour)); err == nil {
		t.Fatal("SetLease took a node out of range")
	}
	if until, ok := s.ValidUntil(); !ok || !until.IsZero() || s.Node() != 5 {
		t.Fatalf("a refused SetLease changed the lease: %v %v node %d", until, ok, s.Node())
	}
}

// An unleased Snowflake (NewSnowflake, for tests and tools) never stops.
func TestSnowflakeWithoutLeaseIsUnlimited(t *testing.T) {
	s, _ := NewSnowflake(3)
	s.now = func() time.Time { return Epoch.Add(100 * 365 * 24 * time.Hour) }
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ValidUntil(); ok {
		t.Fatal("NewSnowflake has a deadline")
	}
}
