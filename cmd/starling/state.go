package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
)

// fileStore is a client.StateStore in a JSON file of the config directory,
// one per user and device, so that `listen` and `chat` only print what is
// new since the last run.
type fileStore struct {
	path string
	mu   sync.Mutex
	last map[string]int64
}

func (a *app) openState(c *config) (*fileStore, error) {
	s := &fileStore{
		path: filepath.Join(a.dir, "state-"+c.UserID+"-"+c.DeviceID+".json"),
		last: make(map[string]int64),
	}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(b, &s.last); err != nil {
		return nil, fmt.Errorf("reading state %s: %w", s.path, err)
	}
	return s, nil
}

// Load implements client.StateStore.
func (s *fileStore) Load(_ context.Context, conversationID string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.last[conversationID]
	return last, ok, nil
}

// Save implements client.StateStore. It rewrites the small file each time:
// the session calls it once per burst of messages, not per message.
func (s *fileStore) Save(_ context.Context, conversationID string, last int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.last[conversationID]; ok && cur >= last {
		return nil
	}
	next := maps.Clone(s.last)
	next[conversationID] = last
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.path, append(b, '\n')); err != nil {
		return err
	}
	s.last = next
	return nil
}
