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
				id := s.Next()
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
	a := s.Next()
	now = now.Add(-time.Minute)
	if b := s.Next(); b <= a {
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
		id := s.Next()
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
