package config

import (
	"net"
	"os"
	"strings"
)

// Sessions configures the session store every agent serves over the Redis
// protocol (`sessions:`). Listen empty means none.
type Sessions struct {
	Listen        string // host:port; may use ${VAR}s of the node, so each node has its own
	MaxValueBytes int    // largest value (and key); default 1 MiB
	MaxKeys       int    // 0: no limit; past it writes of new keys get Redis's OOM error
	Password      string // AUTH password; required unless Listen is on loopback
	Line          int
}

// DefaultSessionsMaxValue is sessions.max_value_bytes when not given.
const DefaultSessionsMaxValue = 1 << 20

// MaxSessionsValue is the largest sessions.max_value_bytes: a value of it
// and the longest key fit one etcd request (1.5 MiB by default).
const MaxSessionsValue = 1 << 20

var sessionsKeys = []string{"listen", "max_value_bytes", "max_keys", "password", "password_file"}

func (b *builder) sessions(f fields) {
	n, ok := f["sessions"]
	if !ok {
		return
	}
	s := Sessions{MaxValueBytes: DefaultSessionsMaxValue, Line: n.Line}
	if l, ok := b.lines["sessions"]; ok {
		s.Line = l
	}
	sf := b.mapping(n, "sessions", sessionsKeys)
	if sf == nil {
		return
	}
	if v := b.required(sf, "sessions", "listen", "say where each agent takes Redis clients, e.g. listen: 127.0.0.1:6379, or ${SESSIONS} with SESSIONS set in each node's env"); v != nil {
		s.Listen = b.listenAddr(v, "sessions.listen")
	}
	if v, ok := sf["max_value_bytes"]; ok {
		if x, ok := b.size(v, "sessions.max_value_bytes", 1, 1<<40); ok {
			s.MaxValueBytes = int(x)
			if x > MaxSessionsValue {
				// Each command commits in one store request, and etcd
				// takes requests of at most 1.5 MiB by default (haven's
				// embedded etcd keeps that default): a value of 1 MiB, its
				// key (64 KiB at most) and the fence fit; more would be
				// refused by etcd at every retry.
				where := "etcd takes requests of at most 1.5 MiB by default, haven's embedded etcd too"
				if b.c.Store.Shared() {
					where = "haven commits a command in one store request of at most about 1.25 MiB on every store, to keep the stores interchangeable"
				}
				b.add(v.Line, "sessions.max_value_bytes", "%d bytes cannot fit one store request with its key (%s); set max_value_bytes: 1MiB or less", x, where)
			}
		}
	}
	if v, ok := sf["max_keys"]; ok {
		if x, ok := b.integer(v, "sessions.max_keys", 0, 1<<30); ok {
			s.MaxKeys = x
		}
	}
	pass, passOK := sf["password"]
	file, fileOK := sf["password_file"]
	switch {
	case passOK && fileOK:
		b.add(file.Line, "sessions.password_file", "both password and password_file are set; keep one")
	case passOK:
		s.Password, _ = b.str(pass, "sessions.password")
	case fileOK:
		if p, ok := b.str(file, "sessions.password_file"); ok {
			data, err := os.ReadFile(b.resolve(p))
			if err != nil {
				b.add(file.Line, "sessions.password_file", "cannot read %s: %v; write the password on one line into it, readable by the agent", p, err)
			} else {
				s.Password = strings.TrimSpace(string(data))
			}
		}
	}
	if (passOK || fileOK) && s.Password == "" && !(passOK && fileOK) {
		b.add(s.Line, "sessions.password", "is empty; give a password of at least 16 characters (e.g. openssl rand -hex 16)")
	}
	if s.Password != "" && len(s.Password) < 16 {
		b.add(s.Line, "sessions.password", "is %d characters; use at least 16 random characters (e.g. openssl rand -hex 16)", len(s.Password))
	}
	if s.Password == "" && !(passOK || fileOK) && s.Listen != "" && !loopbackListen(s.Listen) {
		b.add(s.Line, "sessions.password", "missing; sessions.listen %s is reachable from other hosts, so clients must authenticate: set password or password_file, or listen on 127.0.0.1", s.Listen)
	}
	b.c.Sessions = s
}

// loopbackListen reports whether a listen address takes connections from
// this host only. ${VAR}s count as reachable (checked once expanded would be
// better; the safe answer is to ask for a password).
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
