// Package idgen makes Starling's ids: snowflake-style 64-bit message ids and
// random string ids for users, groups and sessions.
package idgen

import (
	"crypto/rand"
	"encoding/base32"
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
type Snowflake struct {
	node int64
	now  func() time.Time

	mu      sync.Mutex
	lastMS  int64
	counter int64
}

// NewSnowflake returns a generator for node (0..MaxNode).
func NewSnowflake(node int) (*Snowflake, error) {
	if node < 0 || node > MaxNode {
		return nil, fmt.Errorf("idgen: node %d out of range 0..%d", node, MaxNode)
	}
	return &Snowflake{node: int64(node), now: time.Now}, nil
}

// Next returns a new id, greater than every id this generator returned
// before. When the clock steps back, or more than 4096 ids are needed in one
// millisecond, it borrows from the next millisecond rather than repeat.
func (s *Snowflake) Next() int64 {
	ms := s.now().Sub(Epoch).Milliseconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ms > s.lastMS {
		s.lastMS, s.counter = ms, 0
	} else {
		s.counter++
		if s.counter == 1<<counterBits {
			s.lastMS++
			s.counter = 0
		}
	}
	return s.lastMS<<(nodeBits+counterBits) | s.node<<counterBits | s.counter
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
