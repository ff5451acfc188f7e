package sessions

import (
	"bytes"
	"context"
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/resp"
)

// Active-active: every serving node takes writes, so no epoch fences them
// and no node's copy is authoritative. Every node keeps its copy from the
// watch only. A write command runs on the copy with capture set: it notes
// the revision of every key the command read or wrote, and the changes,
// which are then undone. The changes go to the store in one transaction that
// commits only if none of those keys changed since (compare-and-swap); the
// reply is sent once the watch has brought the change back into the copy
// (so a client reads its own writes on this node). On a conflict the keys
// are read again from the store and the command runs again.
//
// Reads are served from the copy, which may be a little behind other nodes'
// writes; a write that depended on a stale value is caught by the compare.

type capture struct {
	expect map[string]int64 // key -> revision the command saw (0: absent)
	undo   map[string]*entry
	recs   map[string]ha.SessionRecord
	order  []string
}

func (c *capture) read(key string, rev int64) {
	if _, ok := c.expect[key]; !ok {
		c.expect[key] = rev
	}
}

func (c *capture) write(d *db, key string, r ha.SessionRecord) {
	if _, ok := c.undo[key]; !ok {
		var old *entry
		if e, ok := d.m[key]; ok {
			old = &e
		}
		c.undo[key] = old
		c.read(key, d.m[key].rev)
	}
	if _, ok := c.recs[key]; !ok {
		c.order = append(c.order, key)
	}
	c.recs[key] = r
}

// restore undoes a capture's changes. Caller holds mu.
func (d *db) restore(c *capture) {
	for k, old := range c.undo {
		if cur, ok := d.m[k]; ok {
			d.bytes -= int64(len(k) + len(cur.val))
			delete(d.m, k)
		}
		if old != nil {
			d.m[k] = *old
			d.bytes += int64(len(k) + len(old.val))
		}
	}
}

// waitRev waits until the watch has applied revision rev.
func (d *db) waitRev(ctx context.Context, rev int64) error {
	for {
		d.mu.Lock()
		at, ch := d.watchRev, d.changed
		d.mu.Unlock()
		if at >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refresh reads keys from the store into the copy (after a conflict).
func (s *Server) refresh(ctx context.Context, keys []string) error {
	recs, err := s.opts.Backend.GetSessions(ctx, keys)
	if err != nil {
		return err
	}
	d := s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range recs {
		old, ok := d.m[r.Key]
		if ok && old.rev >= r.Rev {
			continue
		}
		if ok {
			d.bytes -= int64(len(r.Key) + len(old.val))
		}
		if r.Deleted {
			delete(d.m, r.Key)
			d.tombs[r.Key] = r.Rev
			continue
		}
		d.m[r.Key] = entry{val: r.Value, exp: r.ExpireAt, rev: r.Rev, hash: r.Hash}
		d.bytes += int64(len(r.Key) + len(r.Value))
	}
	return nil
}

// Bounds of one active-active write.
const (
	aaTries   = 20
	aaTimeout = 5 * time.Second
)

// aaStripes: writers on one node to keys of one stripe take turns, so that
// they do not make each other's compare-and-swap fail; only writers on
// different nodes race.
const aaStripes = 256

// lockKeys locks the stripes of cmd's key arguments, in order, and returns
// the unlock.
func (s *Server) lockKeys(cmd *command, args [][]byte) func() {
	var stripes []int
	if cmd.first > 0 {
		last := cmd.last
		if last < 0 {
			last = len(args) + last
		}
		seen := map[int]bool{}
		for i := cmd.first; i <= last && i < len(args); i += max(cmd.step, 1) {
			st := int(keyHash(string(args[i])) % aaStripes)
			if !seen[st] {
				seen[st] = true
				stripes = append(stripes, st)
			}
		}
	}
	sort.Ints(stripes)
	for _, st := range stripes {
		s.stripes[st].Lock()
	}
	return func() {
		for _, st := range stripes {
			s.stripes[st].Unlock()
		}
	}
}

// execAA runs a write command in active-active mode (see above).
func (s *Server) execAA(c *conn, cmd *command, args [][]byte, w *resp.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), aaTimeout)
	defer cancel()
	defer s.lockKeys(cmd, args)()
	d := s.db
	for try := 0; try < aaTries; try++ {
		var out bytes.Buffer
		tw := resp.NewWriter(&out)
		tw.Proto = w.Proto
		d.mu.Lock()
		if d.loading || !s.canWriteAA() {
			loading := d.loading
			d.mu.Unlock()
			if loading {
				w.Error(errLoading)
			} else {
				w.Error(errReadOnly)
			}
			return
		}
		cp := &capture{expect: map[string]int64{}, undo: map[string]*entry{}, recs: map[string]ha.SessionRecord{}}
		d.capture = cp
		cmd.run(s, c, args, tw)
		d.capture = nil
		d.restore(cp)
		d.mu.Unlock()
		tw.Flush()
		if bytes.HasPrefix(out.Bytes(), []byte("-")) && len(cp.recs) == 0 {
			w.Raw(out.Bytes()) // refused before any change (syntax, OOM...)
			return
		}
		recs := make([]ha.SessionRecord, 0, len(cp.order))
		for _, k := range cp.order {
			recs = append(recs, cp.recs[k])
		}
		rev, ok, err := s.opts.Backend.CommitSessionsIf(ctx, recs, cp.expect)
		if err != nil {
			s.opts.Log.Warn("sessions: active-active write failed", "err", err)
			w.Error("ERR " + errNotStored.Error())
			return
		}
		if !ok {
			keys := make([]string, 0, len(cp.expect))
			for k := range cp.expect {
				keys = append(keys, k)
			}
			if err := s.refresh(ctx, keys); err != nil {
				w.Error("ERR " + errNotStored.Error())
				return
			}
			continue
		}
		if len(recs) > 0 {
			if err := d.waitRev(ctx, rev); err != nil {
				w.Error("ERR the write is stored but this node's copy has not caught up; read it again")
				return
			}
		}
		w.Raw(out.Bytes())
		return
	}
	w.Error("ERR too many concurrent writes to the same keys; retry")
}

// canWriteAA reports whether this node serves (active-active: every
// healthy node with a valid lease does). Caller holds db.mu.
func (s *Server) canWriteAA() bool {
	_, ok := s.opts.Role()
	return ok
}

// runAA keeps the copy from the watch and removes expired keys (every
// node does, with compare-and-swap: two nodes removing one key conflict
// harmlessly).
func (s *Server) runAA(ctx context.Context) error {
	recs, rev, err := s.opts.Backend.LoadSessions(ctx)
	if err != nil {
		return err
	}
	s.db.reset(recs, false, 0)
	s.db.mu.Lock()
	s.db.watchRev = max(s.db.watchRev, rev)
	s.db.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- s.opts.Backend.WatchSessions(wctx, rev, s.db.apply) }()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-werr:
			if err == nil {
				err = errWatchEnded
			}
			return err
		case <-sweep.C:
			if _, ok := s.opts.Role(); ok {
				s.sweepAA(ctx)
			}
		}
	}
}

// sweepAA deletes expired keys, each only if unchanged since this node saw it.
func (s *Server) sweepAA(ctx context.Context) {
	d := s.db
	d.mu.Lock()
	now := d.nowMs()
	expect := map[string]int64{}
	var recs []ha.SessionRecord
	seen, size := 0, 0
	for k, e := range d.m {
		if seen++; seen > sweepScan {
			break
		}
		if e.exp != 0 && e.exp <= now {
			expect[k] = e.rev
			recs = append(recs, ha.SessionRecord{Key: k, Deleted: true})
			// Each key goes twice, in its compare and its delete: the
			// request stays within batchBytes however long the keys;
			// and one compare of the 128 is the layout's (CommitSessionsIf).
			if size += 2 * (len(k) + keyOverhead); len(recs) >= batchOps-1 || size >= batchBytes/2 {
				break
			}
		}
	}
	d.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, tryTimeout)
	defer cancel()
	if _, ok, err := s.opts.Backend.CommitSessionsIf(cctx, recs, expect); err == nil && ok {
		s.metrics.expired.Add(float64(len(recs)))
	}
}
