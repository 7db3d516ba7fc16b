// Package admin serves starling.v1.AdminService: the API a backend
// service uses, opened by API keys (never by user tokens).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/metadata"

	"github.com/starling-im/starling/server/apierr"
)

// Scopes a key may hold; "*" holds them all.
const (
	ScopeUsers    = "users"
	ScopeTokens   = "tokens"
	ScopeMessages = "messages"
	ScopeGroups   = "groups"
	ScopePresence = "presence"
	ScopeAll      = "*"
)

var knownScopes = []string{ScopeUsers, ScopeTokens, ScopeMessages, ScopeGroups, ScopePresence, ScopeAll}

// KeyHeader is the metadata an API key travels in.
const KeyHeader = "x-api-key"

// Key is one credential entry as kept: its name (logged), the SHA-256 of
// an API key (the key itself is never stored) and/or the name a client
// certificate must carry (CertCN), and its scopes. An entry with both
// opens AdminService either way, with the same scopes.
type Key struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256,omitempty"`
	// CertCN, when set, lets a TLS client certificate signed by one of the
	// node's admin CAs (--admin-client-ca) open AdminService as this
	// entry: the certificate's subject common name, or one of its DNS
	// names, must equal it.
	CertCN  string   `json:"cert_cn,omitempty"`
	Scopes  []string `json:"scopes"`
	Revoked bool     `json:"revoked,omitempty"`

	sum    [sha256.Size]byte
	hasSum bool
}

// KeyFile is the JSON of --admin-keys-file.
type KeyFile struct {
	Keys []Key `json:"keys"`
}

// Keys is the set of API keys a node accepts; Load replaces it while the
// node serves (starlingd reloads the file on SIGHUP).
type Keys struct {
	set atomic.Pointer[[]Key]
}

// Hash returns the hex SHA-256 of a key, as the key file stores it. Keys
// are high-entropy random strings (NewKey), so a fast hash is enough: no
// one guesses a 256-bit key from its hash.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKeys returns a set holding keys (checked as by Load).
func NewKeys(keys ...Key) (*Keys, error) {
	k := &Keys{}
	return k, k.Set(keys)
}

// Set replaces the set. Every key needs a name, a 64-hex-digit SHA-256
// or a cert_cn (or both), and known scopes; names and cert_cns are
// unique.
func (k *Keys) Set(keys []Key) error {
	names, cns := map[string]bool{}, map[string]bool{}
	out := make([]Key, 0, len(keys))
	for i, key := range keys {
		if key.Name == "" || names[key.Name] {
			return fmt.Errorf("admin: key %d: a unique, non-empty name is needed", i)
		}
		names[key.Name] = true
		if key.SHA256 == "" && key.CertCN == "" {
			return fmt.Errorf("admin: key %q: needs a sha256 (API key) or a cert_cn (client certificate)", key.Name)
		}
		if key.SHA256 != "" {
			sum, err := hex.DecodeString(key.SHA256)
			if err != nil || len(sum) != sha256.Size {
				return fmt.Errorf("admin: key %q: sha256 must be 64 hex digits", key.Name)
			}
			copy(key.sum[:], sum)
			key.hasSum = true
		}
		if key.CertCN != "" {
			if cns[key.CertCN] || len(key.CertCN) > 255 {
				return fmt.Errorf("admin: key %q: cert_cn %q is used by another entry (or longer than 255 bytes)", key.Name, key.CertCN)
			}
			cns[key.CertCN] = true
		}
		if len(key.Scopes) == 0 {
			return fmt.Errorf("admin: key %q: no scopes", key.Name)
		}
		for _, s := range key.Scopes {
			if !slices.Contains(knownScopes, s) {
				return fmt.Errorf("admin: key %q: unknown scope %q (known: %s)", key.Name, s, strings.Join(knownScopes, ", "))
			}
		}
		out = append(out, key)
	}
	k.set.Store(&out)
	return nil
}

// Load replaces the set with the keys of a JSON key file (KeyFile).
func (k *Keys) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("admin: read key file: %w", err)
	}
	var f KeyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("admin: key file %s: %w", path, err)
	}
	if err := k.Set(f.Keys); err != nil {
		return fmt.Errorf("admin: key file %s: %w", path, err)
	}
	return nil
}

// Len is how many keys the set holds (revoked ones included).
func (k *Keys) Len() int {
	if p := k.set.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// find returns the key whose hash matches. Every key is compared, in
// constant time, so timing tells nothing about which hashes are close.
func (k *Keys) find(presented string) (Key, bool) {
	p := k.set.Load()
	if p == nil || presented == "" {
		return Key{}, false
	}
	sum := sha256.Sum256([]byte(presented))
	var found Key
	ok := false
	for _, key := range *p {
		if subtle.ConstantTimeCompare(sum[:], key.sum[:]) == 1 && key.hasSum {
			found, ok = key, true
		}
	}
	return found, ok && !found.Revoked
}

// Allows reports whether the key holds scope.
func (key Key) Allows(scope string) bool {
	return slices.Contains(key.Scopes, scope) || slices.Contains(key.Scopes, ScopeAll)
}

// findCert returns the entry whose cert_cn is one of names (a verified
// certificate's common name and DNS names), unless it is revoked.
func (k *Keys) findCert(names []string) (Key, bool) {
	p := k.set.Load()
	if p == nil {
		return Key{}, false
	}
	for _, key := range *p {
		if key.CertCN != "" && slices.Contains(names, key.CertCN) {
			return key, !key.Revoked
		}
	}
	return Key{}, false
}

// keyOf finds the entry of the API key an incoming call carries. ok is
// false when it carries none. Errors: apierr.NoAPIKey.
func (k *Keys) keyOf(ctx context.Context) (key Key, ok bool, err error) {
	vals := metadata.ValueFromIncomingContext(ctx, KeyHeader)
	switch len(vals) {
	case 0:
		return Key{}, false, nil
	case 1:
	default:
		return Key{}, true, fmt.Errorf("%w: %d %s values", apierr.NoAPIKey, len(vals), KeyHeader)
	}
	key, found := k.find(vals[0])
	if !found {
		return Key{}, true, fmt.Errorf("%w: unknown or revoked key", apierr.NoAPIKey)
	}
	return key, true, nil
}

// List returns the keys of the set.
func (k *Keys) List() []Key {
	if p := k.set.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}
