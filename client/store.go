package client

import (
	"context"
	"sync"
)

// StateStore keeps, per conversation, the highest seq a Session has
// delivered to the app ("last"). A Session reads it the first time it meets
// a conversation and writes it after the app has received messages, so an
// app that persists it resumes where it stopped: on restart it neither sees
// old messages again nor misses new ones.
//
// A Session calls the store from one goroutine; a store shared by several
// Sessions must be safe for concurrent use (MemoryStore is). Share one only
// between Sessions of the same user and device.
type StateStore interface {
	// Load returns the conversation's last delivered seq, and ok=false when
	// the store knows nothing about the conversation.
	Load(ctx context.Context, conversationID string) (last int64, ok bool, err error)
	// Save records the conversation's last delivered seq. It only ever
	// moves forward.
	Save(ctx context.Context, conversationID string, last int64) error
}

// MemoryStore is a StateStore in memory: the default, for apps that keep
// no state across runs (a new run then starts each conversation from the
// server's delivered cursor for this device).
type MemoryStore struct {
	mu   sync.Mutex
	last map[string]int64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{last: make(map[string]int64)}
}

// Load implements StateStore.
func (m *MemoryStore) Load(_ context.Context, conversationID string) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.last[conversationID]
	return last, ok, nil
}

// Save implements StateStore.
func (m *MemoryStore) Save(_ context.Context, conversationID string, last int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last > m.last[conversationID] {
		m.last[conversationID] = last
	} else if _, ok := m.last[conversationID]; !ok {
		m.last[conversationID] = last
	}
	return nil
}

// Snapshot returns a copy of every conversation's last delivered seq.
func (m *MemoryStore) Snapshot() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.last))
	for k, v := range m.last {
		out[k] = v
	}
	return out
}
