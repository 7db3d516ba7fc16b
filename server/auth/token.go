package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/starling-im/starling/server/apierr"
)

const issuer = "starling"

// maxClockSkew is how far in the future a token's issue time may be: the
// clocks of the nodes of a cluster differ a little.
const maxClockSkew = time.Minute

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
		// Base64 with the unused low bits of a segment's last character
		// zero, as Issue writes it: else a token had four spellings that
		// all verify (see TestTokenHasOneSpelling, FuzzTokenVerify).
		jwt.WithStrictDecoding(),
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

// Verify checks the signature, issuer, expiry and lifetime and returns
// the identity the token names. It does not check revocation (see Accounts.Authenticate).
func (t *Tokens) Verify(token string) (Identity, error) {
	if !wellFormed(token) {
		return Identity{}, fmt.Errorf("%w: not %d bytes of base64url and dots", apierr.BadToken, maxTokenBytes)
	}
	var c claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, apierr.TokenExpired
		}
		// The client learns that the token is not good, nothing more.
		return Identity{}, fmt.Errorf("%w: %w", apierr.BadToken, err)
	}
	if c.Subject == "" || c.Device == "" || c.Session == "" || c.IssuedAt == nil {
		return Identity{}, fmt.Errorf("%w: claims incomplete", apierr.BadToken)
	}
	// Only tokens this server could have issued: not from the future, and
	// not living longer than the configured lifetime (a token signed with
	// the real secret but a far expiry, or issued under a longer
	// --token-ttl than today's, is refused).
	iat, exp := c.IssuedAt.Time, c.ExpiresAt.Time
	if iat.After(t.now().Add(maxClockSkew)) {
		return Identity{}, fmt.Errorf("%w: issued in the future (%v)", apierr.BadToken, iat.UTC())
	}
	if life := exp.Sub(iat); life > t.ttl+time.Second { // claims are whole seconds
		return Identity{}, fmt.Errorf("%w: lifetime %v exceeds the server's %v", apierr.BadToken, life, t.ttl)
	}
	return Identity{UserID: c.Subject, DeviceID: c.Device, SessionID: c.Session}, nil
}

// maxTokenBytes bounds what Verify parses: Issue's tokens are a few hundred
// bytes, and a longer string is not decoded at all.
const maxTokenBytes = 2048

// wellFormed reports whether token is at most maxTokenBytes of the
// characters Issue writes: base64url and the dots between the segments.
// Go's base64 decoder skips \r and \n, so without this check a token with
// a line break in its signature verified as well as the token itself.
func wellFormed(token string) bool {
	if len(token) > maxTokenBytes {
		return false
	}
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
