package server

import (
	"net"
	"sync"
)

// connListener remembers the connections it accepted by remote address, so
// a stream handler can close the connection of a device that stopped
// reading: gRPC gives a handler no other way to end a write that is
// blocked on the peer's flow-control window.
type connListener struct {
	net.Listener

	mu    sync.Mutex
	conns map[string]*trackedConn
}

func newConnListener(l net.Listener) *connListener {
	return &connListener{Listener: l, conns: make(map[string]*trackedConn)}
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l, key: c.RemoteAddr().String()}
	l.mu.Lock()
	l.conns[tc.key] = tc
	l.mu.Unlock()
	return tc, nil
}

// closeConn closes the connection from addr, if this listener accepted it
// and it is still open.
func (l *connListener) closeConn(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	l.mu.Lock()
	c := l.conns[addr.String()]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	c.Close()
	return true
}

type trackedConn struct {
	net.Conn
	l    *connListener
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.key] == c {
			delete(c.l.conns, c.key)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
