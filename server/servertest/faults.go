package servertest

import (
	"context"
	"sync"
	"testing"

	"github.com/starling-im/starling/storage"
)

// Faults wraps the real store of a test server so a test can hold or fail
// chosen calls at the moment it needs: to pin a race (hold a commit until
// a membership change lands) or a failure (a member read that fails). All
// other calls, and the held ones once released, go to the real database.
type Faults struct {
	storage.Store

	mu    sync.Mutex
	hooks Hooks
	calls map[string]int
}

// Hooks are the faults a test can set. Each runs on the server's goroutine
// that makes the call; nil means none.
type Hooks struct {
	// BeforeAppend runs before AppendMessages; a non-nil error fails it
	// with that error, storing nothing.
	BeforeAppend func(msgs []storage.NewMessage) error
	// AfterAppend runs after AppendMessages committed, before the server
	// sees the results.
	AfterAppend func(msgs []storage.NewMessage, results []storage.AppendResult)
	// Members fails ListMembers and MembersAt with the error it returns.
	Members func() error
	// ListMessages fails ListMessages (what Sync and GetHistory read) of
	// a conversation with the error it returns.
	ListMessages func(conversationID string) error
}

// WithFaults runs the server on open's store wrapped in f.
func WithFaults(open Opener, f *Faults) Option {
	return WithStore(func(t testing.TB) storage.Store {
		st := open(t)
		f.mu.Lock()
		f.Store = st
		if f.calls == nil {
			f.calls = make(map[string]int)
		}
		f.mu.Unlock()
		return f
	})
}

// Set replaces the hooks.
func (f *Faults) Set(h Hooks) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = h
}

// Calls returns how many times a method was called.
func (f *Faults) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *Faults) enter(method string) Hooks {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	return f.hooks
}

func (f *Faults) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	h := f.enter("AppendMessages")
	if h.BeforeAppend != nil {
		if err := h.BeforeAppend(msgs); err != nil {
			return nil, err
		}
	}
	res, err := f.Store.AppendMessages(ctx, msgs)
	if err == nil && h.AfterAppend != nil {
		h.AfterAppend(msgs, res)
	}
	return res, err
}

func (f *Faults) ListMembers(ctx context.Context, groupID string) (storage.MemberSet, error) {
	if h := f.enter("ListMembers"); h.Members != nil {
		if err := h.Members(); err != nil {
			return storage.MemberSet{}, err
		}
	}
	return f.Store.ListMembers(ctx, groupID)
}

func (f *Faults) MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error) {
	if h := f.enter("MembersAt"); h.Members != nil {
		if err := h.Members(); err != nil {
			return nil, err
		}
	}
	return f.Store.MembersAt(ctx, groupID, seq)
}

func (f *Faults) GetMembership(ctx context.Context, conversationID, userID string) (storage.Membership, error) {
	f.enter("GetMembership")
	return f.Store.GetMembership(ctx, conversationID, userID)
}

func (f *Faults) ListMessages(ctx context.Context, conversationID string, afterSeq, uptoSeq int64, limit int) ([]storage.Message, error) {
	if h := f.enter("ListMessages"); h.ListMessages != nil {
		if err := h.ListMessages(conversationID); err != nil {
			return nil, err
		}
	}
	return f.Store.ListMessages(ctx, conversationID, afterSeq, uptoSeq, limit)
}
