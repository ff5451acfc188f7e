// Package sessions serves a replicated, fenced key-value store for web
// sessions over the Redis protocol, so that applications keep their sessions
// across a failover with the Redis client they already use.
//
// Every agent runs a Server. Its copy of the data lives in memory; the
// store behind it (ha.SessionData: etcd) holds the truth. In active-passive
// mode only the active writes: it loads the data after its promotion, runs
// each command on its copy under one lock, queues the changes, and a
// committer writes everything queued since the last commit in one store
// transaction fenced by its epoch (group commit). A client's reply is sent
// only once the store has committed every change queued before it, so an
// acknowledged write is on a quorum (RPO 0) and no reply reflects a change
// that might be lost. If a commit fails or the node stops being active,
// every reply still waiting gets an error and the copy is reloaded before it
// is used again. A standby keeps its copy from the store's watch, serves
// reads from it (possibly a little behind) and answers writes with Redis's
// READONLY error.
//
// Expiry: a key's expiry is an absolute time (Unix ms) stored with it. Every
// node hides a key from the moment its own clock passes that time; the active
// deletes expired keys from the store. So a key is never returned after its
// TTL plus the clock skew between nodes, and never vanishes before its TTL
// minus that skew.
package sessions

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/resp"
)

// Options configure a Server.
type Options struct {
	Node          string
	Password      string // empty: no AUTH needed (then bind to loopback)
	MaxValueBytes int    // largest value; 0: 1 MiB
	MaxKeys       int    // 0: no limit
	MaxArgs       int    // most arguments in one command; 0: 65536
	TLS           *tls.Config
	Clock         clock.Clock
	Log           *slog.Logger

	// Backend holds the data; nil keeps it in this process only (tests).
	Backend ha.SessionData
	// Role says whether this node serves as active, and at which epoch
	// (with a Backend; nil means never).
	Role func() (ha.Epoch, bool)
	// RoleChanged, when set, returns a channel that is closed when Role's
	// answer may have changed; the replication loop then looks at Role on
	// each close and every roleBackstop, instead of every rolePoll. Writes
	// ask Role themselves either way.
	RoleChanged func() <-chan struct{}
	// ActiveActive: every serving node writes, each write a
	// compare-and-swap on the keys it touched (aa.go).
	ActiveActive bool
	// Relayout, when set, is asked by the active at each sweep (every
	// 250 ms): true means the backend would now load into another layout
	// (the packed layout's rolling-upgrade gate opened after this node
	// loaded one key per session), so the active reloads at once instead
	// of at the next promotion. As after a failed commit: writes not yet
	// committed get an error (they may have been stored), every command
	// -LOADING until the load (and the migration it makes) is done.
	Relayout func() bool
}

// DefaultMaxValueBytes is max_value_bytes when the config says nothing.
const DefaultMaxValueBytes = 1 << 20

// Server answers Redis clients.
type Server struct {
	opts    Options
	cmds    map[string]*command
	db      *db
	started time.Time
	clients atomic.Int64
	nextID  atomic.Int64
	addr    atomic.Pointer[net.TCPAddr]
	metrics *Metrics
	stripes [aaStripes]sync.Mutex // active-active writers, by key (aa.go)
}

// New makes a server; Serve takes the connections and Run keeps the copy.
func New(o Options) *Server {
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Role == nil {
		o.Role = func() (ha.Epoch, bool) { return 0, false }
	}
	s := &Server{opts: o, cmds: commandTable(), db: newDB(o.Clock, o.Backend == nil), started: o.Clock.Now()}
	s.metrics = newMetrics(s)
	return s
}

// Stats reports the size of this node's copy.
func (s *Server) Stats() Stats { return s.db.stats() }

func (s *Server) port() int {
	if a := s.addr.Load(); a != nil {
		return a.Port
	}
	return 0
}

func (s *Server) checkPassword(user string, pass []byte) bool {
	if user != "default" {
		return false
	}
	if s.opts.Password == "" {
		return true // Redis's default user without a password takes any
	}
	return subtle.ConstantTimeCompare(pass, []byte(s.opts.Password)) == 1
}

// canWrite reports whether this copy may take writes now. Caller holds db.mu.
func (s *Server) canWrite() bool {
	if s.db.local {
		return true
	}
	if !s.db.writable {
		return false
	}
	e, ok := s.opts.Role()
	return ok && e == s.db.epoch
}

// Serve answers connections from ln until ctx ends, then closes them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.addr.Store(a)
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("sessions: accept: %w", err)
		}
		mu.Lock()
		conns[nc] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, nc)
			mu.Lock()
			delete(conns, nc)
			mu.Unlock()
			nc.Close()
		}()
	}
}

// conn is one client's state.
type conn struct {
	id     int64
	addr   string
	name   string
	proto  int
	authed bool
}

// MaxClients is the most connections served at once (Redis's maxclients
// default): a connection beyond it is told so and closed.
const MaxClients = 10000

// Bounds of one window of pipelined commands answered together.
const (
	windowCommands = 1024
	windowBytes    = 1 << 20
)

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	n := s.clients.Add(1)
	defer s.clients.Add(-1)
	if n > MaxClients {
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write([]byte("-ERR max number of clients reached\r\n"))
		return
	}
	c := &conn{id: s.nextID.Add(1), addr: nc.RemoteAddr().String(), proto: 2, authed: s.opts.Password == ""}
	// A key or value over max_value_bytes is dropped by the reader; keys
	// share the limit (Redis allows 512 MB for both).
	r := resp.NewReader(nc, s.opts.MaxValueBytes, s.opts.MaxArgs)
	r.Unauthenticated = !c.authed
	var out bytes.Buffer
	w := resp.NewWriter(&out)
	type started struct {
		cmd *command
		at  time.Time
	}
	var window []started
	for {
		var seq uint64
		var readErr error
		quit := false
		window = window[:0]
		for {
			args, err := r.ReadCommand()
			if err != nil {
				readErr = err
				break
			}
			at := time.Now()
			cmd, sq, q := s.exec(c, args, w)
			r.Unauthenticated = !c.authed
			window = append(window, started{cmd, at})
			seq = max(seq, sq)
			if q {
				quit = true
				break
			}
			if r.Buffered() == 0 || len(window) >= windowCommands || out.Len() >= windowBytes {
				break
			}
		}
		if len(window) > 0 {
			w.Flush()
			if seq > 0 {
				if err := s.db.wait(ctx, seq); err != nil {
					// None of this window's replies may stand: they
					// may reflect changes the store does not have.
					out.Reset()
					for range window {
						w.Error("ERR " + err.Error())
					}
					w.Flush()
				}
			}
			if _, err := nc.Write(out.Bytes()); err != nil {
				return
			}
			out.Reset()
			now := time.Now()
			for _, st := range window {
				if st.cmd != nil {
					s.metrics.observe(st.cmd.name, now.Sub(st.at))
				}
			}
		}
		if quit {
			return
		}
		if readErr != nil {
			var pe *resp.ProtocolError
			switch {
			case errors.As(readErr, &pe):
				w.Error("ERR " + pe.Msg)
				w.Flush()
				nc.Write(out.Bytes())
				return
			case errors.Is(readErr, resp.ErrTooBig):
				w.Error(fmt.Sprintf("ERR an argument is longer than max_value_bytes (%d); the command was not run: store less, or raise sessions.max_value_bytes", s.opts.MaxValueBytes))
			case errors.Is(readErr, resp.ErrTooManyArgs):
				w.Error("ERR too many arguments in one command; the command was not run: split it")
			default:
				return // EOF or a broken connection
			}
			w.Flush()
			if _, err := nc.Write(out.Bytes()); err != nil {
				return
			}
			out.Reset()
		}
	}
}

// exec runs one command, writing its reply to w. It returns the command
// (nil if unknown), the change the reply must wait for (0: none), and
// whether the client asked to quit.
func (s *Server) exec(c *conn, args [][]byte, w *resp.Writer) (*command, uint64, bool) {
	name := strings.ToLower(string(args[0]))
	cmd := s.cmds[name]
	switch {
	case cmd == nil:
		unknownCommand(w, args)
		return nil, 0, false
	case (cmd.arity > 0 && len(args) != cmd.arity) || len(args) < -cmd.arity:
		wrongArgs(w, name)
		return cmd, 0, false
	case !c.authed && cmd.flags&fNoAuth == 0:
		w.Error(errNoAuth)
		return cmd, 0, false
	case name == "quit":
		w.Simple("OK")
		return cmd, 0, true
	case cmd.flags&fWrite != 0 && cmd.keys(len(args)) > s.maxKeys():
		// Each command commits in one store transaction (etcd takes 128
		// operations per transaction): a larger one could never commit,
		// and retrying it would stall every client's writes.
		s.metrics.refused.WithLabelValues("too_many_keys").Inc()
		w.Error(fmt.Sprintf("ERR too many keys in one command (%d; at most %d): send them in several commands", cmd.keys(len(args)), s.maxKeys()))
		return cmd, 0, false
	case cmd.flags&fWrite != 0 && !s.commandFits(cmd, args, w):
		return cmd, 0, false
	}
	if s.opts.ActiveActive && s.opts.Backend != nil && cmd.flags&fWrite != 0 {
		s.execAA(c, cmd, args, w)
		return cmd, 0, false
	}
	d := s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loading && cmd.flags&fNoData == 0 {
		w.Error(errLoading)
		return cmd, 0, false
	}
	if d.writable && !d.local && cmd.flags&fNoData == 0 && !s.canWrite() {
		// This copy was the active's and the role is gone (or the process
		// was frozen past its lease and has not noticed yet): it may hold
		// changes the store refused, or miss the new active's. Not a word
		// from it until it is reloaded as a standby's copy.
		w.Error(errLoading)
		return cmd, 0, false
	}
	if cmd.flags&fWrite != 0 {
		if !s.canWrite() {
			w.Error(errReadOnly)
			return cmd, 0, false
		}
		d.begin()
	}
	cmd.run(s, c, args, w)
	if d.writable && !d.local {
		// Reads wait too: what they saw must be stored before they answer.
		return cmd, d.queued, false
	}
	return cmd, 0, false
}

// commandFits refuses, before it runs, a write command that names a key
// over MaxKeyBytes or whose changes could not fit one store request
// (cmdCost over commandBytes). Such a command could never commit: the
// store would refuse the request, the commit would be retried, and every
// client's writes would wait for it and then fail. A command that only
// deletes may name a longer key (one stored by an earlier version, which
// had no key limit), if it fits.
func (s *Server) commandFits(cmd *command, args [][]byte, w *resp.Writer) bool {
	if !deletesOnly[cmd.name] {
		for _, k := range keyArgs(cmd, args) {
			if len(k) > MaxKeyBytes {
				s.metrics.refused.WithLabelValues("key_too_long").Inc()
				w.Error(fmt.Sprintf("ERR key of %d bytes is over haven's key limit (%d bytes); the command was not run: use a shorter key", len(k), MaxKeyBytes))
				return false
			}
		}
	}
	if c := cmdCost(cmd, args, s.opts.ActiveActive); c > commandBytes {
		s.metrics.refused.WithLabelValues("too_large").Inc()
		w.Error(fmt.Sprintf("ERR value too large for the store's request limit (%d bytes): this command's keys and values come to %d; it was not run: send them in several commands, or store less", commandBytes, c))
		return false
	}
	return true
}

// deletesOnly: the write commands that create no key.
var deletesOnly = map[string]bool{"del": true, "unlink": true, "getdel": true}

// keyArgs returns the keys a command names.
func keyArgs(cmd *command, args [][]byte) [][]byte {
	if cmd.first <= 0 || cmd.step <= 0 {
		return nil
	}
	last := cmd.last
	if last < 0 {
		last += len(args)
	}
	var keys [][]byte
	for i := cmd.first; i <= last && i < len(args); i += cmd.step {
		keys = append(keys, args[i])
	}
	return keys
}

// cmdCost bounds the bytes a write command's changes take in one store
// request: its arguments plus keyOverhead a key, and in active-active
// (aa), whose commit compares every key, its keys once more. A command
// whose value is not among its arguments (RENAME, HSET's whole hash) has
// at most two keys and one value, within MaxKeyBytes and max_value_bytes
// (at most 1 MiB): it fits.
func cmdCost(cmd *command, args [][]byte, aa bool) int {
	n := 0
	for _, a := range args[1:] {
		n += len(a)
	}
	for _, k := range keyArgs(cmd, args) {
		n += keyOverhead
		if aa {
			n += len(k)
		}
	}
	return n
}

// keyOverhead: per key, what take counts beside the key and the value.
const keyOverhead = 16

// maxKeys is the most keys one write command may name: batchOps, one less
// in active-active, whose commit compares each key and the store's layout
// (etcd takes 128 compares per transaction too).
func (s *Server) maxKeys() int {
	if s.opts.ActiveActive {
		return batchOps - 1
	}
	return batchOps
}
