package drill

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// SessionCheck is what a scenario did to the session store (a sandbox with
// Sessions): sessions written on the active before the fault (SET with an
// hour's TTL, each acknowledged), and those missing or changed on the active
// once the cluster is whole again.
type SessionCheck struct {
	Written int      `json:"written"`
	Lost    []string `json:"lost,omitempty"`
	Err     string   `json:"error,omitempty"` // the check could not be made
}

// sessionCount is how many sessions each scenario writes before its fault.
const sessionCount = 100

type respClient struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func dialSessions(addr string, tc *tls.Config) (*respClient, error) {
	var nc net.Conn
	var err error
	if tc != nil {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, tc)
	} else {
		nc, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return nil, err
	}
	c := &respClient{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
	c.send("AUTH", SessionsPassword)
	if r, err := c.reply(); err != nil || r != "+OK" {
		nc.Close()
		return nil, fmt.Errorf("AUTH on %s: %q %v", addr, r, err)
	}
	return c, nil
}

func (c *respClient) send(args ...string) {
	fmt.Fprintf(c.bw, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.bw, "$%d\r\n%s\r\n", len(a), a)
	}
}

// reply flushes and reads one reply: a status or error line, or "$" and
// a bulk string's value ("$-1" for none).
func (c *respClient) reply() (string, error) {
	c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.bw.Flush(); err != nil {
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
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return "", fmt.Errorf("bad reply %q", line)
	}
	buf := make([]byte, n+2)
	for got := 0; got < len(buf); {
		m, err := c.br.Read(buf[got:])
		got += m
		if err != nil {
			return "", err
		}
	}
	return "$" + string(buf[:n]), nil
}

// writableSessions connects to the node whose session store takes writes.
func (s *Sandbox) writableSessions(ctx context.Context, d time.Duration) (*respClient, error) {
	deadline := time.Now().Add(d)
	var last string
	for {
		for _, n := range s.Nodes {
			c, err := dialSessions(n.Sessions, s.TLS)
			if err != nil {
				last = err.Error()
				continue
			}
			c.send("SET", "drill:probe", "x")
			r, err := c.reply()
			if err == nil && r == "+OK" {
				return c, nil
			}
			last = fmt.Sprintf("%s: %q %v", n.Name, r, err)
			c.nc.Close()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no node took writes within %s (last: %s)", d, last)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// writeSessions stores sessionCount sessions under prefix, pipelined.
func (s *Sandbox) writeSessions(ctx context.Context, prefix string) (*SessionCheck, []string) {
	chk := &SessionCheck{}
	c, err := s.writableSessions(ctx, 10*time.Second)
	if err != nil {
		chk.Err = err.Error()
		return chk, nil
	}
	defer c.nc.Close()
	keys := make([]string, sessionCount)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
		c.send("SET", keys[i], "session-"+keys[i], "EX", "3600")
	}
	var written []string
	for _, k := range keys {
		r, err := c.reply()
		if err != nil {
			chk.Err = err.Error()
			break
		}
		if r == "+OK" {
			written = append(written, k)
		}
	}
	chk.Written = len(written)
	return chk, written
}

// readSessions reads keys back from the node that takes writes now.
func (s *Sandbox) readSessions(ctx context.Context, chk *SessionCheck, keys []string) {
	c, err := s.writableSessions(ctx, 30*time.Second)
	if err != nil {
		chk.Err = err.Error()
		return
	}
	defer c.nc.Close()
	for _, k := range keys {
		c.send("GET", k)
	}
	for _, k := range keys {
		r, err := c.reply()
		if err != nil {
			chk.Err = err.Error()
			return
		}
		if r != "$session-"+k {
			chk.Lost = append(chk.Lost, k)
		}
	}
}
