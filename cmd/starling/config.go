package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// config is what login leaves behind for later commands.
type config struct {
	Server string `json:"server"`
	TLS    bool   `json:"tls,omitempty"`
	// CAFile and ServerName are --ca-file and --server-name at login.
	CAFile     string    `json:"ca_file,omitempty"`
	ServerName string    `json:"server_name,omitempty"`
	UserID     string    `json:"user_id"`
	Username   string    `json:"username"`
	DeviceID   string    `json:"device_id"`
	Token      string    `json:"token"`
	Expires    time.Time `json:"expires_at,omitzero"`
	// SendToken is a second device, "<device>.send", used by send and
	// gsend. A device has one stream at a time (a newer one replaces the
	// older), so sending with the main token would cut off a listen or
	// chat running in another terminal.
	SendToken string `json:"send_token"`
}

// errNotLoggedIn is what every command that needs a token says without one.
var errNotLoggedIn = errors.New("not logged in: run 'starling login <username>' first")

// configDir is $STARLING_CONFIG_DIR, or starling/ in the user's config
// directory.
func configDir() (string, error) {
	if d := os.Getenv("STARLING_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the config directory (set STARLING_CONFIG_DIR): %w", err)
	}
	return filepath.Join(d, "starling"), nil
}

func (a *app) configPath() string { return filepath.Join(a.dir, "config.json") }

// loadConfig reads the login; errNotLoggedIn when there is none.
func (a *app) loadConfig() (*config, error) {
	b, err := os.ReadFile(a.configPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("reading login: %w", err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("reading login %s: %w", a.configPath(), err)
	}
	if c.Token == "" {
		return nil, errNotLoggedIn
	}
	return &c, nil
}

func (a *app) saveConfig(c *config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(a.configPath(), append(b, '\n'))
}

func (a *app) removeConfig() error {
	if err := os.Remove(a.configPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing login: %w", err)
	}
	return nil
}

// writeFileAtomic writes a private file (0600: it holds tokens) so that a
// crash leaves either the old or the new content, never half of it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
