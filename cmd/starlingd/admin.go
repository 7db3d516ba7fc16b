package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

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

// reloadAdmin re-reads --admin-keys-file and --admin-client-ca on every
// SIGHUP until ctx ends, so a key added or revoked and a CA rotated take
// effect without a restart; a file that does not load leaves what it
// holds as it was. The returned func stops it.
func reloadAdmin(ctx context.Context, c config, keys *admin.Keys, cas *admin.CAs, log *slog.Logger) func() {
	reloadKeys := keys != nil && c.AdminKeysFile != ""
	reloadCAs := cas != nil && c.AdminClientCA != ""
	if !reloadKeys && !reloadCAs {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if reloadKeys {
				fresh, err := adminKeys(c)
				if err == nil && fresh != nil {
					err = keys.Set(fresh.List())
				}
				if err != nil {
					log.Error("admin keys: reload failed; keeping the old ones", "file", c.AdminKeysFile, "err", err)
				} else {
					log.Info("admin keys: reloaded", "file", c.AdminKeysFile, "keys", keys.Len())
				}
			}
			if reloadCAs {
				if pool, err := admin.LoadCAs(c.AdminClientCA); err != nil {
					log.Error("admin client CAs: reload failed; keeping the old ones", "file", c.AdminClientCA, "err", err)
				} else {
					cas.Set(pool)
					log.Info("admin client CAs: reloaded", "file", c.AdminClientCA)
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

var errShortAdminKey = errors.New("--admin-key must be at least 32 bytes (make one with: starlingd gen-secret)")
