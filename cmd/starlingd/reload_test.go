package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starling-im/starling/server/admin"
)

// A SIGHUP re-reads the keys file and the admin CA file; a file that does
// not load leaves what was loaded before.
func TestSIGHUPReloadsAdminKeysAndCAs(t *testing.T) {
	dir := t.TempDir()
	keysPath, caPath := filepath.Join(dir, "keys.json"), filepath.Join(dir, "ca.pem")
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(name string) string {
		return `{"name":"` + name + `","sha256":"` + admin.Hash(strings.Repeat(name, 40)[:40]) + `","scopes":["*"]}`
	}
	caA, caB := selfSignedCA(t, "CA A"), selfSignedCA(t, "CA B")
	write(keysPath, `{"keys":[`+entry("a")+`]}`)
	write(caPath, caA)
	c := config{AdminKeysFile: keysPath, AdminClientCA: caPath}
	keys, err := adminKeys(c)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := admin.LoadCAs(caPath)
	if err != nil {
		t.Fatal(err)
	}
	cas := admin.NewCAs(pool)
	logs := &lockedBuffer{} // observe_test.go
	stop := reloadAdmin(t.Context(), c, keys, cas, slog.New(slog.NewTextHandler(logs, nil)))
	defer stop()

	write(keysPath, `{"keys":[`+entry("a")+`,`+entry("b")+`]}`)
	write(caPath, caB)
	hangUp(t)
	wantB := poolOf(t, caB)
	waitFor(t, "the reload", func() bool { return keys.Len() == 2 && cas.Pool().Equal(wantB) })

	write(keysPath, `keys: none`)
	write(caPath, "no certificate here")
	hangUp(t)
	waitFor(t, "the failed reload's log lines", func() bool {
		return strings.Contains(logs.String(), "admin keys: reload failed") && strings.Contains(logs.String(), "admin client CAs: reload failed")
	})
	if keys.Len() != 2 || !cas.Pool().Equal(wantB) {
		t.Fatalf("after files that do not load: %d keys, CAs kept %v; want the last ones kept", keys.Len(), cas.Pool().Equal(wantB))
	}
}

func hangUp(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
	}
}

func poolOf(t *testing.T, pemText string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(pemText)) {
		t.Fatal("no certificate")
	}
	return p
}

func selfSignedCA(t *testing.T, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
