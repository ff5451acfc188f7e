package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/clock"
)

// longConn is a relay that outlives a request: an upgraded (WebSocket)
// connection or a TCP-mode connection.
type longConn struct {
	client, backend net.Conn
	ws              bool
	failover        atomic.Bool
	closeOnce       sync.Once
}

// stop ends the relay because its node no longer takes traffic. A
// WebSocket relay is woken so that it can send the client a close frame
// (1012, service restart) at a frame boundary; a TCP relay is closed.
func (l *longConn) stop() {
	l.failover.Store(true)
	if l.ws {
		_ = l.backend.SetReadDeadline(clock.Real{}.Now()) // a socket deadline is kernel time
		// If the relay cannot get to a boundary soon, cut it anyway.
		clock.Real{}.AfterFunc(time.Second, l.close)
		return
	}
	l.close()
}

func (l *longConn) close() {
	l.closeOnce.Do(func() {
		l.client.Close()
		l.backend.Close()
	})
}

func (b *backend) addLong(l *longConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.inSet {
		return false
	}
	b.long[l] = struct{}{}
	return true
}

func (b *backend) removeLong(l *longConn) {
	b.mu.Lock()
	delete(b.long, l)
	b.mu.Unlock()
}

func (b *backend) closeLong() {
	b.mu.Lock()
	ls := make([]*longConn, 0, len(b.long))
	for l := range b.long {
		ls = append(ls, l)
	}
	b.mu.Unlock()
	for _, l := range ls {
		l.stop()
	}
}

func (p *Proxy) closeAllLong() {
	for _, b := range p.backends {
		b.mu.Lock()
		ls := make([]*longConn, 0, len(b.long))
		for l := range b.long {
			ls = append(ls, l)
		}
		b.mu.Unlock()
		for _, l := range ls {
			l.close()
		}
	}
}

// isUpgrade reports an HTTP/1.1 request to switch protocols (WebSocket).
func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// serveUpgrade forwards an upgrade request on a connection of its own and,
// once the backend switches protocols, relays bytes both ways.
func (p *Proxy) serveUpgrade(st *reqState, r *http.Request, start time.Time) {
	ctx := r.Context()
	deadline := start.Add(p.cfg.HoldTimeout)
	var after uint64
	for attempt := 0; ; attempt++ {
		ts, err := p.waitTargets(ctx, deadline, after)
		if err != nil {
			p.holdFailed(st, err)
			return
		}
		b := p.choose(ts, r, st)
		st.backend, st.tries = b.name, attempt+1
		sent := p.clk.Now()
		c, stg, err := p.upgradeRoundTrip(ctx, b, r)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.suspect(b, sent)
			if stg < stageResponse && attempt < p.cfg.Retries {
				p.metrics.retries.Inc()
				after = ts.gen
				continue
			}
			p.metrics.fail("connect")
			p.fail(st, b.name, http.StatusBadGateway, "haven proxy: the active node failed before answering; retry")
			return
		}
		resp := c.resp
		if resp.StatusCode != http.StatusServiceUnavailable {
			b.markServed(sent)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			p.respond(st, b, c.bconn, r, resp, sent)
			return
		}
		p.relayUpgrade(st, b, c.bconn, resp, strings.EqualFold(r.Header.Get("Upgrade"), "websocket"))
		return
	}
}

type upgraded struct {
	*bconn
	resp *http.Response
}

func (p *Proxy) upgradeRoundTrip(ctx context.Context, b *backend, r *http.Request) (upgraded, stage, error) {
	// A dedicated connection: it will not come back to the pool.
	c, err := b.pool.get(ctx, false)
	if err != nil {
		return upgraded{}, stageConnect, err
	}
	b.pool.mu.Lock()
	delete(b.pool.busy, c)
	b.pool.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	p.writeHead(c, r, true)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		c.Close()
		return upgraded{}, stageNoResponse, err
	}
	if _, err := c.br.Peek(1); err != nil {
		c.Close()
		return upgraded{}, stageNoResponse, err
	}
	resp, err := http.ReadResponse(c.br, r)
	if err != nil {
		c.Close()
		return upgraded{}, stageResponse, err
	}
	if ctx.Err() != nil {
		c.Close()
		return upgraded{}, stageResponse, ctx.Err()
	}
	return upgraded{c, resp}, 0, nil
}

func (p *Proxy) relayUpgrade(st *reqState, b *backend, c *bconn, resp *http.Response, ws bool) {
	client, brw, err := http.NewResponseController(st.w).Hijack()
	if err != nil {
		c.Close()
		p.fail(st, b.name, http.StatusBadGateway, "haven proxy: cannot switch protocols on this connection")
		return
	}
	st.wrote, st.code = true, http.StatusSwitchingProtocols
	p.metrics.request(b.name, http.StatusSwitchingProtocols)
	_ = client.SetDeadline(time.Time{})
	l := &longConn{client: client, backend: c.Conn, ws: ws}
	defer l.close()
	if !b.addLong(l) {
		return // the node stopped taking traffic meanwhile
	}
	defer b.removeLong(l)
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	if _, err := client.Write(head.Bytes()); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n := brw.Reader.Buffered(); n > 0 {
			early, _ := brw.Reader.Peek(n)
			if _, err := c.Conn.Write(early); err != nil {
				return
			}
		}
		_, _ = io.Copy(c.Conn, client)
		closeWrite(c.Conn)
	}()
	var ft frameTracker
	bufp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bufp)
	buf := *bufp
	var rerr error
	if n := c.br.Buffered(); n > 0 {
		early, _ := c.br.Peek(n)
		ft.feed(early)
		if _, err := client.Write(early); err != nil {
			rerr = err
		}
	}
	for rerr == nil {
		var n int
		n, rerr = c.Conn.Read(buf)
		if n > 0 {
			if _, err := client.Write(buf[:n]); err != nil {
				break
			}
			ft.feed(buf[:n])
		}
	}
	var ne net.Error
	backendGone := rerr != nil && (l.failover.Load() || errors.Is(rerr, io.EOF) || !errors.As(rerr, &ne) || !ne.Timeout())
	if ws && backendGone && !ft.closed && ft.atBoundary() {
		// Tell the client to reconnect: it will reach the new active.
		_ = client.SetWriteDeadline(clock.Real{}.Now().Add(time.Second))
		_, _ = client.Write(closeFrame(1012, "haven: failover, reconnect"))
		closeWrite(client)
	}
	l.close()
	<-done
}

// relayTCP copies src to dst until src ends. Small messages (requests and
// answers of a request-response protocol) go through a buffer with one
// read and one write each: for them splice(2) costs more in the kernel
// than the copy it saves (two splices through a pipe instead of a read
// and a write). Once a read fills the buffer the stream is bulk, and the
// rest goes through io.Copy, which splices between two *net.TCPConn.
func (p *Proxy) relayTCP(dst, src net.Conn) {
	if p.copySmall(dst, src) {
		_, _ = io.Copy(dst, src)
	}
}

// copySmall copies src to dst through a pooled buffer until src ends or a
// read fills the buffer; it reports the latter (the stream is bulk).
func (p *Proxy) copySmall(dst, src net.Conn) (bulk bool) {
	bufp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bufp)
	buf := *bufp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err != nil {
			return false
		}
		if n == len(buf) {
			return true
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// frameTracker follows WebSocket frame boundaries in the server-to-client
// stream, so that the proxy may add a close frame without cutting a frame.
type frameTracker struct {
	hdr    []byte // header bytes of the frame being read
	need   uint64 // payload bytes still to come
	closed bool   // the server sent a close frame
}

func (f *frameTracker) atBoundary() bool { return f.need == 0 && len(f.hdr) == 0 }

func (f *frameTracker) feed(p []byte) {
	for len(p) > 0 {
		if f.need > 0 {
			k := uint64(len(p))
			if k > f.need {
				k = f.need
			}
			f.need -= k
			p = p[k:]
			continue
		}
		f.hdr = append(f.hdr, p[0])
		p = p[1:]
		if len(f.hdr) < 2 {
			continue
		}
		want := 2
		l7 := f.hdr[1] & 0x7f
		switch l7 {
		case 126:
			want += 2
		case 127:
			want += 8
		}
		if f.hdr[1]&0x80 != 0 {
			want += 4
		}
		if len(f.hdr) < want {
			continue
		}
		var n uint64
		switch l7 {
		case 126:
			n = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
		case 127:
			n = binary.BigEndian.Uint64(f.hdr[2:10])
		default:
			n = uint64(l7)
		}
		if f.hdr[0]&0x0f == 0x8 {
			f.closed = true
		}
		f.need = n
		f.hdr = f.hdr[:0]
	}
}

// closeFrame is an unmasked WebSocket close frame from the server side.
func closeFrame(code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := []byte{0x88, byte(2 + len(reason)), byte(code >> 8), byte(code)}
	return append(b, reason...)
}

// serveTCP relays each accepted connection to a target, holding it while
// there is none.
func (p *Proxy) serveTCP(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				clock.Real{}.Sleep(5 * time.Millisecond)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			clock.Real{}.Sleep(5 * time.Millisecond) // EMFILE and the like
			continue
		}
		go p.handleTCP(ctx, c)
	}
}

func (p *Proxy) handleTCP(ctx context.Context, c net.Conn) {
	deadline := p.clk.Now().Add(p.cfg.HoldTimeout)
	var after uint64
	for attempt := 0; attempt <= p.cfg.Retries; attempt++ {
		ts, err := p.waitTargets(ctx, deadline, after)
		if err != nil {
			if errors.Is(err, errQueueFull) {
				p.metrics.fail("queue_full")
			} else if errors.Is(err, errHoldTimeout) {
				p.metrics.fail("hold_timeout")
			}
			c.Close()
			return
		}
		b := ts.nodes[0]
		if len(ts.nodes) > 1 {
			if p.cfg.Sticky.Mode == AffinitySource {
				b = ts.get(hrw(clientIP(c.RemoteAddr().String()), ts.names))
			} else {
				b = ts.nodes[p.rr.Add(1)%uint64(len(ts.nodes))]
			}
		}
		sent := p.clk.Now()
		bc, err := b.pool.dialer.DialContext(ctx, "tcp", b.addr)
		if err == nil && b.pool.tls != nil {
			t := tlsClient(bc, b.pool)
			if err = t.HandshakeContext(ctx); err != nil {
				bc.Close()
			} else {
				bc = t
			}
		}
		if err != nil {
			p.metrics.fail("tcp_dial")
			p.suspect(b, sent)
			after = ts.gen
			if attempt < p.cfg.Retries {
				p.metrics.retries.Inc()
			}
			continue
		}
		b.markServed(sent)
		l := &longConn{client: c, backend: bc}
		if !b.addLong(l) {
			bc.Close()
			after = ts.gen
			continue
		}
		p.metrics.request(b.name, 0)
		done := make(chan struct{})
		go func() {
			p.relayTCP(bc, c)
			closeWrite(bc)
			close(done)
		}()
		p.relayTCP(c, bc)
		closeWrite(c)
		select {
		case <-done:
		case <-clock.Real{}.After(5 * time.Second): // the client keeps its half open
		}
		l.close()
		<-done
		b.removeLong(l)
		return
	}
	c.Close()
}
