package auth

import "context"

// Identity is who is calling: the authenticated user and device, and the
// login session the token belongs to.
type Identity struct {
	UserID    string
	DeviceID  string
	SessionID string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity the auth interceptor stored in ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
