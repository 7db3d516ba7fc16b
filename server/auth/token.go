package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/starling-im/starling/server/apierr"
)

const issuer = "starling"

// claims is the token body. Short claim names keep the token small: it is
// sent on every connect.
type claims struct {
	Device  string `json:"dev"`
	Session string `json:"sid"`
	jwt.RegisteredClaims
}

// Tokens signs and verifies tokens with one shared secret (every node of a
// cluster must be given the same one).
type Tokens struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

// NewTokens returns a signer/verifier. The secret must be at least 32 bytes.
func NewTokens(secret []byte, ttl time.Duration) (*Tokens, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("auth: token secret is %d bytes; at least 32 are needed", len(secret))
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("auth: token lifetime must be positive, got %v", ttl)
	}
	t := &Tokens{secret: secret, ttl: ttl, now: time.Now}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

// Issue signs a token for id, valid from now for the configured lifetime.
func (t *Tokens) Issue(id Identity) (token string, expires time.Time, err error) {
	now := t.now()
	expires = now.Add(t.ttl)
	c := claims{
		Device:  id.DeviceID,
		Session: id.SessionID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   id.UserID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expires),
		},
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, expires, nil
}

// Verify checks the signature, issuer and expiry and returns the identity
// the token names. It does not check revocation (see Accounts.Authenticate).
func (t *Tokens) Verify(token string) (Identity, error) {
	var c claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, apierr.TokenExpired
		}
		// The client learns that the token is not good, nothing more.
		return Identity{}, fmt.Errorf("%w: %w", apierr.BadToken, err)
	}
	if c.Subject == "" || c.Device == "" || c.Session == "" {
		return Identity{}, fmt.Errorf("%w: claims incomplete", apierr.BadToken)
	}
	return Identity{UserID: c.Subject, DeviceID: c.Device, SessionID: c.Session}, nil
}
