package admin

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// CAs are the certificate authorities whose client certificates open
// AdminService (--admin-client-ca). Set may replace them while the node
// serves (starlingd re-reads the file on SIGHUP, as it does the keys
// file): each call verifies against the pool of the moment, so a CA
// rotated out stops opening AdminService without a restart.
type CAs struct{ pool atomic.Pointer[x509.CertPool] }

// NewCAs holds pool.
func NewCAs(pool *x509.CertPool) *CAs {
	c := &CAs{}
	c.pool.Store(pool)
	return c
}

// Set replaces the pool.
func (c *CAs) Set(pool *x509.CertPool) { c.pool.Store(pool) }

// Pool is the current pool.
func (c *CAs) Pool() *x509.CertPool { return c.pool.Load() }

// LoadCAs reads a PEM file of CA certificates. A file with none is an
// error, not an empty pool that would quietly refuse every certificate.
func LoadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin client CAs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("admin client CAs %s: %w", path, errNoPEM)
	}
	return pool, nil
}

var errNoPEM = errors.New("no PEM certificate in it")
