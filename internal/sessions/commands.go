package sessions

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/haven-ha/haven/internal/resp"
)

// Replies shared with Redis, word for word (checked against redis-server
// in compare_test.go).
const (
	errSyntax      = "ERR syntax error"
	errNotInt      = "ERR value is not an integer or out of range"
	errOverflow    = "ERR increment or decrement would overflow"
	errNoAuth      = "NOAUTH Authentication required."
	errWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	errReadOnly    = "READONLY You can't write against a read only replica."
	errOOM         = "OOM command not allowed when used memory > 'maxmemory'."
	errDBRange     = "ERR DB index is out of range"
	errInvalidCurs = "ERR invalid cursor"
	errLoading     = "LOADING Redis is loading the dataset in memory"
	errWrongType   = "WRONGTYPE Operation against a key holding the wrong kind of value"
)

// Command flags.
const (
	fWrite  = 1 << iota // changes data: only on the writable copy
	fNoAuth             // allowed before AUTH
	fFast
	fNoData // touches no key: answered while the copy loads
)

type command struct {
	name  string
	arity int // as Redis: n exact, -n at least n
	flags int
	first int // first key argument (COMMAND INFO)
	last  int
	step  int
	run   func(s *Server, c *conn, args [][]byte, w *resp.Writer)
}

// keys is how many key arguments the command has with n arguments in all.
func (c *command) keys(n int) int {
	if c.first == 0 || c.step == 0 {
		return 0
	}
	last := c.last
	if last < 0 {
		last += n
	}
	if last < c.first {
		return 0
	}
	return (last-c.first)/c.step + 1
}

// commandTable returns the supported commands, by lower-case name.
func commandTable() map[string]*command {
	commands := map[string]*command{}
	for _, c := range []*command{
		{"ping", -1, fFast | fNoData, 0, 0, 0, cmdPing},
		{"echo", 2, fFast | fNoData, 0, 0, 0, cmdEcho},
		{"auth", -2, fNoAuth | fFast | fNoData, 0, 0, 0, cmdAuth},
		{"hello", -1, fNoAuth | fFast | fNoData, 0, 0, 0, cmdHello},
		{"select", 2, fFast | fNoData, 0, 0, 0, cmdSelect},
		{"quit", -1, fNoAuth | fFast | fNoData, 0, 0, 0, nil},
		{"client", -2, fNoData, 0, 0, 0, cmdClient},
		{"command", -1, fNoData, 0, 0, 0, cmdCommand},
		{"info", -1, fNoData, 0, 0, 0, cmdInfo},
		{"dbsize", 1, fFast, 0, 0, 0, cmdDBSize},
		{"get", 2, fFast, 1, 1, 1, cmdGet},
		{"set", -3, fWrite, 1, 1, 1, cmdSet},
		{"setex", 4, fWrite, 1, 1, 1, cmdSetEx},
		{"psetex", 4, fWrite, 1, 1, 1, cmdPSetEx},
		{"setnx", 3, fWrite | fFast, 1, 1, 1, cmdSetNX},
		{"getex", -2, fWrite | fFast, 1, 1, 1, cmdGetEx},
		{"getdel", 2, fWrite | fFast, 1, 1, 1, cmdGetDel},
		{"getset", 3, fWrite | fFast, 1, 1, 1, cmdGetSet},
		{"del", -2, fWrite, 1, -1, 1, cmdDel},
		{"unlink", -2, fWrite | fFast, 1, -1, 1, cmdDel},
		{"exists", -2, fFast, 1, -1, 1, cmdExists},
		{"type", 2, fFast, 1, 1, 1, cmdType},
		{"strlen", 2, fFast, 1, 1, 1, cmdStrlen},
		{"expire", -3, fWrite | fFast, 1, 1, 1, cmdExpire},
		{"pexpire", -3, fWrite | fFast, 1, 1, 1, cmdExpire},
		{"expireat", -3, fWrite | fFast, 1, 1, 1, cmdExpire},
		{"pexpireat", -3, fWrite | fFast, 1, 1, 1, cmdExpire},
		{"ttl", 2, fFast, 1, 1, 1, cmdTTL},
		{"pttl", 2, fFast, 1, 1, 1, cmdTTL},
		{"persist", 2, fWrite | fFast, 1, 1, 1, cmdPersist},
		{"mget", -2, fFast, 1, -1, 1, cmdMGet},
		{"mset", -3, fWrite, 1, -1, 2, cmdMSet},
		{"incr", 2, fWrite | fFast, 1, 1, 1, cmdIncr},
		{"decr", 2, fWrite | fFast, 1, 1, 1, cmdIncr},
		{"incrby", 3, fWrite | fFast, 1, 1, 1, cmdIncr},
		{"decrby", 3, fWrite | fFast, 1, 1, 1, cmdIncr},
		{"scan", -2, 0, 0, 0, 0, cmdScan},
		{"rename", 3, fWrite, 1, 2, 1, cmdRename},
		{"hset", -4, fWrite | fFast, 1, 1, 1, cmdHSet},
		{"hmset", -4, fWrite | fFast, 1, 1, 1, cmdHSet},
		{"hsetnx", 4, fWrite | fFast, 1, 1, 1, cmdHSetNX},
		{"hget", 3, fFast, 1, 1, 1, cmdHGet},
		{"hmget", -3, fFast, 1, 1, 1, cmdHMGet},
		{"hgetall", 2, 0, 1, 1, 1, cmdHGetAll},
		{"hkeys", 2, 0, 1, 1, 1, cmdHGetAll},
		{"hvals", 2, 0, 1, 1, 1, cmdHGetAll},
		{"hdel", -3, fWrite | fFast, 1, 1, 1, cmdHDel},
		{"hexists", 3, fFast, 1, 1, 1, cmdHExists},
		{"hlen", 2, fFast, 1, 1, 1, cmdHLen},
		{"hincrby", 4, fWrite | fFast, 1, 1, 1, cmdHIncrBy},
	} {
		commands[c.name] = c
	}
	return commands
}

func wrongArgs(w *resp.Writer, name string) {
	w.Error("ERR wrong number of arguments for '" + name + "' command")
}

// unknownCommand words the error as Redis 7 does, quoting the first
// arguments up to 128 bytes.
func unknownCommand(w *resp.Writer, args [][]byte) {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		n := min(len(a), 128-b.Len())
		fmt.Fprintf(&b, "'%s' ", a[:n])
	}
	name := args[0]
	if len(name) > 128 {
		name = name[:128]
	}
	w.Error(fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", name, b.String()))
}

// parseInt parses as Redis's string2ll: decimal, optional '-', no
// spaces, no '+', no leading zeros.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 || b[0] == '+' || (len(b) > 1 && b[0] == '0') || (len(b) > 1 && b[0] == '-' && b[1] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

func upper(b []byte) string { return strings.ToUpper(string(b)) }

func cmdPing(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	switch len(args) {
	case 1:
		w.Simple("PONG")
	case 2:
		w.Bulk(args[1])
	default:
		wrongArgs(w, "ping")
	}
}

func cmdEcho(s *Server, c *conn, args [][]byte, w *resp.Writer) { w.Bulk(args[1]) }

func cmdAuth(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	if len(args) > 3 {
		w.Error(errSyntax)
		return
	}
	user, pass := "default", args[len(args)-1]
	if len(args) == 3 {
		user = string(args[1])
	} else if s.opts.Password == "" {
		w.Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if !s.checkPassword(user, pass) {
		w.Error(errWrongPass)
		return
	}
	c.authed = true
	w.Simple("OK")
}

func cmdHello(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	ver := int64(0)
	i := 1
	if len(args) >= 2 {
		v, ok := parseInt(args[1])
		if !ok {
			w.Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			w.Error("NOPROTO unsupported protocol version")
			return
		}
		ver, i = v, 2
	}
	var user string
	var pass []byte
	auth := false
	name := []byte(nil)
	for ; i < len(args); i++ {
		more := len(args) - 1 - i
		switch opt := upper(args[i]); {
		case opt == "AUTH" && more >= 2:
			user, pass, auth = string(args[i+1]), args[i+2], true
			i += 2
		case opt == "SETNAME" && more >= 1:
			name = args[i+1]
			i++
		default:
			w.Error("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			return
		}
	}
	if auth {
		if !s.checkPassword(user, pass) {
			w.Error(errWrongPass)
			return
		}
		c.authed = true
	}
	if !c.authed {
		w.Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if name != nil {
		if !validName(name) {
			w.Error(errClientName)
			return
		}
		c.name = string(name)
	}
	if ver != 0 {
		c.proto = int(ver)
		w.Proto = c.proto
	}
	w.Map(7)
	w.BulkString("server")
	w.BulkString("redis")
	w.BulkString("version")
	w.BulkString(redisVersion)
	w.BulkString("proto")
	w.Int(int64(c.proto))
	w.BulkString("id")
	w.Int(c.id)
	w.BulkString("mode")
	w.BulkString("standalone")
	w.BulkString("role")
	if s.db.writable {
		w.BulkString("master")
	} else {
		w.BulkString("replica")
	}
	w.BulkString("modules")
	w.Array(0)
}

// redisVersion is what INFO and HELLO report: the Redis release whose
// commands and replies this server follows.
const redisVersion = "7.0.15"

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

func validName(b []byte) bool {
	for _, c := range b {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

func cmdSelect(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	n, ok := parseInt(args[1])
	if !ok || n < math.MinInt32 || n > math.MaxInt32 {
		w.Error(errNotInt)
		return
	}
	if n != 0 {
		w.Error(errDBRange)
		return
	}
	w.Simple("OK")
}

func cmdClient(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	sub := strings.ToLower(string(args[1]))
	arity := map[string]int{"setname": 3, "getname": 2, "id": 2, "setinfo": 4, "info": 2}
	a, ok := arity[sub]
	if !ok {
		w.Error(fmt.Sprintf("ERR unknown subcommand '%.128s'. Try CLIENT HELP.", args[1]))
		return
	}
	if len(args) != a {
		wrongArgs(w, "client|"+sub)
		return
	}
	switch sub {
	case "setname":
		if !validName(args[2]) {
			w.Error(errClientName)
			return
		}
		c.name = string(args[2])
		w.Simple("OK")
	case "getname":
		if c.name == "" {
			w.Null()
		} else {
			w.BulkString(c.name)
		}
	case "id":
		w.Int(c.id)
	case "setinfo":
		w.Simple("OK")
	case "info":
		w.Verbatim(fmt.Sprintf("id=%d addr=%s name=%s db=0 resp=%d\n", c.id, c.addr, c.name, c.proto))
	}
}

func cmdCommand(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	commands := s.cmds
	if len(args) == 1 {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		w.Array(len(names))
		for _, n := range names {
			commandInfo(w, commands[n])
		}
		return
	}
	switch sub := strings.ToLower(string(args[1])); sub {
	case "count":
		if len(args) != 2 {
			wrongArgs(w, "command|count")
			return
		}
		w.Int(int64(len(commands)))
	case "info":
		w.Array(len(args) - 2)
		for _, a := range args[2:] {
			if cmd, ok := commands[strings.ToLower(string(a))]; ok {
				commandInfo(w, cmd)
			} else {
				w.NullArray()
			}
		}
	case "docs":
		w.Map(0)
	default:
		w.Error(fmt.Sprintf("ERR unknown subcommand '%.128s'. Try COMMAND HELP.", args[1]))
	}
}

func commandInfo(w *resp.Writer, c *command) {
	w.Array(10)
	w.BulkString(c.name)
	w.Int(int64(c.arity))
	var flags []string
	if c.flags&fWrite != 0 {
		flags = append(flags, "write")
	} else {
		flags = append(flags, "readonly")
	}
	if c.flags&fFast != 0 {
		flags = append(flags, "fast")
	}
	if c.flags&fNoAuth != 0 {
		flags = append(flags, "no_auth")
	}
	w.Set(len(flags))
	for _, f := range flags {
		w.Simple(f)
	}
	w.Int(int64(c.first))
	w.Int(int64(c.last))
	w.Int(int64(c.step))
	w.Set(0)
	w.Array(0)
	w.Array(0)
	w.Array(0)
}

func cmdInfo(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	st := s.db.statsLocked()
	role := "slave"
	if st.Writable {
		role = "master"
	}
	sections := []struct{ name, body string }{
		{"server", fmt.Sprintf("redis_version:%s\r\nredis_mode:standalone\r\nhaven_node:%s\r\ntcp_port:%d\r\nuptime_in_seconds:%d\r\n", redisVersion, s.opts.Node, s.port(), int64(s.opts.Clock.Now().Sub(s.started).Seconds()))},
		{"clients", fmt.Sprintf("connected_clients:%d\r\n", s.clients.Load())},
		{"memory", fmt.Sprintf("used_memory:%d\r\nused_memory_human:%s\r\nmaxmemory:0\r\nhaven_max_keys:%d\r\nhaven_max_value_bytes:%d\r\nhaven_max_key_bytes:%d\r\nhaven_max_command_bytes:%d\r\n", st.Bytes, human(st.Bytes), s.opts.MaxKeys, s.opts.MaxValueBytes, MaxKeyBytes, commandBytes)},
		{"replication", fmt.Sprintf("role:%s\r\nhaven_writable:%d\r\n", role, b2i(st.Writable))},
		{"keyspace", fmt.Sprintf("db0:keys=%d,expires=0,avg_ttl=0\r\n", st.Keys)},
	}
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	for _, sec := range sections {
		if !all && !want[sec.name] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + strings.ToUpper(sec.name[:1]) + sec.name[1:] + "\r\n" + sec.body)
	}
	w.Verbatim(b.String())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func cmdDBSize(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	w.Int(int64(len(s.db.m)))
}

func cmdGet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	e, ok := s.db.lookup(string(args[1]))
	switch {
	case !ok:
		w.Null()
	case e.hash:
		w.Error(errWrongType)
	default:
		w.Bulk(e.val)
	}
}

func cmdType(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	e, ok := s.db.lookup(string(args[1]))
	switch {
	case !ok:
		w.Simple("none")
	case e.hash:
		w.Simple("hash")
	default:
		w.Simple("string")
	}
}

func cmdStrlen(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	e, _ := s.db.lookup(string(args[1]))
	if e.hash {
		w.Error(errWrongType)
		return
	}
	w.Int(int64(len(e.val)))
}

// Option flags of SET and GETEX.
const (
	optNX = 1 << iota
	optXX
	optGet
	optKeepTTL
	optPersist
	optEX
	optPX
	optEXAT
	optPXAT
	optTimes = optEX | optPX | optEXAT | optPXAT
)

// parseSetOptions follows Redis's parseExtendedStringArgumentsOrReply:
// options in any order, conflicting ones a syntax error, a time option
// needs the next argument. forSet picks SET's options, else GETEX's.
func parseSetOptions(args [][]byte, forSet bool) (flags int, expire []byte, ok bool) {
	for j := 0; j < len(args); j++ {
		opt := upper(args[j])
		next := j+1 < len(args)
		time := func(f int) bool {
			if flags&(optKeepTTL|optPersist|(optTimes&^f)) != 0 || !next {
				return false
			}
			flags |= f
			expire = args[j+1]
			j++
			return true
		}
		switch {
		case opt == "NX" && forSet && flags&optXX == 0:
			flags |= optNX
		case opt == "XX" && forSet && flags&optNX == 0:
			flags |= optXX
		case opt == "GET" && forSet:
			flags |= optGet
		case opt == "KEEPTTL" && forSet && flags&(optPersist|optTimes) == 0:
			flags |= optKeepTTL
		case opt == "PERSIST" && !forSet && flags&(optKeepTTL|optTimes) == 0:
			flags |= optPersist
		case opt == "EX" && time(optEX):
		case opt == "PX" && time(optPX):
		case opt == "EXAT" && time(optEXAT):
		case opt == "PXAT" && time(optPXAT):
		default:
			return 0, nil, false
		}
	}
	return flags, expire, true
}

// expireAt turns an EX/PX/EXAT/PXAT argument into Unix ms, as Redis's
// getExpireMillisecondsOrReply; name is the command for the error.
func (s *Server) expireAt(w *resp.Writer, flags int, arg []byte, name string) (int64, bool) {
	ms, ok := parseInt(arg)
	if !ok {
		w.Error(errNotInt)
		return 0, false
	}
	seconds := flags&(optEX|optEXAT) != 0
	if ms <= 0 || (seconds && ms > math.MaxInt64/1000) {
		w.Error("ERR invalid expire time in '" + name + "' command")
		return 0, false
	}
	if seconds {
		ms *= 1000
	}
	if flags&(optEX|optPX) != 0 {
		if ms > math.MaxInt64-s.db.nowMs() {
			w.Error("ERR invalid expire time in '" + name + "' command")
			return 0, false
		}
		ms += s.db.nowMs()
	}
	return ms, true
}

func cmdSet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	flags, exp, ok := parseSetOptions(args[3:], true)
	if !ok {
		w.Error(errSyntax)
		return
	}
	s.set(w, args[1], args[2], flags, exp, "set")
}

func cmdSetEx(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	s.set(w, args[1], args[3], optEX, args[2], "setex")
}

func cmdPSetEx(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	s.set(w, args[1], args[3], optPX, args[2], "psetex")
}

func cmdSetNX(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	if _, ok := s.db.lookup(key); ok {
		w.Int(0)
		return
	}
	if !s.room(w, 1, key) || !s.fits(w, args[2]) {
		return
	}
	s.db.set(key, args[2], 0)
	w.Int(1)
}

// set is SET's common path (setGenericCommand).
func (s *Server) set(w *resp.Writer, k, val []byte, flags int, expArg []byte, name string) {
	var exp int64
	if flags&optTimes != 0 {
		var ok bool
		if exp, ok = s.expireAt(w, flags, expArg, name); !ok {
			return
		}
	}
	key := string(k)
	old, found := s.db.lookup(key)
	if flags&optGet != 0 && found && old.hash {
		w.Error(errWrongType)
		return
	}
	if (flags&optNX != 0 && found) || (flags&optXX != 0 && !found) {
		if flags&optGet != 0 && found {
			w.Bulk(old.val)
		} else {
			w.Null()
		}
		return
	}
	if !s.room(w, 1, key) || !s.fits(w, val) {
		return
	}
	if flags&optKeepTTL != 0 && found {
		exp = old.exp
	}
	if exp != 0 && exp <= s.db.nowMs() {
		s.db.del(key) // an EXAT/PXAT in the past: Redis deletes the key
	} else {
		s.db.set(key, val, exp)
	}
	switch {
	case flags&optGet == 0:
		w.Simple("OK")
	case found:
		w.Bulk(old.val)
	default:
		w.Null()
	}
}

// room answers OOM when adding n new keys (of keys) would pass max_keys.
func (s *Server) room(w *resp.Writer, n int, keys ...string) bool {
	if s.opts.MaxKeys <= 0 {
		return true
	}
	for _, k := range keys {
		if _, ok := s.db.m[k]; ok {
			n--
		}
	}
	if n > 0 && len(s.db.m)+n > s.opts.MaxKeys {
		w.Error(errOOM)
		return false
	}
	return true
}

// fits refuses a value over max_value_bytes.
func (s *Server) fits(w *resp.Writer, val []byte) bool {
	if len(val) > s.opts.MaxValueBytes {
		w.Error(fmt.Sprintf("ERR value of %d bytes is over max_value_bytes (%d); store less, or raise sessions.max_value_bytes", len(val), s.opts.MaxValueBytes))
		return false
	}
	return true
}

func cmdGetEx(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	flags, expArg, ok := parseSetOptions(args[2:], false)
	if !ok {
		w.Error(errSyntax)
		return
	}
	var exp int64
	if flags&optTimes != 0 {
		if exp, ok = s.expireAt(w, flags, expArg, "getex"); !ok {
			return
		}
	}
	key := string(args[1])
	e, found := s.db.lookup(key)
	if !found {
		w.Null()
		return
	}
	if e.hash {
		w.Error(errWrongType)
		return
	}
	switch {
	case flags&optTimes != 0 && exp <= s.db.nowMs():
		s.db.del(key)
	case flags&optTimes != 0:
		s.db.set(key, e.val, exp)
	case flags&optPersist != 0 && e.exp != 0:
		s.db.set(key, e.val, 0)
	}
	w.Bulk(e.val)
}

func cmdGetDel(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	e, found := s.db.lookup(key)
	if !found {
		w.Null()
		return
	}
	if e.hash {
		w.Error(errWrongType)
		return
	}
	s.db.del(key)
	w.Bulk(e.val)
}

func cmdGetSet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	e, found := s.db.lookup(key)
	if found && e.hash {
		w.Error(errWrongType)
		return
	}
	if !s.room(w, 1, key) || !s.fits(w, args[2]) {
		return
	}
	s.db.set(key, args[2], 0)
	if found {
		w.Bulk(e.val)
	} else {
		w.Null()
	}
}

func cmdDel(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	n := 0
	for _, a := range args[1:] {
		key := string(a)
		if _, ok := s.db.lookup(key); ok {
			n++
		}
		s.db.del(key) // expired ones too: they are gone either way
	}
	w.Int(int64(n))
}

func cmdExists(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	n := 0
	for _, a := range args[1:] {
		if _, ok := s.db.lookup(string(a)); ok {
			n++
		}
	}
	w.Int(int64(n))
}

// cmdExpire is EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT with NX/XX/GT/LT
// (expireGenericCommand).
func cmdExpire(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	name := strings.ToLower(string(args[0]))
	const (
		nx = 1 << iota
		xx
		gt
		lt
	)
	flag := 0
	for _, a := range args[3:] {
		switch upper(a) {
		case "NX":
			flag |= nx
		case "XX":
			flag |= xx
		case "GT":
			flag |= gt
		case "LT":
			flag |= lt
		default:
			w.Error("ERR Unsupported option " + string(a))
			return
		}
	}
	if flag&nx != 0 && flag&(xx|gt|lt) != 0 {
		w.Error("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	if flag&gt != 0 && flag&lt != 0 {
		w.Error("ERR GT and LT options at the same time are not compatible")
		return
	}
	when, ok := parseInt(args[2])
	if !ok {
		w.Error(errNotInt)
		return
	}
	if name == "expire" || name == "expireat" {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			w.Error("ERR invalid expire time in '" + name + "' command")
			return
		}
		when *= 1000
	}
	if name == "expire" || name == "pexpire" {
		base := s.db.nowMs()
		if when > math.MaxInt64-base {
			w.Error("ERR invalid expire time in '" + name + "' command")
			return
		}
		when += base
	}
	key := string(args[1])
	e, found := s.db.lookup(key)
	if !found {
		w.Int(0)
		return
	}
	cur := e.exp
	switch {
	case flag&nx != 0 && cur != 0,
		flag&xx != 0 && cur == 0,
		flag&gt != 0 && (cur == 0 || when <= cur),
		flag&lt != 0 && cur != 0 && when >= cur:
		w.Int(0)
		return
	}
	if when <= s.db.nowMs() {
		s.db.del(key)
	} else {
		s.db.setKind(key, e.val, when, e.hash)
	}
	w.Int(1)
}

func cmdTTL(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	e, found := s.db.lookup(string(args[1]))
	switch {
	case !found:
		w.Int(-2)
	case e.exp == 0:
		w.Int(-1)
	default:
		ttl := max(e.exp-s.db.nowMs(), 0)
		if strings.EqualFold(string(args[0]), "ttl") {
			ttl = (ttl + 500) / 1000
		}
		w.Int(ttl)
	}
}

func cmdPersist(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	e, found := s.db.lookup(key)
	if !found || e.exp == 0 {
		w.Int(0)
		return
	}
	s.db.setKind(key, e.val, 0, e.hash)
	w.Int(1)
}

func cmdMGet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	w.Array(len(args) - 1)
	for _, a := range args[1:] {
		if e, ok := s.db.lookup(string(a)); ok && !e.hash {
			w.Bulk(e.val)
		} else {
			w.Null()
		}
	}
}

func cmdMSet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	if len(args)%2 == 0 {
		wrongArgs(w, "mset")
		return
	}
	keys := map[string]bool{}
	for i := 1; i < len(args); i += 2 {
		keys[string(args[i])] = true
		if !s.fits(w, args[i+1]) {
			return
		}
	}
	list := make([]string, 0, len(keys))
	for k := range keys {
		list = append(list, k)
	}
	if !s.room(w, len(list), list...) {
		return
	}
	for i := 1; i < len(args); i += 2 {
		s.db.set(string(args[i]), args[i+1], 0)
	}
	w.Simple("OK")
}

func cmdIncr(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	var by int64 = 1
	switch name := strings.ToLower(string(args[0])); name {
	case "decr":
		by = -1
	case "incrby", "decrby":
		n, ok := parseInt(args[2])
		if !ok {
			w.Error(errNotInt)
			return
		}
		if name == "decrby" {
			if n == math.MinInt64 {
				w.Error("ERR decrement would overflow")
				return
			}
			n = -n
		}
		by = n
	}
	key := string(args[1])
	e, found := s.db.lookup(key)
	var cur int64
	if found && e.hash {
		w.Error(errWrongType)
		return
	}
	if found {
		var ok bool
		if cur, ok = parseInt(e.val); !ok {
			w.Error(errNotInt)
			return
		}
	}
	if (by < 0 && cur < 0 && by < math.MinInt64-cur) || (by > 0 && cur > 0 && by > math.MaxInt64-cur) {
		w.Error(errOverflow)
		return
	}
	if !s.room(w, 1, key) {
		return
	}
	cur += by
	s.db.set(key, strconv.AppendInt(nil, cur, 10), e.exp) // INCR keeps the TTL
	w.Int(cur)
}

// cmdScan walks the keys in the order of a 32-bit hash; the cursor is the
// next hash to visit plus one. Every key present for the whole walk is
// returned at least once, as Redis promises; one call costs O(keys).
func cmdScan(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		w.Error(errInvalidCurs)
		return
	}
	count := int64(10)
	var pattern []byte
	typ := ""
	for j := 2; j < len(args); j++ {
		more := j+1 < len(args)
		switch opt := upper(args[j]); {
		case opt == "COUNT" && more:
			n, ok := parseInt(args[j+1])
			if !ok {
				w.Error(errNotInt)
				return
			}
			if n < 1 {
				w.Error(errSyntax)
				return
			}
			count = n
			j++
		case opt == "MATCH" && more:
			pattern = args[j+1]
			if bytes.Equal(pattern, []byte("*")) {
				pattern = nil
			}
			j++
		case opt == "TYPE" && more:
			typ = strings.ToLower(string(args[j+1]))
			j++
		default:
			w.Error(errSyntax)
			return
		}
	}
	type hk struct {
		h uint64
		k string
	}
	var cand []hk
	if cursor <= 1<<32 {
		start := uint64(0)
		if cursor > 0 {
			start = cursor - 1
		}
		for k := range s.db.m {
			if h := keyHash(k); h >= start {
				cand = append(cand, hk{h, k})
			}
		}
	}
	sort.Slice(cand, func(i, j int) bool {
		if cand[i].h != cand[j].h {
			return cand[i].h < cand[j].h
		}
		return cand[i].k < cand[j].k
	})
	next := uint64(0)
	n := int(min(count, int64(len(cand))))
	// Never stop inside a run of equal hashes: the cursor could not
	// resume in the middle of it.
	for n < len(cand) && n > 0 && cand[n].h == cand[n-1].h {
		n++
	}
	if n < len(cand) {
		next = cand[n].h + 1
	}
	var keys []string
	for _, c := range cand[:n] {
		e, ok := s.db.lookup(c.k)
		if !ok {
			continue
		}
		if kind := map[bool]string{false: "string", true: "hash"}[e.hash]; typ != "" && typ != kind {
			continue
		}
		if pattern != nil && !Match(pattern, []byte(c.k)) {
			continue
		}
		keys = append(keys, c.k)
	}
	w.Array(2)
	w.BulkString(strconv.FormatUint(next, 10))
	w.Array(len(keys))
	for _, k := range keys {
		w.BulkString(k)
	}
}

func keyHash(k string) uint64 {
	h := fnv.New32a()
	h.Write([]byte(k))
	return uint64(h.Sum32())
}
