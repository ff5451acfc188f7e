package sessions

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"

	"github.com/haven-ha/haven/internal/resp"
)

// Hashes (what Spring Session keeps a session in): a key's fields and
// values in insertion order, as Redis's small hashes are. The whole hash is
// one value in the store, encoded as (length, bytes) pairs; every change
// writes it whole, which suits sessions (a few small fields).

type field struct{ name, val []byte }

func encodeHash(fs []field) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.AppendUvarint(b, uint64(len(f.name)))
		b = append(b, f.name...)
		b = binary.AppendUvarint(b, uint64(len(f.val)))
		b = append(b, f.val...)
	}
	return b
}

func decodeHash(b []byte) []field {
	var fs []field
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		v := b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	for len(b) > 0 {
		name, ok1 := next()
		val, ok2 := next()
		if !ok1 || !ok2 {
			break // a damaged record: keep what could be read
		}
		fs = append(fs, field{name, val})
	}
	return fs
}

func find(fs []field, name []byte) int {
	for i, f := range fs {
		if string(f.name) == string(name) {
			return i
		}
	}
	return -1
}

// hashOf returns key's fields: ok false (and WRONGTYPE written) when it
// holds a string; found false when it does not exist.
func (s *Server) hashOf(w *resp.Writer, key string) (fs []field, e entry, found, ok bool) {
	e, found = s.db.lookup(key)
	if !found {
		return nil, e, false, true
	}
	if !e.hash {
		w.Error(errWrongType)
		return nil, e, true, false
	}
	return decodeHash(e.val), e, true, true
}

// putHash stores fs at key (keeping its expiry), or deletes the key when
// fs is empty; false (and the error written) when the encoded hash is over
// max_value_bytes or the store is full.
func (s *Server) putHash(w *resp.Writer, key string, fs []field, e entry, found bool) bool {
	if len(fs) == 0 {
		s.db.del(key)
		return true
	}
	enc := encodeHash(fs)
	if !found && !s.room(w, 1, key) || !s.fits(w, enc) {
		return false
	}
	s.db.setKind(key, enc, e.exp, true)
	return true
}

func cmdHSet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	name := strings.ToLower(string(args[0]))
	if len(args)%2 != 0 {
		wrongArgs(w, name)
		return
	}
	key := string(args[1])
	fs, e, found, ok := s.hashOf(w, key)
	if !ok {
		return
	}
	fs = append([]field(nil), fs...) // never change a stored hash in place
	added := 0
	for i := 2; i < len(args); i += 2 {
		if j := find(fs, args[i]); j >= 0 {
			fs[j].val = args[i+1]
		} else {
			fs = append(fs, field{args[i], args[i+1]})
			added++
		}
	}
	if !s.putHash(w, key, fs, e, found) {
		return
	}
	if name == "hmset" {
		w.Simple("OK")
	} else {
		w.Int(int64(added))
	}
}

func cmdHSetNX(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	fs, e, found, ok := s.hashOf(w, key)
	if !ok {
		return
	}
	if find(fs, args[2]) >= 0 {
		w.Int(0)
		return
	}
	fs = append(append([]field(nil), fs...), field{args[2], args[3]})
	if s.putHash(w, key, fs, e, found) {
		w.Int(1)
	}
}

func cmdHGet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	fs, _, _, ok := s.hashOf(w, string(args[1]))
	if !ok {
		return
	}
	if j := find(fs, args[2]); j >= 0 {
		w.Bulk(fs[j].val)
	} else {
		w.Null()
	}
}

func cmdHMGet(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	fs, _, _, ok := s.hashOf(w, string(args[1]))
	if !ok {
		return
	}
	w.Array(len(args) - 2)
	for _, a := range args[2:] {
		if j := find(fs, a); j >= 0 {
			w.Bulk(fs[j].val)
		} else {
			w.Null()
		}
	}
}

// cmdHGetAll is HGETALL, HKEYS and HVALS.
func cmdHGetAll(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	fs, _, _, ok := s.hashOf(w, string(args[1]))
	if !ok {
		return
	}
	switch strings.ToLower(string(args[0])) {
	case "hgetall":
		w.Map(len(fs))
		for _, f := range fs {
			w.Bulk(f.name)
			w.Bulk(f.val)
		}
	case "hkeys":
		w.Array(len(fs))
		for _, f := range fs {
			w.Bulk(f.name)
		}
	default:
		w.Array(len(fs))
		for _, f := range fs {
			w.Bulk(f.val)
		}
	}
}

func cmdHDel(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	key := string(args[1])
	fs, e, found, ok := s.hashOf(w, key)
	if !ok {
		return
	}
	var kept []field
	removed := 0
	for _, f := range fs {
		gone := false
		for _, a := range args[2:] {
			if string(a) == string(f.name) {
				gone = true
			}
		}
		if gone {
			removed++
		} else {
			kept = append(kept, f)
		}
	}
	if removed > 0 {
		s.putHash(w, key, kept, e, found)
	}
	w.Int(int64(removed))
}

func cmdHExists(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	fs, _, _, ok := s.hashOf(w, string(args[1]))
	if ok {
		w.Int(int64(b2i(find(fs, args[2]) >= 0)))
	}
}

func cmdHLen(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	fs, _, _, ok := s.hashOf(w, string(args[1]))
	if ok {
		w.Int(int64(len(fs)))
	}
}

func cmdHIncrBy(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	by, ok := parseInt(args[3])
	if !ok {
		w.Error(errNotInt)
		return
	}
	key := string(args[1])
	fs, e, found, ok := s.hashOf(w, key)
	if !ok {
		return
	}
	fs = append([]field(nil), fs...)
	var cur int64
	j := find(fs, args[2])
	if j >= 0 {
		if cur, ok = parseInt(fs[j].val); !ok {
			w.Error("ERR hash value is not an integer")
			return
		}
	}
	if (by < 0 && cur < 0 && by < math.MinInt64-cur) || (by > 0 && cur > 0 && by > math.MaxInt64-cur) {
		w.Error(errOverflow)
		return
	}
	cur += by
	v := strconv.AppendInt(nil, cur, 10)
	if j >= 0 {
		fs[j].val = v
	} else {
		fs = append(fs, field{args[2], v})
	}
	if s.putHash(w, key, fs, e, found) {
		w.Int(cur)
	}
}

// cmdRename moves a key (string or hash) with its expiry, as Redis does.
func cmdRename(s *Server, c *conn, args [][]byte, w *resp.Writer) {
	from, to := string(args[1]), string(args[2])
	e, found := s.db.lookup(from)
	if !found {
		w.Error("ERR no such key")
		return
	}
	if from == to {
		w.Simple("OK")
		return
	}
	if !s.room(w, 1, to) {
		return
	}
	s.db.del(from)
	s.db.setKind(to, e.val, e.exp, e.hash)
	w.Simple("OK")
}
