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

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
)

// A SIGHUP re-reads the keys file, the admin CA file and the server's
// certificate; a file that does not load leaves what was loaded before.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	keysPath, caPath := filepath.Join(dir, "keys.json"), filepath.Join(dir, "ca.pem")
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(name string) string {
		return `{"name":"` + name + `","sha256":"` + admin.Hash(strings.Repeat(name, 40)[:40]) + `","scopes":["*"]}`
	}
	caA, _ := selfSigned(t, "CA A")
	caB, _ := selfSigned(t, "CA B")
	certA, keyA := selfSigned(t, "node A")
	certB, keyB := selfSigned(t, "node B")
	write(keysPath, `{"keys":[`+entry("a")+`]}`)
	write(caPath, caA)
	write(certPath, certA)
	write(keyPath, keyA)
	c := config{AdminKeysFile: keysPath, AdminClientCA: caPath, TLSCert: certPath, TLSKey: keyPath}
	keys, err := adminKeys(c)
	if err != nil {
		t.Fatal(err)
	}
	var cfg server.Config
	tc, certReload, err := serverTLS(c, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := func() string {
		cert, err := tc.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	cas := cfg.AdminClientCAs
	if served() != "node A" || !cas.Pool().Equal(poolOf(t, caA)) {
		t.Fatal("not serving what was loaded at start")
	}
	logs := &lockedBuffer{} // observe_test.go
	stop := reloadOnHangUp(t.Context(), slog.New(slog.NewTextHandler(logs, nil)), append(adminReloads(c, keys, cas), certReload)...)
	defer stop()

	write(keysPath, `{"keys":[`+entry("a")+`,`+entry("b")+`]}`)
	write(caPath, caB)
	write(certPath, certB)
	write(keyPath, keyB)
	hangUp(t)
	wantB := poolOf(t, caB)
	waitFor(t, "the reload", func() bool { return keys.Len() == 2 && cas.Pool().Equal(wantB) && served() == "node B" })

	write(keysPath, `keys: none`)
	write(caPath, "no certificate here")
	write(certPath, "no certificate here")
	hangUp(t)
	waitFor(t, "the failed reload's log lines", func() bool {
		l := logs.String()
		return strings.Contains(l, "admin keys: reload failed") && strings.Contains(l, "admin client CAs: reload failed") &&
			strings.Contains(l, "TLS certificate: reload failed")
	})
	if keys.Len() != 2 || !cas.Pool().Equal(wantB) || served() != "node B" {
		t.Fatalf("after files that do not load: %d keys, CAs kept %v, serving %s; want the last ones kept", keys.Len(), cas.Pool().Equal(wantB), served())
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

// selfSigned makes a self-signed CA certificate (it serves as a server
// certificate too) and its key, in PEM.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}
