package main

import (
	"errors"

	"github.com/starling-im/starling/server/admin"
)

// adminKeys builds the API keys of AdminService: those of
// --admin-keys-file (hashed) and --admin-key (one key with every scope,
// named "flag"). nil when neither is given: no key opens AdminService.
func adminKeys(c config) (*admin.Keys, error) {
	if c.AdminKeysFile == "" && c.AdminKey == "" {
		return nil, nil
	}
	var keys []admin.Key
	if c.AdminKeysFile != "" {
		k := &admin.Keys{}
		if err := k.Load(c.AdminKeysFile); err != nil {
			return nil, err
		}
		keys = k.List()
	}
	if c.AdminKey != "" {
		keys = append(keys, admin.Key{Name: "flag", SHA256: admin.Hash(c.AdminKey), Scopes: []string{admin.ScopeAll}})
	}
	return admin.NewKeys(keys...)
}

// adminReloads are the admin files SIGHUP re-reads: --admin-keys-file (a
// key added or revoked) and --admin-client-ca (a CA rotated).
func adminReloads(c config, keys *admin.Keys, cas *admin.CAs) []reloadable {
	var out []reloadable
	if keys != nil && c.AdminKeysFile != "" {
		out = append(out, reloadable{what: "admin keys", file: c.AdminKeysFile, load: func() error {
			fresh, err := adminKeys(c)
			if err != nil {
				return err
			}
			return keys.Set(fresh.List())
		}})
	}
	if cas != nil && c.AdminClientCA != "" {
		out = append(out, reloadable{what: "admin client CAs", file: c.AdminClientCA, load: func() error {
			pool, err := admin.LoadCAs(c.AdminClientCA)
			if err != nil {
				return err
			}
			cas.Set(pool)
			return nil
		}})
	}
	return out
}

var errShortAdminKey = errors.New("--admin-key must be at least 32 bytes (make one with: starlingd gen-secret)")
