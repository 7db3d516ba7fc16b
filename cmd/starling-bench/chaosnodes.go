package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// chaosNode is one starlingd process the chaos scenario owns: it starts,
// kills, stops and restarts it, always on the same address and data.
type chaosNode struct {
	name string
	bin  string
	addr string
	args []string
	log  string // file the process's stderr goes to

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// freeAddr reserves a loopback port by listening and closing: the node
// binds it right after (a race with other programs we accept in a bench).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("reserve a port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// findStarlingd is --starlingd's default: starlingd next to this binary,
// else on PATH.
func findStarlingd() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "starlingd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("starlingd")
	if err != nil {
		return "", errors.New("no starlingd next to starling-bench or on PATH: give --starlingd")
	}
	return p, nil
}

// start runs the process; it does not wait for it to serve (ready does).
func (n *chaosNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s log: %w", n.name, err)
	}
	cmd := exec.Command(n.bin, append([]string{"--listen", n.addr, "--node-id", n.name}, n.args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start node %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() { // owned by the process: ends when it exits
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	return nil
}

// ready waits until the node answers the gRPC health check as serving.
func (n *chaosNode) ready(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	h := healthpb.NewHealthClient(cc)
	for {
		res, err := h.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not serving after %v (log: %s): last %v", n.name, timeout, n.log, err)
		case <-n.exited():
			return fmt.Errorf("node %s exited while starting (log: %s)", n.name, n.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *chaosNode) exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done
}

func (n *chaosNode) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("node %s not running", n.name)
	}
	return n.cmd.Process.Signal(sig)
}

// stop sends sig and waits up to wait for the process to exit, then kills
// it.
func (n *chaosNode) stop(sig syscall.Signal, wait time.Duration) error {
	if err := n.signal(sig); err != nil {
		return err
	}
	select {
	case <-n.exited():
		return nil
	case <-time.After(wait):
		_ = n.signal(syscall.SIGKILL)
		<-n.exited()
		return fmt.Errorf("node %s did not exit %v after %v; killed", n.name, wait, sig)
	}
}

// chaosProxy is a TCP proxy the bench owns between the nodes and their
// database, so making the database unreachable needs no privileges:
// cut closes every connection and refuses new ones until restore.
type chaosProxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	// gate is closed while bytes from the server flow to the client; an
	// open channel while stalled (a client that stopped reading).
	gate chan struct{}
}

func newChaosProxy(target string) (*chaosProxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("database proxy: %w", err)
	}
	p := &chaosProxy{lis: lis, target: target, conns: make(map[net.Conn]struct{}), gate: make(chan struct{})}
	close(p.gate)
	go p.serve() // ends when close closes lis
	return p, nil
}

func (p *chaosProxy) addr() string { return p.lis.Addr().String() }

func (p *chaosProxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *chaosProxy) forward(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil || !p.track(s) {
		c.Close()
		if s != nil {
			s.Close()
		}
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(s, c)
	go func() { // server → client, through the gate
		defer wg.Done()
		buf := make([]byte, 32*1024)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				p.wait()
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		c.Close()
		s.Close()
	}()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *chaosProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// setCut makes the database unreachable (true) or reachable again.
func (p *chaosProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// wait blocks while the proxy is stalled.
func (p *chaosProxy) wait() {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	<-g
}

// setStalled stops (true) or resumes forwarding from the server: the
// client stops reading, so the server's writes to it block.
func (p *chaosProxy) setStalled(stall bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	open := func() bool {
		select {
		case <-p.gate:
			return true
		default:
			return false
		}
	}()
	switch {
	case stall && open:
		p.gate = make(chan struct{})
	case !stall && !open:
		close(p.gate)
	}
}

func (p *chaosProxy) close() {
	p.setStalled(false)
	p.setCut(true)
	p.lis.Close()
}
