package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starling-im/starling/server/admin"
)

func TestAdminKeysFlags(t *testing.T) {
	env := func(string) string { return "" }
	if _, err := parseConfig([]string{"--admin-key", "short"}, env); err == nil {
		t.Fatal("a short --admin-key was accepted")
	}
	for _, args := range [][]string{
		{"--push-webhook", "https://backend.example/push"},
		{"--push-webhook", "https://backend.example/push", "--push-webhook-secret", "short"},
		{"--push-webhook", "ftp://backend.example/push", "--push-webhook-secret", strings.Repeat("s", 16)},
		{"--push-window", "0s"},
		{"--events", "message.stored"},
		{"--events", "message.deleted", "--event-webhook", "https://b.example/e", "--event-webhook-secret", strings.Repeat("s", 16)},
		{"--event-webhook", "https://b.example/e"},
		{"--admin-client-ca", "ca.pem", "--admin-keys-file", "keys.json"},
		{"--admin-client-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
	} {
		if _, err := parseConfig(args, env); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseConfig([]string{"--push-webhook", "https://backend.example/push", "--push-webhook-secret", strings.Repeat("s", 16)}, env); err != nil {
		t.Errorf("a good push webhook refused: %v", err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.json")
	key := strings.Repeat("k", 40)
	if err := os.WriteFile(good, []byte(`{"keys":[{"name":"billing","sha256":"`+admin.Hash(key)+`","scopes":["tokens","users"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--admin-keys-file", good, "--admin-key", strings.Repeat("f", 32)}, env)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := adminKeys(c)
	if err != nil || keys.Len() != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for name, body := range map[string]string{
		"not json":      `keys: []`,
		"bad hash":      `{"keys":[{"name":"a","sha256":"abc","scopes":["*"]}]}`,
		"no scopes":     `{"keys":[{"name":"a","sha256":"` + admin.Hash(key) + `"}]}`,
		"unknown scope": `{"keys":[{"name":"a","sha256":"` + admin.Hash(key) + `","scopes":["root"]}]}`,
		"twice a name":  `{"keys":[{"name":"a","sha256":"` + admin.Hash(key) + `","scopes":["*"]},{"name":"a","sha256":"` + admin.Hash(key) + `","scopes":["*"]}]}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := adminKeys(config{AdminKeysFile: path}); err == nil {
			t.Errorf("%s: key file accepted", name)
		}
	}
	if _, err := adminKeys(config{AdminKeysFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing key file was accepted")
	}
}
