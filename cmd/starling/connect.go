package main

import (
	"fmt"
	"strings"

	"github.com/starling-im/starling/client"
)

// endpoint is where to connect and how.
type endpoint struct {
	addr       string
	tls        bool
	caFile     string // PEM CAs to trust ("" : the system's)
	serverName string // the name the certificate must be for ("": addr's host)
}

// target is where to connect: --server (or STARLING_SERVER) with the TLS
// flags, else the server logged in to with the TLS settings of that login
// (flags given now win), else the default.
func (a *app) target(c *config) endpoint {
	e := endpoint{addr: defaultServer, tls: a.tls, caFile: a.caFile, serverName: a.serverName}
	switch {
	case a.server != "":
		e.addr = a.server
	case c != nil && c.Server != "":
		e.addr, e.tls = c.Server, a.tls || c.TLS
		if e.caFile == "" {
			e.caFile = c.CAFile
		}
		if e.serverName == "" {
			e.serverName = c.ServerName
		}
	}
	// Either names a certificate to check, which only TLS has.
	e.tls = e.tls || e.caFile != "" || e.serverName != ""
	return e
}

// options are the client options that connect to e.
func (a *app) options(e endpoint) ([]client.Option, error) {
	a.dialedTLS = e.tls
	if !e.tls {
		return nil, nil
	}
	cfg, err := client.TLSConfig(e.caFile, e.serverName)
	if err != nil {
		return nil, err
	}
	return []client.Option{client.WithTLS(cfg)}, nil
}

// dial connects with token (may be empty).
func (a *app) dial(c *config, token string) (*client.Client, error) {
	e := a.target(c)
	opts, err := a.options(e)
	if err != nil {
		return nil, err
	}
	cl, err := client.Dial(e.addr, append(opts, client.WithToken(token))...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", e.addr, err)
	}
	return cl, nil
}

// loggedIn loads the login and connects with its token.
func (a *app) loggedIn() (*config, *client.Client, error) {
	c, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	cl, err := a.dial(c, c.Token)
	if err != nil {
		return nil, nil, err
	}
	return c, cl, nil
}

// tlsHint is what to try when err is a connection that failed on TLS, ""
// otherwise. gRPC reports these as Unavailable with the transport's error
// in the message, so the message is all there is to go on.
func tlsHint(err error, usedTLS bool) string {
	msg := err.Error()
	switch {
	case usedTLS && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the server does not speak TLS: try without --tls, --ca-file and --server-name)"
	case usedTLS && strings.Contains(msg, "certificate signed by unknown authority"):
		return " (the server's certificate is not signed by a CA this machine trusts: pass the CA's certificate with --ca-file PATH)"
	case usedTLS && (strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "doesn't contain any IP SANs")):
		return " (the certificate is for another name: connect by that name, or give it with --server-name NAME)"
	case !usedTLS && (strings.Contains(msg, "error reading server preface") ||
		strings.Contains(msg, "http2: frame too large")):
		return " (the server may require TLS: try --tls (and --ca-file for a private CA))"
	}
	return ""
}
