// Package idgen makes Starling's ids: snowflake-style 64-bit message ids and
// random string ids for users, groups and sessions.
package idgen

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Layout of a message id, high to low: 41 bits of milliseconds since Epoch
// (good for ~69 years), 10 bits of node, 12 bits of counter. The sign bit
// stays 0 so ids fit a signed BIGINT.
const (
	nodeBits    = 10
	counterBits = 12
	// MaxNode is the largest node number; node numbers must be unique across
	// a cluster, since two nodes with the same number can make equal ids.
	MaxNode = 1<<nodeBits - 1
)

// Epoch is the zero of message-id time: 2026-01-01T00:00:00Z.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Snowflake makes message ids for one node. Safe for concurrent use.
//
// A node's number is leased (server/nodelease): the Snowflake makes ids
// only until the lease's deadline, which the lease keeper moves forward at
// each renewal (SetLease). Past it, Next fails with ErrLapsed rather than
// risk an id that the number's next holder could make too.
type Snowflake struct {
	now func() time.Time

	mu      sync.Mutex
	node    int64
	limited bool      // validUntil applies
	until   time.Time // with a monotonic reading when set from time.Now
	lastMS  int64
	counter int64
}

// ErrLapsed: the node number's lease has lapsed (or was never taken), so
// the Snowflake makes no ids.
var ErrLapsed = errors.New("idgen: no valid node number lease")

// NewSnowflake returns a generator for node (0..MaxNode) that is valid
// forever: for tests and tools. A server's Snowflake is limited by its
// lease (SetLease).
func NewSnowflake(node int) (*Snowflake, error) {
	if node < 0 || node > MaxNode {
		return nil, fmt.Errorf("idgen: node %d out of range 0..%d", node, MaxNode)
	}
	return &Snowflake{node: int64(node), now: time.Now}, nil
}

// NewLeased returns a generator that makes no ids until SetLease.
func NewLeased() *Snowflake {
	return &Snowflake{now: time.Now, limited: true}
}

// SetLease makes the generator use node, and make ids until validUntil
// (exclusive). Pass a time from time.Now (so the comparison uses the
// monotonic clock, which wall-clock steps do not move); the zero time stops
// it at once.
func (s *Snowflake) SetLease(node int, validUntil time.Time) error {
	if node < 0 || node > MaxNode {
		return fmt.Errorf("idgen: node %d out of range 0..%d", node, MaxNode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node, s.limited, s.until = int64(node), true, validUntil
	return nil
}

// SetValidUntil moves the deadline and keeps the node number.
func (s *Snowflake) SetValidUntil(validUntil time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.until = true, validUntil
}

// ValidUntil returns the deadline, and false when there is none.
func (s *Snowflake) ValidUntil() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.until, s.limited
}

// Node returns the node number ids are made with.
func (s *Snowflake) Node() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.node)
}

// Next returns a new id, greater than every id this generator returned
// before. When the clock steps back, or more than 4096 ids are needed in one
// millisecond, it borrows from the next millisecond rather than repeat.
// Past the lease's deadline it returns ErrLapsed and makes no id.
func (s *Snowflake) Next() (int64, error) {
	now := s.now()
	ms := now.Sub(Epoch).Milliseconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limited && !now.Before(s.until) {
		return 0, ErrLapsed
	}
	if ms > s.lastMS {
		s.lastMS, s.counter = ms, 0
	} else {
		s.counter++
		if s.counter == 1<<counterBits {
			s.lastMS++
			s.counter = 0
		}
	}
	return s.lastMS<<(nodeBits+counterBits) | s.node<<counterBits | s.counter, nil
}

// Time returns when id was made (to the millisecond).
func Time(id int64) time.Time {
	return Epoch.Add(time.Duration(id>>(nodeBits+counterBits)) * time.Millisecond)
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Random returns prefix followed by 16 random base32 characters (80 bits):
// unguessable and free of ':' so it can stand inside a conversation id.
func Random(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + lowerBase32.EncodeToString(b[:])
}
