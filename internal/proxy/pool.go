package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
)

// Pool limits.
const (
	maxIdlePerBackend = 512
	idleTimeout       = 30 * time.Second // below common backend keep-alive timeouts
	dialTimeout       = 2 * time.Second
)

// bconn is one kept connection to a backend.
type bconn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	stop   func() bool // unregisters the client-gone hook of the request in flight
	cut    func()      // closes the connection: the client-gone hook, made once
	idleAt time.Time
}

// pool keeps connections to one backend. Busy connections are tracked too,
// so that a drain can cut what is still running when its grace is over.
type pool struct {
	addr   string
	tls    *tls.Config // nil: plain TCP
	dialer net.Dialer

	mu   sync.Mutex
	idle []*bconn
	busy map[*bconn]struct{}
}

func newPool(addr string, tlsCfg *tls.Config) *pool {
	return &pool{
		addr:   addr,
		tls:    tlsCfg,
		dialer: net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		busy:   map[*bconn]struct{}{},
	}
}

// get returns an idle connection, or dials a new one. With checkStale, an
// idle connection the backend has closed is detected before it is used,
// for requests that must not be sent twice.
func (p *pool) get(ctx context.Context, checkStale bool) (*bconn, error) {
	now := clock.Real{}.Now()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.busy[c] = struct{}{}
		p.mu.Unlock()
		if now.Sub(c.idleAt) > idleTimeout || checkStale && stale(c) {
			p.drop(c)
			continue
		}
		c.reused = true
		return c, nil
	}
	raw, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if p.tls != nil {
		t := tls.Client(raw, p.tls)
		if err := t.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		raw = t
	}
	c := &bconn{Conn: raw, br: bufio.NewReaderSize(raw, 16<<10), bw: bufio.NewWriterSize(raw, 8<<10)}
	c.cut = func() { c.Close() }
	p.mu.Lock()
	p.busy[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// stale reports whether the backend closed (or wrote to) an idle connection.
func stale(c *bconn) bool {
	if c.br.Buffered() > 0 {
		return true
	}
	_ = c.SetReadDeadline(clock.Real{}.Now())
	_, err := c.br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// put returns a connection whose last exchange ended cleanly.
func (p *pool) put(c *bconn) {
	c.idleAt = clock.Real{}.Now()
	p.mu.Lock()
	if _, ok := p.busy[c]; !ok || len(p.idle) >= maxIdlePerBackend {
		// Cut by a drain meanwhile, or too many idle.
		delete(p.busy, c)
		p.mu.Unlock()
		c.Close()
		return
	}
	delete(p.busy, c)
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// drop closes a connection that must not be reused.
func (p *pool) drop(c *bconn) {
	p.mu.Lock()
	delete(p.busy, c)
	p.mu.Unlock()
	c.Close()
}

// closeIdle closes every idle connection.
func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// closeBusy cuts every connection in use; their requests fail.
func (p *pool) closeBusy() int {
	p.mu.Lock()
	busy := p.busy
	p.busy = map[*bconn]struct{}{}
	p.mu.Unlock()
	for c := range busy {
		c.Close()
	}
	return len(busy)
}

func (p *pool) busyCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.busy)
}

func tlsClient(c net.Conn, p *pool) *tls.Conn { return tls.Client(c, p.tls) }
