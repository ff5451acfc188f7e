package sample

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// A minimal WebSocket (RFC 6455) echo server and client, enough for the demo
// and the tests to exercise the proxy's upgrade path without a dependency.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Opcodes used here.
const (
	OpText  = 0x1
	OpClose = 0x8
	OpPing  = 0x9
	OpPong  = 0xA
)

// EchoWebSocket upgrades r and echoes every text or binary message until
// the client closes. node is sent in the X-Haven-Node header of the 101.
func EchoWebSocket(w http.ResponseWriter, r *http.Request, node string) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "expected a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Haven-Node: %s\r\n\r\n", wsAccept(key), node)
	if brw.Flush() != nil {
		return
	}
	for {
		op, msg, err := readFrame(brw.Reader)
		if err != nil {
			return
		}
		switch op {
		case OpClose:
			_ = writeFrame(conn, OpClose, msg, false)
			return
		case OpPing:
			err = writeFrame(conn, OpPong, msg, false)
		case OpPong:
		default:
			err = writeFrame(conn, op, msg, false)
		}
		if err != nil {
			return
		}
	}
}

func readFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, errors.New("websocket frame too large")
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(br, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return op, payload, nil
}

func writeFrame(w io.Writer, op byte, payload []byte, mask bool) error {
	b := []byte{0x80 | op}
	var m byte
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask {
		var k [4]byte
		_, _ = rand.Read(k[:])
		b = append(b, k[:]...)
		for i, c := range payload {
			b = append(b, c^k[i%4])
		}
	} else {
		b = append(b, payload...)
	}
	_, err := w.Write(b)
	return err
}

// WSConn is a client WebSocket connection.
type WSConn struct {
	conn net.Conn
	br   *bufio.Reader
	Node string // the X-Haven-Node header of the server's 101
}

// DialWebSocket opens a WebSocket to ws://addr/path.
func DialWebSocket(addr, path string, timeout time.Duration) (*WSConn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: status %d, accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = conn.SetDeadline(time.Time{})
	return &WSConn{conn: conn, br: br, Node: resp.Header.Get("X-Haven-Node")}, nil
}

// Send writes one text message.
func (c *WSConn) Send(msg string) error { return writeFrame(c.conn, OpText, []byte(msg), true) }

// Receive reads the next message; a close frame comes back as op OpClose
// with its status code.
func (c *WSConn) Receive(timeout time.Duration) (op byte, msg string, code int, err error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	op, p, err := readFrame(c.br)
	if err != nil {
		return 0, "", 0, err
	}
	if op == OpClose && len(p) >= 2 {
		return op, string(p[2:]), int(binary.BigEndian.Uint16(p)), nil
	}
	return op, string(p), 0, nil
}

// Close closes the connection.
func (c *WSConn) Close() error { return c.conn.Close() }
