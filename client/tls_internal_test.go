package client

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TLSConfig reads the CA file when called: a missing or non-PEM file is an
// error there, not a failed connection later.
func TestTLSConfigRefusesBadCAFiles(t *testing.T) {
	cfg, err := TLSConfig("", "chat.internal")
	if err != nil || cfg.RootCAs != nil || cfg.ServerName != "chat.internal" || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("no CA file: %+v, %v", cfg, err)
	}
	if _, err := TLSConfig(filepath.Join(t.TempDir(), "missing.pem"), ""); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("missing CA file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := TLSConfig(junk, ""); !errors.Is(err, errNoCertificate) {
		t.Fatalf("junk CA file: %v", err)
	}
}
