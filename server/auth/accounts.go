package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// Store is what Accounts needs from the database.
type Store interface {
	storage.Users
	storage.Sessions
}

// Accounts registers users, logs devices in and out, and authenticates
// tokens.
type Accounts struct {
	store      Store
	tokens     *Tokens
	bcryptCost int
	dummyHash  []byte // compared against when the user does not exist, so timing does not reveal usernames
	now        func() time.Time
}

// NewAccounts returns an Accounts. bcryptCost 0 means bcrypt.DefaultCost
// (tests pass bcrypt.MinCost to stay fast).
func NewAccounts(store Store, tokens *Tokens, bcryptCost int) (*Accounts, error) {
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("starling-dummy-password"), bcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: bcrypt cost %d: %w", bcryptCost, err)
	}
	return &Accounts{store: store, tokens: tokens, bcryptCost: bcryptCost, dummyHash: dummy, now: time.Now}, nil
}

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)
	deviceRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// ValidDeviceID reports whether id is acceptable as a device id.
func ValidDeviceID(id string) bool { return deviceRE.MatchString(id) }

// Register creates a user. Errors: apierr.BadUsername, BadPassword,
// BadDisplayName, UsernameTaken, Unavailable.
func (a *Accounts) Register(ctx context.Context, username, password, displayName string) (storage.User, error) {
	if !usernameRE.MatchString(username) {
		return storage.User{}, apierr.BadUsername
	}
	if len(password) < 8 || len(password) > 72 {
		// 72 is bcrypt's limit: longer passwords would be silently truncated.
		return storage.User{}, apierr.BadPassword
	}
	displayName = strings.TrimSpace(displayName)
	if !utf8.ValidString(displayName) || utf8.RuneCountInString(displayName) > 64 {
		return storage.User{}, apierr.BadDisplayName
	}
	if displayName == "" {
		displayName = username
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), a.bcryptCost)
	if err != nil {
		return storage.User{}, fmt.Errorf("auth: hash password: %w", err)
	}
	u := storage.User{
		ID:           idgen.Random("u"),
		Username:     username,
		DisplayName:  displayName,
		PasswordHash: hash,
		CreatedAt:    a.now().UTC(),
	}
	if err := a.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return storage.User{}, fmt.Errorf("%w: %q", apierr.UsernameTaken, username)
		}
		return storage.User{}, apierr.FromStorage("auth: register", err)
	}
	return u, nil
}

// Login checks the password and issues a token for the device.
// Errors: apierr.BadDeviceID, BadCredentials, Unavailable.
func (a *Accounts) Login(ctx context.Context, username, password, deviceID string) (token string, expires time.Time, user storage.User, err error) {
	if !ValidDeviceID(deviceID) {
		return "", time.Time{}, storage.User{}, apierr.BadDeviceID
	}
	user, err = a.store.GetUserByUsername(ctx, username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
		return "", time.Time{}, storage.User{}, apierr.BadCredentials
	case err != nil:
		return "", time.Time{}, storage.User{}, apierr.FromStorage("auth: login", err)
	}
	if bcrypt.CompareHashAndPassword(user.PasswordHash, []byte(password)) != nil {
		return "", time.Time{}, storage.User{}, apierr.BadCredentials
	}
	id := Identity{UserID: user.ID, DeviceID: deviceID, SessionID: idgen.Random("s")}
	token, expires, err = a.tokens.Issue(id)
	if err != nil {
		return "", time.Time{}, storage.User{}, err
	}
	s := storage.Session{ID: id.SessionID, UserID: id.UserID, DeviceID: deviceID, CreatedAt: a.now().UTC(), ExpiresAt: expires.UTC()}
	if err := a.store.CreateSession(ctx, s); err != nil {
		return "", time.Time{}, storage.User{}, apierr.FromStorage("auth: store session", err)
	}
	return token, expires, user, nil
}

// Authenticate verifies a token and checks that its session is not revoked.
// Errors: apierr.BadToken, TokenExpired, TokenRevoked, Unavailable.
func (a *Accounts) Authenticate(ctx context.Context, token string) (Identity, error) {
	id, err := a.tokens.Verify(token)
	if err != nil {
		return Identity{}, err
	}
	s, err := a.store.GetSession(ctx, id.SessionID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return Identity{}, fmt.Errorf("%w: no session %s", apierr.BadToken, id.SessionID)
	case err != nil:
		return Identity{}, apierr.FromStorage("auth: look up session", err)
	case s.Revoked:
		return Identity{}, apierr.TokenRevoked
	case s.UserID != id.UserID || s.DeviceID != id.DeviceID:
		return Identity{}, fmt.Errorf("%w: session %s names another user or device", apierr.BadToken, id.SessionID)
	}
	return id, nil
}

// Logout revokes the session behind id's token.
func (a *Accounts) Logout(ctx context.Context, id Identity) error {
	if err := a.store.RevokeSession(ctx, id.SessionID); err != nil {
		return apierr.FromStorage("auth: logout", err)
	}
	return nil
}
