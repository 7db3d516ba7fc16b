package server

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/mem"
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
	if rc := newReadyConn(tc); rc != nil {
		return rc, nil
	}
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

// readyConn is a trackedConn over a socket that gRPC can read without
// keeping a read buffer per connection. gRPC does that on its own for a
// bare *net.TCPConn: it waits until the socket is readable and only then
// takes a buffer from a shared pool, and gives it back once the bytes are
// consumed. A connection it does not recognise gets a 32 KiB bufio.Reader
// for its whole life instead — most of an idle phone's heap, since every
// connection here is wrapped. ReadOnReady is the method gRPC looks for
// (its internal readyreader.Reader) and does what gRPC does for a
// *net.TCPConn.
type readyConn struct {
	*trackedConn
	raw syscall.RawConn
	// used: gRPC has read through ReadOnReady (for the test that checks a
	// gRPC upgrade still does).
	used atomic.Bool

	// One read's arguments and results, fields rather than a closure's
	// captures so that a read allocates nothing: only the connection's
	// single reader (gRPC's framer) calls ReadOnReady.
	size    int
	pool    mem.BufferPool
	buf     *[]byte
	n       int
	readErr error
	doRead  func(fd uintptr) bool
}

// newReadyConn returns c as a readyConn, or nil when its connection is not
// a plain socket (then gRPC reads it through a bufio.Reader, as before).
func newReadyConn(c *trackedConn) *readyConn {
	switch c.Conn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	raw, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	rc := &readyConn{trackedConn: c, raw: raw}
	rc.doRead = rc.read
	return rc
}

// ReadOnReady waits until the socket is readable, then reads at most size
// bytes into a buffer from pool (google.golang.org/grpc/internal/transport
// /readyreader.Reader): the buffer returned is the caller's to put back.
func (c *readyConn) ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error) {
	if !c.used.Load() {
		c.used.Store(true)
	}
	c.size, c.pool = size, pool
	err := c.raw.Read(c.doRead) // calls read until it returns true, waiting for readability between calls
	buf, n, readErr := c.buf, c.n, c.readErr
	c.pool, c.buf, c.n, c.readErr = nil, nil, 0, nil
	switch {
	case err != nil: // closed, or past a deadline
		if buf != nil {
			pool.Put(buf)
		}
		return nil, 0, err
	case readErr != nil:
		return nil, 0, readErr
	case n == 0:
		pool.Put(buf)
		return nil, 0, io.EOF
	}
	return buf, n, nil
}

// read is one attempt of ReadOnReady; false: nothing to read yet.
func (c *readyConn) read(fd uintptr) bool {
	c.buf = c.pool.Get(c.size)
	for {
		c.n, c.readErr = syscall.Read(int(fd), *c.buf)
		if c.readErr != syscall.EINTR {
			break
		}
	}
	if c.readErr == nil {
		return true
	}
	c.pool.Put(c.buf)
	c.buf, c.n = nil, 0
	return c.readErr != syscall.EAGAIN
}
