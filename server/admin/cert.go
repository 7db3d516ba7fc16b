package admin

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/starling-im/starling/server/apierr"
)

// How a call was authenticated, as logged.
const (
	viaKey  = "api-key"
	viaCert = "client-cert"
)

// authenticate finds the key entry of an incoming call: by its API key
// when it carries one (a wrong key is refused, never retried as a
// certificate), else by its TLS client certificate when the node has
// admin CAs. Errors: apierr.NoAPIKey, apierr.BadClientCert.
func (s *Server) authenticate(ctx context.Context) (Key, string, error) {
	key, carried, err := s.Keys.keyOf(ctx)
	if carried {
		return key, viaKey, err
	}
	if s.ClientCAs != nil && s.ClientCAs.Pool() != nil {
		if chain := peerChain(ctx); len(chain) > 0 {
			key, err := s.certKey(chain)
			return key, viaCert, err
		}
	}
	return Key{}, "", fmt.Errorf("%w: no %s and no client certificate", apierr.NoAPIKey, KeyHeader)
}

// peerChain is the certificate chain the client presented in its TLS
// handshake (leaf first), nil when it presented none or is not on TLS.
// The node only requests a certificate (tls.RequestClientCert): devices
// have none, and a certificate no admin CA signed must be refused here,
// with a status, not by failing the handshake.
func peerChain(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return info.State.PeerCertificates
}

// certKey verifies the chain against the admin CAs (for client
// authentication, now) and finds the entry whose cert_cn the leaf names.
func (s *Server) certKey(chain []*x509.Certificate) (Key, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.ClientCAs.Pool(),
		Intermediates: inter,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return Key{}, fmt.Errorf("%w: subject %q: %w", apierr.BadClientCert, leaf.Subject.CommonName, err)
	}
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	key, ok := s.Keys.findCert(names)
	if !ok {
		return Key{}, fmt.Errorf("%w: subject %q names no key entry (cert_cn), or a revoked one", apierr.BadClientCert, leaf.Subject.CommonName)
	}
	return key, nil
}
