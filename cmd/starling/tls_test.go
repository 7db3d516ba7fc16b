package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/starling-im/starling/server/servertest"
)

// selfSigned makes a CA and a server certificate it signs for dnsName
// only (not for 127.0.0.1, so connecting by address needs --server-name);
// it returns the server's TLS certificate and the CA's PEM file.
func selfSigned(t *testing.T, dnsName string) (tls.Certificate, string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "starling test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: srvKey}, caFile
}

// A server with a certificate of a private CA: the CLI says what to try at
// each mistake, and works with --ca-file and --server-name, which login
// keeps for the later commands.
func TestTLSWithAPrivateCA(t *testing.T) {
	cert, caFile := selfSigned(t, "chat.internal")
	srv := servertest.Start(t, servertest.WithServerOptions(grpc.Creds(credentials.NewServerTLSFromCert(&cert))))
	u := newUser(t, srv)
	reg := []string{"register", "alice", "--password", pw}

	// Plaintext at a TLS server.
	u.fails(1, "the server may require TLS: try --tls (and --ca-file for a private CA)", reg...)
	// TLS trusting the system's CAs only (--server-name implies --tls).
	u.fails(1, "pass the CA's certificate with --ca-file PATH", append([]string{"--server-name", "chat.internal"}, reg...)...)
	u.fails(1, "give it with --server-name NAME", append([]string{"--tls"}, reg...)...)
	// The right CA, but the certificate is for chat.internal, not 127.0.0.1.
	u.fails(1, "give it with --server-name NAME", append([]string{"--ca-file", caFile}, reg...)...)
	// A CA file that is none.
	u.fails(1, "no such file", append([]string{"--ca-file", caFile + ".missing", "--server-name", "chat.internal"}, reg...)...)
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(notPEM, []byte("junk"), 0o600)
	u.fails(1, "no PEM certificate", append([]string{"--ca-file", notPEM, "--server-name", "chat.internal"}, reg...)...)

	// Both: it works (--ca-file implies --tls), and login keeps them.
	tlsFlags := []string{"--ca-file", caFile, "--server-name", "chat.internal"}
	if out := u.ok(append(tlsFlags, reg...)...); !strings.Contains(out, "registered alice") {
		t.Fatalf("register over TLS: %q", out)
	}
	// Login from another directory: the CA path is kept absolute.
	t.Chdir(filepath.Dir(caFile))
	u.ok("--ca-file", filepath.Base(caFile), "--server-name", "chat.internal", "login", "alice", "--password", pw, "--device", "cli")
	t.Chdir(t.TempDir())
	t.Setenv("STARLING_SERVER", "") // the server logged in to, with its TLS settings
	u.t.Setenv("STARLING_CONFIG_DIR", u.dir)
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"send", "alice", "note to self"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("send after a TLS login: exit %d: %s", code, errOut.String())
	}
	l := u.listenNoEnv(t)
	l.waitText(t, "listening as alice (device cli) on "+srv.Target()+"\n")
	l.waitText(t, "alice: note to self\n")
	l.stop(t)
}

// --tls at a plaintext server: the CLI suggests dropping it.
func TestTLSAtAPlaintextServer(t *testing.T) {
	srv := servertest.Start(t)
	u := newUser(t, srv)
	u.fails(1, "the server does not speak TLS: try without --tls", "--tls", "register", "alice", "--password", pw)
	_, caFile := selfSigned(t, "chat.internal")
	u.fails(1, "the server does not speak TLS", "--ca-file", caFile, "register", "alice", "--password", pw)
}
