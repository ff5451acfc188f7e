package sessions

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis runs Debian's redis-server on a free loopback port, without
// persistence, and returns its address.
func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, "redis-server", all...)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start redis-server (install Debian's redis-server): %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSameRepliesAsRedis sends the same commands to redis-server and to
// this server and wants the same bytes back.
func TestSameRepliesAsRedis(t *testing.T) {
	script := `
PING
PING hello
PING a b
ECHO x
SELECT 0
SELECT 16
SELECT x
GET missing
SET k v
GET k
SET k v2 NX
SET k v3 XX
GET k
SET k2 v NX XX
SET k2 v XX
SET k2 v NX GET
SET k2 w GET
SET k v EX 0
SET k v EX -1
SET k v EX abc
SET k v EX
SET k v PX 100 EX 100
SET k v KEEPTTL EX 10
SET k v BOGUS
SET t v EX 100
TTL t
SET t w KEEPTTL
TTL t
SET t w
TTL t
TTL missing
PTTL missing
SETEX s 100 v
TTL s
SETEX s 0 v
SETEX s x v
PSETEX p 100000 v
TTL p
PSETEX p -5 v
SETNX k x
SETNX nx x
GETSET nx y
GETSET gs1 y
GETEX nx
GETEX nx EX 100
TTL nx
GETEX nx PERSIST
TTL nx
GETEX nx KEEPTTL
GETEX nx EX 0
GETEX missing EX 10
GETDEL nx
GETDEL nx
EXISTS k k missing nx
DEL k missing k2
UNLINK s p
EXISTS k
SET e v
EXPIRE e 100
TTL e
EXPIRE e 100 NX
EXPIRE e 200 XX
TTL e
EXPIRE e 50 GT
EXPIRE e 50 LT
TTL e
EXPIRE e 10 NX XX
EXPIRE e 10 GT LT
EXPIRE e 10 FOO
EXPIRE e abc
EXPIRE missing 10
PEXPIRE e 100000
TTL e
PERSIST e
PERSIST e
TTL e
EXPIRE e -1
EXISTS e
EXPIREAT e 1
MSET a 1 b 2 c 3
MSET a 1 b
MGET a b missing c
INCR a
INCRBY a 10
INCRBY a -20
DECR a
DECRBY a 5
INCR b x
INCRBY b x
SET big 9223372036854775807
INCR big
SET f 1.5
INCR f
SET sp " 1"
INCR sp
INCR newcounter
STRLEN a
STRLEN missing
TYPE a
TYPE missing
DBSIZE
SCAN x
SCAN 0 COUNT 0
SCAN 0 COUNT x
SCAN 0 BOGUS
SCAN 0 MATCH
GET
SET k
MGET
NOSUCH a b
nosuch
CLIENT SETNAME my-app
CLIENT GETNAME
CLIENT SETNAME "bad name"
CLIENT NOSUCH
CLIENT SETNAME
AUTH x
AUTH a b c d
HELLO 4
HELLO x
HELLO 2 BOGUS
COMMAND NOSUCH
HSET h f1 v1 f2 v2
HSET h f1 w1 f3 v3
HSET h f
HGET h f1
HGET h nope
HGET missing f
HMGET h f1 nope f3
HGETALL h
HGETALL missing
HKEYS h
HVALS h
HLEN h
HLEN missing
HEXISTS h f2
HEXISTS h nope
HSETNX h f1 x
HSETNX h f9 x
HMSET h2 a 1 b 2
HINCRBY h2 a 5
HINCRBY h2 new -3
HINCRBY h f1 1
HINCRBY h2 a x
HDEL h f2 nope f2
HGETALL h
TYPE h
TYPE a
GET h
INCR h
STRLEN h
GETDEL h
HGET a f
HSET a f v
MGET h a
EXPIRE h 100
TTL h
HSET h f4 v4
TTL h
PERSIST h
TTL h
HDEL h2 a b new
EXISTS h2
RENAME h h3
HGETALL h3
RENAME h h4
RENAME h3 h3
SET h5 v GET
SET h3 v GET
`
	compareScript(t, script, Options{})
}

// TestSameAuthAsRedis: with a password, the same refusals as Redis.
func TestSameAuthAsRedis(t *testing.T) {
	script := `
GET k
NOSUCH x
GET
HELLO 3
HELLO 3 AUTH default wrong
AUTH wrong
AUTH someone secret
CLIENT SETNAME x
PING
AUTH secret
GET k
HELLO 2 AUTH default wrong
AUTH default secret
SET k v
GET k
`
	compareScript(t, script, Options{Password: "secret"}, "--requirepass", "secret")
}

func compareScript(t *testing.T, script string, o Options, redisArgs ...string) {
	t.Helper()
	redis := dial(t, startRedis(t, redisArgs...))
	_, addr := startLocal(t, o)
	ours := dial(t, addr)
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		args, ok := splitLine(line)
		if !ok {
			t.Fatalf("bad script line %q", line)
		}
		want := redis.do(args...)
		got := ours.do(args...)
		if got != want {
			t.Errorf("%s\n  redis: %q\n  haven: %q", line, want, got)
		}
	}
}

// TestSameUnauthenticatedLimitsAsRedis: before AUTH, Redis takes at most
// 10 arguments of at most 16 KiB, and so does haven.
func TestSameUnauthenticatedLimitsAsRedis(t *testing.T) {
	redisAddr := startRedis(t, "--requirepass", "secret")
	_, addr := startLocal(t, Options{Password: "secret"})
	big := strings.Repeat("x", 16385)
	for _, frame := range []string{
		string(encode("SET", "k", big)),
		string(encode("DEL", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10")),
	} {
		var got [2]string
		for i, a := range []string{redisAddr, addr} {
			c := dial(t, a)
			if _, err := c.nc.Write([]byte(frame)); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(c.br)
			got[i] = string(b)
		}
		if got[0] != got[1] {
			t.Errorf("%.40q\n  redis: %q\n  haven: %q", frame, got[0], got[1])
		}
	}
	// After AUTH the limits are max_value_bytes and max args.
	c := dial(t, addr)
	if r := c.do("AUTH", "secret"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	if r := c.do("SET", "k", big); r != "+OK\r\n" {
		t.Fatalf("SET of 16385 bytes after AUTH: %q", r)
	}
}

// TestSameProtocolErrorsAsRedis: a malformed frame gets Redis's error and
// the connection is closed, as Redis does; the reply of a command that
// came before it in the same packet is sent first.
func TestSameProtocolErrorsAsRedis(t *testing.T) {
	redisAddr := startRedis(t)
	_, addr := startLocal(t, Options{})
	for _, frame := range []string{
		"*1\r\n$x\r\n",
		"*x\r\n",
		"*1\r\n:1\r\n",
		"*1\r\n$-5\r\n",
		"PING\r\nSET \"a b\r\n",
		"PING\r\nSET \"a\"b c\r\n",
	} {
		var got [2]string
		for i, a := range []string{redisAddr, addr} {
			c := dial(t, a)
			if _, err := c.nc.Write([]byte(frame)); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(c.br) // until the server closes
			got[i] = string(b)
		}
		if got[0] != got[1] {
			t.Errorf("%q\n  redis: %q\n  haven: %q", frame, got[0], got[1])
		}
	}
}

func splitLine(line string) ([]string, bool) {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(line))
	sc.Split(bufio.ScanRunes)
	var cur strings.Builder
	inQ, have := false, false
	for sc.Scan() {
		r := sc.Text()
		switch {
		case r == `"`:
			inQ, have = !inQ, true
		case r == " " && !inQ:
			if have {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteString(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out, !inQ
}
