package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// IssueToken issues a token for a device of a user without a password:
// the backend's login flow (AdminService). Errors: apierr.BadDeviceID,
// UserNotFound, UserDisabled, Unavailable.
func (a *Accounts) IssueToken(ctx context.Context, userID, deviceID string) (string, time.Time, error) {
	if !ValidDeviceID(deviceID) {
		return "", time.Time{}, apierr.BadDeviceID
	}
	if err := a.requireEnabled(ctx, userID); err != nil {
		return "", time.Time{}, err
	}
	id := Identity{UserID: userID, DeviceID: deviceID, SessionID: idgen.Random("s")}
	token, expires, err := a.tokens.Issue(id)
	if err != nil {
		return "", time.Time{}, err
	}
	s := storage.Session{ID: id.SessionID, UserID: userID, DeviceID: deviceID, CreatedAt: a.now().UTC(), ExpiresAt: expires.UTC()}
	if err := a.issued.create(ctx, s); err != nil {
		if errors.Is(err, storage.ErrNotFound) { // deleted meanwhile
			return "", time.Time{}, fmt.Errorf("%w: %q", apierr.UserNotFound, userID)
		}
		return "", time.Time{}, apierr.FromStorage("auth: store session", err)
	}
	a.log.count("issue", "ok")
	return token, expires, nil
}

// requireEnabled checks that the user exists and is not disabled.
func (a *Accounts) requireEnabled(ctx context.Context, userID string) error {
	disabled, err := a.store.UserDisabled(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %q", apierr.UserNotFound, userID)
	}
	if err != nil {
		return apierr.FromStorage("auth: user disabled?", err)
	}
	if disabled {
		return fmt.Errorf("%w: %q", apierr.UserDisabled, userID)
	}
	return nil
}

// RevokeTokens revokes the live sessions of a user, or of one of its
// devices (deviceID not empty), and returns them. This node refuses their
// tokens at once; other nodes within Limits.SessionCacheTTL. The caller
// closes the devices' streams (a Kicker).
func (a *Accounts) RevokeTokens(ctx context.Context, userID, deviceID string) ([]storage.Session, error) {
	revoked, err := a.store.RevokeSessions(ctx, userID, deviceID)
	if err != nil {
		return nil, apierr.FromStorage("auth: revoke tokens", err)
	}
	now := a.now()
	for _, s := range revoked {
		a.sessions.revoked(s.ID, true, now)
	}
	return revoked, nil
}

// UpsertUser creates the user with this id (a backend's, see
// AdminService.UpsertUser) or updates its username and display name, and
// tells whether it created it. The user has no password: only tokens from
// IssueToken log it in. Errors: apierr.BadUsername, BadDisplayName,
// UsernameTaken, Unavailable.
func (a *Accounts) UpsertUser(ctx context.Context, id, username, displayName string) (storage.User, bool, error) {
	if !usernameRE.MatchString(username) {
		return storage.User{}, false, apierr.BadUsername
	}
	displayName, err := checkDisplayName(displayName, username)
	if err != nil {
		return storage.User{}, false, err
	}
	u := storage.User{ID: id, Username: username, DisplayName: displayName, CreatedAt: a.now().UTC()}
	err = a.store.CreateUser(ctx, u)
	if err == nil {
		return u, true, nil
	}
	if !errors.Is(err, storage.ErrAlreadyExists) {
		return storage.User{}, false, apierr.FromStorage("auth: create user", err)
	}
	// The id or the username exists: update the user with this id (which
	// fails if the username is another user's).
	if err := a.store.UpdateUser(ctx, id, username, displayName); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) || errors.Is(err, storage.ErrNotFound) {
			return storage.User{}, false, fmt.Errorf("%w: %q", apierr.UsernameTaken, username)
		}
		return storage.User{}, false, apierr.FromStorage("auth: update user", err)
	}
	u, err = a.store.GetUser(ctx, id)
	if err != nil {
		return storage.User{}, false, apierr.FromStorage("auth: read user", err)
	}
	return u, false, nil
}

// DeleteUser disables the user for good, revokes its tokens and scrubs its
// names ("~" and its id as username: no Register can take it back); its
// messages stay. It returns the revoked sessions, whose streams the caller
// closes. Errors: apierr.UserNotFound, Unavailable.
func (a *Accounts) DeleteUser(ctx context.Context, id string) ([]storage.Session, error) {
	if err := a.store.SetUserDisabled(ctx, id, true); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: %q", apierr.UserNotFound, id)
		}
		return nil, apierr.FromStorage("auth: disable user", err)
	}
	revoked, err := a.RevokeTokens(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if err := a.store.UpdateUser(ctx, id, "~"+id, "Deleted user"); err != nil {
		return revoked, apierr.FromStorage("auth: scrub user", err)
	}
	return revoked, nil
}

// SetUserDisabled disables the user (and revokes its tokens, returned) or
// enables it again. Errors: apierr.UserNotFound, Unavailable.
func (a *Accounts) SetUserDisabled(ctx context.Context, id string, disabled bool) ([]storage.Session, error) {
	if err := a.store.SetUserDisabled(ctx, id, disabled); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("%w: %q", apierr.UserNotFound, id)
		}
		return nil, apierr.FromStorage("auth: disable user", err)
	}
	if !disabled {
		return nil, nil
	}
	return a.RevokeTokens(ctx, id, "")
}
