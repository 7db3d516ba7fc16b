package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// pool hands out gRPC connections to the server: several streams may
// share one (--streams-per-conn), and connections are spread over several
// loopback source addresses, since each source address has its own
// ephemeral port range (about 28,000 ports on Linux) and one address alone
// caps how many connections one host can open to one server port.
type pool struct {
	target  string
	opts    []grpc.DialOption
	perConn int
	sources []net.IP
	placed  atomic.Int64 // streams placed on the pool so far (see place)

	mu    sync.Mutex
	conns map[int]*grpc.ClientConn // by connection index
}

// newPool checks that target is a loopback address and prepares the
// connection options. small asks for small client buffers, for runs that
// hold many idle connections: the figure measured is the server's memory,
// and the load generator's own must not run the machine out first.
func newPool(ctx context.Context, cfg config, target string, small bool) (*pool, error) {
	if err := checkLoopback(ctx, "--target", target); err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS {
		tc := &tls.Config{InsecureSkipVerify: cfg.TLSSkipVerify} //nolint:gosec // an explicit flag, for self-signed test servers
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca: no certificate in %s", cfg.TLSCA)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	p := &pool{target: target, perConn: cfg.StreamsPerConn, conns: make(map[int]*grpc.ClientConn)}
	for i := range cfg.SourceAddrs {
		p.sources = append(p.sources, net.IPv4(127, 0, 0, byte(1+i)))
	}
	p.opts = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if small {
		p.opts = append(p.opts,
			grpc.WithReadBufferSize(4<<10),
			grpc.WithWriteBufferSize(4<<10),
			grpc.WithSharedWriteBuffer(true),
		)
	}
	return p, nil
}

// newPools opens a pool per address, in order.
func newPools(ctx context.Context, cfg config, addrs []string, small bool) ([]*pool, error) {
	pools := make([]*pool, len(addrs))
	for i, a := range addrs {
		p, err := newPool(ctx, cfg, a, small)
		if err != nil {
			return nil, err
		}
		pools[i] = p
	}
	return pools, nil
}

// checkLoopback refuses any address (of the flag named flagName) that is
// not on this machine: the bench only ever talks to servers of ours on
// the loopback interface.
func checkLoopback(ctx context.Context, flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, addr, err)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, addr, err)
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s %q: no address", flagName, addr)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return fmt.Errorf("%s %q resolves to %s: only loopback addresses may be loaded", flagName, addr, ip.IP)
		}
	}
	return nil
}

// place gives a new stream its index in the pool: streams of one pool
// fill its connections --streams-per-conn at a time, whichever targets
// the devices around them went to.
func (p *pool) place() int {
	return int(p.placed.Add(1) - 1)
}

// conn returns the connection stream i uses, opening it if needed.
// grpc.NewClient connects lazily, so this never blocks on the network.
func (p *pool) conn(i int) (*grpc.ClientConn, error) {
	ci := i / p.perConn
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc := p.conns[ci]; cc != nil {
		return cc, nil
	}
	src := &net.TCPAddr{IP: p.sources[ci%len(p.sources)]}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: src}
		return d.DialContext(ctx, "tcp", addr)
	}
	opts := append(p.opts[:len(p.opts):len(p.opts)], grpc.WithContextDialer(dial))
	// passthrough: the target is an address; no resolver goroutine per
	// connection.
	cc, err := grpc.NewClient("passthrough:///"+p.target, opts...)
	if err != nil {
		return nil, fmt.Errorf("new client for %s: %w", p.target, err)
	}
	p.conns[ci] = cc
	return cc, nil
}

// closeAll closes every connection; later calls to conn open new ones (a
// reconnect storm: phones come back on new TCP connections).
func (p *pool) closeAll() error {
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[int]*grpc.ClientConn)
	p.mu.Unlock()
	var errs []error
	for _, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closePools closes every connection of every pool.
func closePools(pools []*pool) error {
	var errs []error
	for _, p := range pools {
		errs = append(errs, p.closeAll())
	}
	return errors.Join(errs...)
}

// totalSize is how many connections the pools have open.
func totalSize(pools []*pool) int {
	n := 0
	for _, p := range pools {
		n += p.size()
	}
	return n
}

// size is how many connections are open.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
