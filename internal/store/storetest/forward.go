package storetest

import (
	"net"
	"sync"
	"testing"
)

// Forwarder is a TCP forwarder on loopback that a test can cut, to take one
// client off a server without touching the server or other clients.
// While cut, it forwards nothing and holds new connections silently, like a
// network that drops packets; Heal breaks the held connections and forwards
// again.
type Forwarder struct {
	Addr   string // listen address (host:port) to give the client
	target string
	ln     net.Listener

	mu       sync.Mutex
	cut      bool
	conns    map[net.Conn]struct{}
	accepted int
}

// Forward starts a forwarder to target; it stops at the end of the test.
func Forward(t testing.TB, target string) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.closeAll()
	})
	return f
}

func (f *Forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.accepted++
		cut := f.cut
		f.mu.Unlock()
		if cut {
			continue // held silently until Heal closes it
		}
		go f.pipe(c)
	}
}

func (f *Forwarder) pipe(c net.Conn) {
	s, err := net.Dial("tcp", f.target)
	if err != nil {
		f.drop(c)
		return
	}
	f.mu.Lock()
	if f.cut {
		f.mu.Unlock()
		s.Close()
		return
	}
	f.conns[s] = struct{}{}
	f.mu.Unlock()
	copyHalf := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				f.mu.Lock()
				cut := f.cut
				f.mu.Unlock()
				if cut {
					return // swallow: the connection hangs until Heal
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		f.drop(dst)
		f.drop(src)
	}
	go copyHalf(s, c)
	go copyHalf(c, s)
}

func (f *Forwarder) drop(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// Accepted is how many connections the forwarder has accepted so far.
func (f *Forwarder) Accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// Cut stops all traffic through the forwarder; connections hang.
func (f *Forwarder) Cut() {
	f.mu.Lock()
	f.cut = true
	f.mu.Unlock()
}

// Heal breaks the connections that hung while cut and forwards again.
func (f *Forwarder) Heal() {
	f.mu.Lock()
	f.cut = false
	f.mu.Unlock()
	f.closeAll()
}

func (f *Forwarder) closeAll() {
	f.mu.Lock()
	conns := f.conns
	f.conns = map[net.Conn]struct{}{}
	f.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}
