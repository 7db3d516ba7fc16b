package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSConfig builds the TLS configuration for WithTLS from the two settings
// a deployment with its own certificates needs:
//
//   - caFile: a PEM file of the CA certificates to trust for the server's
//     certificate (a private CA, or a self-signed certificate itself), in
//     place of the system's roots; "" trusts the system's roots.
//   - serverName: the name the server's certificate must be for, when it
//     is not the host of the dial target (an IP address, a tunnel, a load
//     balancer's internal name); "" checks the target's host.
//
// It reads caFile now, so a missing or unreadable file is an error here,
// not a failed connection later. TLS 1.2 is the least it accepts.
//
//	cfg, err := client.TLSConfig("/etc/starling/ca.pem", "chat.internal")
//	if err != nil { … }
//	c, err := client.Dial("10.0.0.5:7070", client.WithTLS(cfg))
func TLSConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("starling: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("starling: CA file %s: %w", caFile, errNoCertificate)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

var errNoCertificate = errors.New("no PEM certificate in it")
