package auth

import (
	"context"

	"github.com/starling-im/starling/storage"
)

// The in-memory store knows no disabled users and no push tokens: the
// tests of this package are about passwords, limits and sessions.

func (m *memStore) UpdateUser(context.Context, string, string, string) error { return nil }
func (m *memStore) SetUserDisabled(context.Context, string, bool) error      { return nil }
func (m *memStore) UserDisabled(context.Context, string) (bool, error)       { return false, nil }
func (m *memStore) RevokeSessions(context.Context, string, string) ([]storage.Session, error) {
	return nil, nil
}
func (m *memStore) PutPushToken(context.Context, storage.PushToken) error { return nil }
func (m *memStore) DeletePushToken(context.Context, string, string) error { return nil }
func (m *memStore) ListPushTokens(context.Context, string) ([]storage.PushToken, error) {
	return nil, nil
}

func (m *memStore) CreateSessions(ctx context.Context, ss []storage.Session) error {
	for _, s := range ss {
		if err := m.CreateSession(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
