package storage

import (
	"context"
	"time"
)

// PushToken is where a device is woken when it is offline: an APNs or FCM
// token registered by the device.
type PushToken struct {
	UserID    string
	DeviceID  string
	Platform  string // "apns" or "fcm"
	Token     string
	UpdatedAt time.Time
}

// Admin stores what backend services (AdminService) manage beyond Users
// and Sessions: account changes, disabled accounts, bulk revocation and
// devices' push tokens.
type Admin interface {
	// UpdateUser changes a user's username and display name.
	// ErrNotFound if there is no such user; ErrAlreadyExists if the
	// username belongs to another user.
	UpdateUser(ctx context.Context, id, username, displayName string) error
	// SetUserDisabled disables (or enables again) a user; doing it twice
	// is not an error. ErrNotFound if there is no such user.
	SetUserDisabled(ctx context.Context, id string, disabled bool) error
	// UserDisabled reports whether the user is disabled, in one read.
	// ErrNotFound if there is no such user.
	UserDisabled(ctx context.Context, id string) (bool, error)
	// RevokeSessions revokes every live session of the user, or of one of
	// its devices when deviceID is not empty, and returns the sessions it
	// revoked (those revoked before are not returned). No error when there
	// are none.
	RevokeSessions(ctx context.Context, userID, deviceID string) ([]Session, error)
	// CreateSessions stores sessions in one transaction: all or none.
	// ErrAlreadyExists if an ID is taken; ErrNotFound if a user does not
	// exist. (A backend issuing thousands of tokens a second pays one
	// commit per batch, not per token.)
	CreateSessions(ctx context.Context, sessions []Session) error
	// PutPushToken stores the device's push token, replacing the one it
	// had. ErrNotFound if the user does not exist.
	PutPushToken(ctx context.Context, t PushToken) error
	// DeletePushToken forgets the device's push token; forgetting one
	// that is not there is not an error.
	DeletePushToken(ctx context.Context, userID, deviceID string) error
	// ListPushTokens returns the user's push tokens, by device id.
	ListPushTokens(ctx context.Context, userID string) ([]PushToken, error)
}
