package main

import (
	"fmt"

	"github.com/starling-im/starling/client"
)

// target is where to connect: --server (or STARLING_SERVER), else the
// server logged in to, else the default.
func (a *app) target(c *config) (addr string, useTLS bool) {
	if a.server != "" {
		return a.server, a.tls
	}
	if c != nil && c.Server != "" {
		return c.Server, a.tls || c.TLS
	}
	return defaultServer, a.tls
}

// dial connects with token (may be empty).
func (a *app) dial(c *config, token string) (*client.Client, error) {
	addr, useTLS := a.target(c)
	opts := []client.Option{client.WithToken(token)}
	if useTLS {
		opts = append(opts, client.WithTLS(nil))
	}
	cl, err := client.Dial(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
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
