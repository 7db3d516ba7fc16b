package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/starling-im/starling/client/textsafe"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/idgen"
	"github.com/starling-im/starling/storage"
)

// Store is what Accounts needs from the database.
type Store interface {
	storage.Users
	storage.Sessions
	storage.Admin
}

// Accounts registers users, logs devices in and out, and authenticates
// tokens.
//
// A token check reads the token's login session from the database at most
// once per Limits.SessionCacheTTL (5 s in server.DefaultAuthLimits) per
// session on this node; in between it reuses what it read (sessionCache,
// bounded by Limits.MaxTracked). Revocation is therefore exact on the node
// that revokes (Logout refuses the token here at once) and bounded
// elsewhere: another node of a cluster refuses a token logged out through
// this one within SessionCacheTTL. The logged-out device's stream does not
// wait for that; the logout closes it across nodes (bus.Router.Kick).
type Accounts struct {
	store      Store
	tokens     *Tokens
	bcryptCost int
	dummyHash  []byte // compared against when the user does not exist, so timing does not reveal usernames
	now        func() time.Time
	log        *authLog

	loginIPs    *addressLimiter // Login calls per client address
	registerIPs *addressLimiter // Register calls per client address
	failures    *failures       // failed-login backoff per username
	bcrypt      *bcryptPool     // bcrypt work running at once
	sessions    *sessionCache   // recent session reads of token checks
	minted      *mintedTokens   // identities of the tokens this node signed
	issued      *sessionBatcher // sessions of IssueToken, written in batches
}

// NewAccounts returns an Accounts. bcryptCost 0 means bcrypt.DefaultCost
// (tests pass bcrypt.MinCost to stay fast). limits bound Login and
// Register (the zero Limits: unbounded); log receives one line per failed
// authentication (nil: discarded).
func NewAccounts(store Store, tokens *Tokens, bcryptCost int, limits Limits, log *slog.Logger) (*Accounts, error) {
	if bcryptCost == 0 {
		bcryptCost = bcrypt.DefaultCost
	}
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("starling-dummy-password"), bcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: bcrypt cost %d: %w", bcryptCost, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Accounts{
		store: store, tokens: tokens, bcryptCost: bcryptCost, dummyHash: dummy, now: time.Now,
		log:         newAuthLog(log),
		loginIPs:    newAddressLimiter(limits.LoginRate, limits.LoginBurst, limits.MaxTracked),
		registerIPs: newAddressLimiter(limits.RegisterRate, limits.RegisterBurst, limits.MaxTracked),
		failures:    newFailures(limits),
		bcrypt:      newBcryptPool(limits.MaxBcrypt, limits.BcryptWait),
		sessions:    newSessionCache(limits.SessionCacheTTL, limits.MaxTracked),
		minted:      newMintedTokens(limits.MaxTracked),
		issued:      &sessionBatcher{store: store},
	}, nil
}

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)
	deviceRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// ValidDeviceID reports whether id is acceptable as a device id.
func ValidDeviceID(id string) bool { return deviceRE.MatchString(id) }

// Register creates a user. Errors: apierr.BadUsername, BadPassword,
// BadDisplayName, RegisterRateLimited, Busy, UsernameTaken, Unavailable.
func (a *Accounts) Register(ctx context.Context, username, password, displayName string) (storage.User, error) {
	if !usernameRE.MatchString(username) {
		return storage.User{}, apierr.BadUsername
	}
	if len(password) < 8 || len(password) > 72 {
		// 72 is bcrypt's limit: longer passwords would be silently truncated.
		return storage.User{}, apierr.BadPassword
	}
	displayName, err := checkDisplayName(displayName, username)
	if err != nil {
		return storage.User{}, err
	}
	// Valid requests only spend the address's budget: a typo costs nothing.
	key, addr := clientOf(ctx)
	if !a.registerIPs.allow(key, a.now()) {
		a.log.failed(ctx, "register", "registration rate limit of the address", username, addr)
		return storage.User{}, fmt.Errorf("%w: address %s", apierr.RegisterRateLimited, key)
	}
	var hash []byte
	if perr := a.bcrypt.do(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), a.bcryptCost) }); perr != nil {
		a.log.failed(ctx, "register", "bcrypt slots busy", username, addr)
		return storage.User{}, perr
	}
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
	a.log.count("register", "ok")
	return u, nil
}

// checkDisplayName trims a display name and checks it (every user sees
// it: no control or bidi characters); empty becomes the username.
func checkDisplayName(displayName, username string) (string, error) {
	displayName = strings.TrimSpace(displayName)
	if !utf8.ValidString(displayName) || utf8.RuneCountInString(displayName) > 64 || textsafe.ContainsUnsafe(displayName) {
		return "", apierr.BadDisplayName
	}
	if displayName == "" {
		displayName = username
	}
	return displayName, nil
}

// Login checks the password and issues a token for the device.
// Errors: apierr.BadDeviceID, BadCredentials, LoginRateLimited,
// LoginBackoff, Busy, Unavailable.
//
// The limits apply in order of cost: the address's login budget first
// (nothing read yet), then the username's failed-login backoff, then a
// bcrypt slot. A refused attempt runs no bcrypt.
func (a *Accounts) Login(ctx context.Context, username, password, deviceID string) (token string, expires time.Time, user storage.User, err error) {
	if !ValidDeviceID(deviceID) {
		return "", time.Time{}, storage.User{}, apierr.BadDeviceID
	}
	key, addr := clientOf(ctx)
	if !a.loginIPs.allow(key, a.now()) {
		a.log.failed(ctx, "login", "login rate limit of the address", username, addr)
		return "", time.Time{}, storage.User{}, fmt.Errorf("%w: address %s", apierr.LoginRateLimited, key)
	}
	if !usernameRE.MatchString(username) {
		// No such user can exist, and the rule is public: no need to hide
		// it behind a bcrypt comparison.
		a.log.failed(ctx, "login", "no such user", username, addr)
		return "", time.Time{}, storage.User{}, fmt.Errorf("%w: invalid username", apierr.BadCredentials)
	}
	done, wait, ok := a.failures.admit(username, a.now())
	if !ok {
		a.log.failed(ctx, "login", "failed-login backoff of the username", username, addr)
		return "", time.Time{}, storage.User{}, fmt.Errorf("%w: %q may try again in %v", apierr.LoginBackoff, username, wait.Round(time.Millisecond))
	}
	outcome := loginNeutral
	defer func() { done(outcome, a.now()) }()

	user, err = a.store.GetUserByUsername(ctx, username)
	hash, reason := user.PasswordHash, "wrong password"
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// The same work as for a real user, so timing does not tell.
		hash, reason = a.dummyHash, "no such user"
	case err != nil:
		return "", time.Time{}, storage.User{}, apierr.FromStorage("auth: login", err)
	}
	var mismatch error
	if perr := a.bcrypt.do(ctx, func() { mismatch = bcrypt.CompareHashAndPassword(hash, []byte(password)) }); perr != nil {
		a.log.failed(ctx, "login", "bcrypt slots busy", username, addr)
		return "", time.Time{}, storage.User{}, perr
	}
	if mismatch != nil || err != nil {
		outcome = loginFailed
		a.log.failed(ctx, "login", reason, username, addr)
		return "", time.Time{}, storage.User{}, apierr.BadCredentials
	}
	outcome = loginOK
	// A user the backend disabled (AdminService) logs in no more.
	if disabled, err := a.store.UserDisabled(ctx, user.ID); err != nil {
		return "", time.Time{}, storage.User{}, apierr.FromStorage("auth: login", err)
	} else if disabled {
		a.log.failed(ctx, "login", "user disabled", username, addr)
		return "", time.Time{}, storage.User{}, fmt.Errorf("%w: %q", apierr.UserDisabled, user.ID)
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
	// The device connects next, usually through this node: its first
	// token check needs neither a parse nor a read of the session just
	// written.
	now := a.now()
	a.minted.minted(token, id, expires, now)
	a.sessions.created(id.SessionID, sessionFacts{userID: id.UserID, deviceID: id.DeviceID}, now)
	a.log.count("login", "ok")
	return token, expires, user, nil
}

// Authenticate verifies a token and checks that its session is not revoked.
// Errors: apierr.BadToken, TokenExpired, TokenRevoked, Unavailable. A token
// whose session is gone (collected after it expired or was revoked, see
// CollectSessions) is a BadToken: it never becomes valid again.
//
// The session is read from the database unless this node read it less
// than Limits.SessionCacheTTL ago (see Accounts).
func (a *Accounts) Authenticate(ctx context.Context, token string) (Identity, error) {
	now := a.now()
	var err error
	id, ok := a.minted.lookup(token, now)
	if !ok {
		if id, err = a.tokens.Verify(token); err != nil {
			a.log.failed(ctx, "token", reasonOf(err), "", "")
			return Identity{}, err
		}
	}
	s, gen, ok := a.sessions.lookup(id.SessionID, now)
	if !ok {
		row, err := a.store.GetSession(ctx, id.SessionID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			err = fmt.Errorf("%w: no session %s", apierr.BadToken, id.SessionID)
			a.log.failed(ctx, "token", reasonOf(err), id.UserID, "")
			return Identity{}, err
		case err != nil:
			return Identity{}, apierr.FromStorage("auth: look up session", err)
		}
		s = sessionFacts{userID: row.UserID, deviceID: row.DeviceID, revoked: row.Revoked}
		a.sessions.fill(id.SessionID, s, gen, now)
	}
	switch {
	case s.revoked:
		err = fmt.Errorf("%w: session %s", apierr.TokenRevoked, id.SessionID)
	case s.userID != id.UserID || s.deviceID != id.DeviceID:
		err = fmt.Errorf("%w: session %s names another user or device", apierr.BadToken, id.SessionID)
	default:
		a.log.count("token", "ok")
		return id, nil
	}
	a.log.failed(ctx, "token", reasonOf(err), id.UserID, "")
	return Identity{}, err
}

// MintedTokenHits returns how many token checks since start found the
// token among those this node signed, and so parsed nothing.
func (a *Accounts) MintedTokenHits() int64 { return a.minted.hits.Load() }

// SessionCacheCounts returns how many token checks found their session in
// the cache (hits) and how many read the database (misses) since start.
func (a *Accounts) SessionCacheCounts() (hits, misses int64) {
	return a.sessions.hits.Load(), a.sessions.misses.Load()
}

// AuthCounts returns how many logins, registrations and token checks
// ended how since start, for metrics.
func (a *Accounts) AuthCounts() map[AuthResult]int64 {
	a.log.countsMu.Lock()
	defer a.log.countsMu.Unlock()
	out := make(map[AuthResult]int64, len(a.log.counts))
	for k, v := range a.log.counts {
		out[k] = v
	}
	return out
}

// Logout revokes the session behind id's token. This node refuses the
// token from then on without reading the database; other nodes refuse it
// within Limits.SessionCacheTTL.
func (a *Accounts) Logout(ctx context.Context, id Identity) error {
	err := a.store.RevokeSession(ctx, id.SessionID)
	a.sessions.revoked(id.SessionID, err == nil, a.now())
	if err != nil {
		return apierr.FromStorage("auth: logout", err)
	}
	// A logged-out device is woken no more.
	if err := a.store.DeletePushToken(ctx, id.UserID, id.DeviceID); err != nil {
		return apierr.FromStorage("auth: logout: forget the push token", err)
	}
	return nil
}
