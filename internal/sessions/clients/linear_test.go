package clients

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/haven-ha/haven/internal/drill"
)

// history records SETs and reads of a few keys by several clients, each
// talking to whichever node takes writes, for porcupine (drill.Linearizable).
// Reads are GETEX with no option: a read that only the active answers
// (standbys say READONLY), after every earlier write is stored.
type history struct {
	sb    *drill.Sandbox
	keys  string // key prefix: every history starts from absent keys
	start time.Time
	stop  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	ops   []drill.Op
	seq   atomic.Int64
}

func startHistory(sb *drill.Sandbox, clients int) *history {
	h := &history{sb: sb, start: time.Now(), keys: fmt.Sprintf("lin%d:", time.Now().UnixNano())}
	for c := 0; c < clients; c++ {
		h.wg.Add(1)
		go h.client(c)
	}
	return h
}

// succeeded counts the operations that succeeded so far.
func (h *history) succeeded() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := 0
	for _, o := range h.ops {
		if o.OK {
			ok++
		}
	}
	return ok
}

// waitOps waits until n operations have succeeded.
func (h *history) waitOps(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := h.succeeded()
		if ok >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d operations succeeded in 20s", ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *history) finish() []drill.Op {
	h.stop.Store(true)
	h.wg.Wait()
	return h.ops
}

type respConn struct {
	nc net.Conn
	br *bufio.Reader
}

func (h *history) dial(node int) (*respConn, error) {
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", h.sb.Nodes[node].Sessions, h.sb.TLS)
	if err != nil {
		return nil, err
	}
	c := &respConn{nc: nc, br: bufio.NewReader(nc)}
	if r, err := c.do("AUTH", drill.SessionsPassword); err != nil || r != "+OK" {
		nc.Close()
		return nil, fmt.Errorf("AUTH: %q %v", r, err)
	}
	return c, nil
}

// do sends a command and returns the reply's first line, or for a bulk
// string "$" followed by its value.
func (c *respConn) do(args ...string) (string, error) {
	c.nc.SetDeadline(time.Now().Add(3 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.nc.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "$") || line == "$-1" {
		return line, nil
	}
	n, _ := strconv.Atoi(line[1:])
	buf := make([]byte, n+2)
	if _, err := ioFull(c.br, buf); err != nil {
		return "", err
	}
	return "$" + string(buf[:n]), nil
}

func ioFull(br *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := br.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (h *history) client(id int) {
	defer h.wg.Done()
	rng := rand.New(rand.NewSource(int64(id)))
	node := id % len(h.sb.Nodes)
	var c *respConn
	for !h.stop.Load() {
		if c == nil {
			var err error
			if c, err = h.dial(node); err != nil {
				node = (node + 1) % len(h.sb.Nodes)
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		key := fmt.Sprintf("%s%d", h.keys, rng.Intn(3))
		op := drill.Op{Client: id, Key: key, Start: time.Since(h.start), Node: h.sb.Nodes[node].Name}
		var r string
		var err error
		if rng.Intn(2) == 0 {
			op.Kind = drill.OpRegW
			op.Value = fmt.Sprintf("v%d-%d", id, h.seq.Add(1))
			r, err = c.do("SET", key, op.Value)
			op.End = time.Since(h.start)
			switch {
			case err != nil || strings.HasPrefix(r, "-ERR the write was not confirmed"):
				op.Unknown = true // sent; it may or may not have committed
			case r == "+OK":
				op.OK = true
			}
		} else {
			op.Kind = drill.OpRegR
			r, err = c.do("GETEX", key)
			op.End = time.Since(h.start)
			switch {
			case err == nil && r == "$-1":
				op.OK = true
			case err == nil && strings.HasPrefix(r, "$"):
				op.OK, op.Found, op.Value = true, true, r[1:]
			}
		}
		op.Err = r
		h.mu.Lock()
		h.ops = append(h.ops, op)
		h.mu.Unlock()
		if err != nil || strings.HasPrefix(r, "-") {
			// READONLY, LOADING, a lost connection: try the next node.
			c.nc.Close()
			c = nil
			node = (node + 1) % len(h.sb.Nodes)
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c != nil {
		c.nc.Close()
	}
}

// checkLinearizable wants porcupine's Ok on the history, with some reads
// and writes that succeeded.
func checkLinearizable(t *testing.T, ops []drill.Op) {
	t.Helper()
	var w, r int
	for _, o := range ops {
		if o.OK && o.Kind == drill.OpRegW {
			w++
		}
		if o.OK && o.Kind == drill.OpRegR {
			r++
		}
	}
	res, n := drill.Linearizable(ops, 30*time.Second)
	t.Logf("porcupine: %s on %d operations (%d acknowledged writes, %d reads)", res, n, w, r)
	if w < 10 || r < 10 {
		t.Fatalf("too few operations succeeded to check anything: %d writes, %d reads", w, r)
	}
	if res != porcupine.Ok {
		for _, o := range ops {
			t.Logf("%8.3f %8.3f c%d %s %s %s %q ok=%v unknown=%v found=%v %q", o.Start.Seconds(), o.End.Seconds(), o.Client, o.Node, o.Kind, o.Key, o.Value, o.OK, o.Unknown, o.Found, o.Err)
		}
		t.Fatalf("the RESP history is not linearizable (%s)", res)
	}
}
