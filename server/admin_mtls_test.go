package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/servertest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key}
}

// issue signs a leaf certificate: for a server (127.0.0.1) or a client
// (common name cn).
func (ca testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAdminClientCertificates: over a real TLS loopback server that
// requests (not requires) client certificates, a certificate signed by
// the admin CA whose common name is a key entry's cert_cn opens
// AdminService with that entry's scopes; one signed by another CA, one
// naming no entry, an expired one and a revoked entry's are
// Unauthenticated; a certificate never opens a user service, and devices
// without one still use theirs.
func TestAdminClientCertificates(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			testAdminClientCertificates(t, b)
		})
	}
}

func testAdminClientCertificates(t *testing.T, b servertest.Backend) {
	ca, rogue := newCA(t, "admin CA"), newCA(t, "rogue CA")
	serverCert := ca.issue(t, "starling", x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	clientCAs := admin.NewCAs(pool)
	keys, err := admin.NewKeys(
		admin.Key{Name: "billing", CertCN: "billing-backend", Scopes: []string{admin.ScopeTokens}},
		admin.Key{Name: "full", SHA256: admin.Hash(fullKey), CertCN: "ops", Scopes: []string{admin.ScopeAll}},
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.WithStore(b.New(t)),
		servertest.WithConfig(func(c *server.Config) { c.AdminKeys, c.AdminClientCAs = keys, clientCAs }),
		servertest.WithServerOptions(grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequestClientCert,
		}))))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(certs ...tls.Certificate) *grpc.ClientConn {
		t.Helper()
		cc, err := grpc.NewClient(srv.Target(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	billing := starlingv1.NewAdminServiceClient(dial(ca.issue(t, "billing-backend", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))))
	// A device registers over TLS with no certificate.
	reg, err := starlingv1.NewAuthServiceClient(dial()).Register(t.Context(), &starlingv1.RegisterRequest{Username: "alice", Password: servertest.Password})
	if err != nil {
		t.Fatalf("register without a client certificate: %v", err)
	}
	u := servertest.User{ID: reg.GetUser().GetUserId(), Username: "alice"}
	issue := &starlingv1.IssueTokenRequest{UserId: u.ID, DeviceId: "phone"}
	tok, err := billing.IssueToken(t.Context(), issue)
	if err != nil {
		t.Fatalf("IssueToken with the billing certificate: %v", err)
	}
	// The issued token works for the user (no certificate needed).
	chat := starlingv1.NewChatServiceClient(dial())
	if _, err := chat.ListConversations(servertest.WithToken(t.Context(), tok.GetToken()), &starlingv1.ListConversationsRequest{}); err != nil {
		t.Fatalf("issued token: %v", err)
	}
	// The entry's scopes hold.
	_, err = billing.GetPresence(t.Context(), &starlingv1.AdminServiceGetPresenceRequest{UserIds: []string{u.ID}})
	wantCode(t, err, codes.PermissionDenied, "presence with the tokens-only certificate")
	// A certificate never opens a user service.
	_, err = starlingv1.NewChatServiceClient(dial(ca.issue(t, "ops", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour)))).
		ListConversations(t.Context(), &starlingv1.ListConversationsRequest{})
	wantCode(t, err, codes.Unauthenticated, "admin certificate on a user service")

	presence := &starlingv1.AdminServiceGetPresenceRequest{UserIds: []string{u.ID}}
	for name, cc := range map[string]*grpc.ClientConn{
		"signed by another CA": dial(rogue.issue(t, "billing-backend", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))),
		"naming no entry":      dial(ca.issue(t, "someone-else", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))),
		"expired":              dial(ca.issue(t, "ops", x509.ExtKeyUsageClientAuth, time.Now().Add(-time.Minute))),
		"for servers only":     dial(ca.issue(t, "ops", x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour))),
		"no certificate":       dial(),
	} {
		_, err := starlingv1.NewAdminServiceClient(cc).GetPresence(t.Context(), presence)
		wantCode(t, err, codes.Unauthenticated, name)
	}
	// A user token never opens AdminService, certificate or not.
	_, err = billing.IssueToken(servertest.WithToken(t.Context(), tok.GetToken()), issue)
	wantCode(t, err, codes.OK, "billing certificate with a user token besides")
	_, err = starlingv1.NewAdminServiceClient(dial()).IssueToken(servertest.WithToken(t.Context(), tok.GetToken()), issue)
	wantCode(t, err, codes.Unauthenticated, "user token on AdminService over TLS")
	// A wrong API key is refused even with a good certificate: a key, when
	// given, is what is checked.
	_, err = billing.IssueToken(withKey(t.Context(), "sk_wrong"), issue)
	wantCode(t, err, codes.Unauthenticated, "good certificate, wrong key")
	// API keys still work over TLS.
	if _, err := starlingv1.NewAdminServiceClient(dial()).GetPresence(withKey(t.Context(), fullKey), presence); err != nil {
		t.Fatalf("API key over TLS: %v", err)
	}

	// The Go admin client with a certificate and no key.
	ad, err := client.NewAdmin(srv.Target(), "", client.WithTLS(&tls.Config{RootCAs: roots}),
		client.WithClientCertificate(ca.issue(t, "ops", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))))
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if online, err := ad.Presence(t.Context(), u.ID); err != nil || online[u.ID] {
		t.Fatalf("client.NewAdmin with a certificate: %v %v", online, err)
	}

	// Rotating the CAs (the CA file reloaded) takes effect on the next
	// call, on connections already open.
	byRogue := starlingv1.NewAdminServiceClient(dial(rogue.issue(t, "ops", x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))))
	rotated := x509.NewCertPool()
	rotated.AddCert(rogue.cert)
	clientCAs.Set(rotated)
	_, err = billing.IssueToken(t.Context(), issue)
	wantCode(t, err, codes.Unauthenticated, "certificate of a CA rotated out")
	if _, err := byRogue.GetPresence(t.Context(), presence); err != nil {
		t.Fatalf("certificate of the CA rotated in: %v", err)
	}
	clientCAs.Set(pool)

	// Revoking the entry (the key file reloaded) shuts its certificates out.
	if err := keys.Set([]admin.Key{{Name: "billing", CertCN: "billing-backend", Scopes: []string{admin.ScopeTokens}, Revoked: true}}); err != nil {
		t.Fatal(err)
	}
	_, err = billing.IssueToken(context.Background(), issue)
	wantCode(t, err, codes.Unauthenticated, "revoked entry's certificate")
}
