package sessions

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// entry is one key's value and absolute expiry (Unix ms, 0: never).
type entry struct {
	val  []byte // a string, or a hash's fields encoded (hash.go)
	exp  int64
	rev  int64 // the store's revision of its last change (active-active)
	hash bool
}

// db is this node's copy of the session store.
//
// On the active (writable) it is authoritative: loaded from the store after
// the promotion, then changed only by this node's commands, each change
// queued (pending) for the committer. A reply is sent only once every change
// queued before it has committed (wait), so no client ever sees a value the
// store has not committed. On a standby it is the copy the watch keeps.
type db struct {
	clk clock.Clock

	mu       sync.Mutex
	m        map[string]entry
	bytes    int64
	writable bool     // active and loaded: commands may write
	epoch    ha.Epoch // the epoch writes are fenced with
	local    bool     // no backend: every change is committed at once (tests, demos)
	loading  bool     // the copy is not usable until the next load (reset)

	pending   []pendingRec
	inflight  map[string]bool // keys of batches in flight
	flying    map[*batch]struct{}
	gen       uint64      // batches of an older generation are void (reset)
	seq       uint64      // last command that may write
	queued    uint64      // last command that queued a change
	committed uint64      // every change up to this one is in the store, but those in failed
	failed    [][2]uint64 // ranges (lo, hi] of changes not (or maybe not) stored, newest last
	changed   chan struct{}
	kick      chan struct{} // wakes the committer

	// Group commit's cohort (hold): when the last commit ended, the
	// changes expected before the next one starts, and until when.
	expect  int
	holdEnd time.Time

	// Active-active (aa.go): a write command runs with capture set, and
	// the copy changes only through the watch, whose revision is watchRev.
	capture  *capture
	watchRev int64
	tombs    map[string]int64 // keys a refresh found deleted, at that revision
}

type pendingRec struct {
	seq uint64
	rec ha.SessionRecord
}

func newDB(clk clock.Clock, local bool) *db {
	return &db{clk: clk, m: map[string]entry{}, local: local, writable: local, loading: !local, inflight: map[string]bool{}, flying: map[*batch]struct{}{}, tombs: map[string]int64{}, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

func (d *db) nowMs() int64 { return d.clk.Now().UnixMilli() }

// lookup returns key's entry if it has not expired. Caller holds mu.
func (d *db) lookup(key string) (entry, bool) {
	e, ok := d.m[key]
	if d.capture != nil {
		d.capture.read(key, e.rev)
	}
	if !ok || (e.exp != 0 && e.exp <= d.nowMs()) {
		return entry{}, false
	}
	return e, true
}

// set stores key and queues the change. Caller holds mu and has checked
// that the node may write.
func (d *db) set(key string, val []byte, exp int64) { d.setKind(key, val, exp, false) }

// setKind stores a string, or a hash (val encoded by encodeHash).
func (d *db) setKind(key string, val []byte, exp int64, hash bool) {
	if d.capture != nil {
		d.capture.write(d, key, ha.SessionRecord{Key: key, Value: val, ExpireAt: exp, Hash: hash})
	}
	if old, ok := d.m[key]; ok {
		d.bytes -= int64(len(key) + len(old.val))
	}
	d.m[key] = entry{val: val, exp: exp, hash: hash}
	d.bytes += int64(len(key) + len(val))
	if d.capture == nil {
		d.queue(ha.SessionRecord{Key: key, Value: val, ExpireAt: exp, Hash: hash})
	}
}

// del removes key and queues the change if it was there (expired or not).
func (d *db) del(key string) {
	old, ok := d.m[key]
	if !ok {
		return
	}
	if d.capture != nil {
		d.capture.write(d, key, ha.SessionRecord{Key: key, Deleted: true})
	}
	d.bytes -= int64(len(key) + len(old.val))
	delete(d.m, key)
	if d.capture == nil {
		d.queue(ha.SessionRecord{Key: key, Deleted: true})
	}
}

// queue adds a change to the current command's sequence number (begin).
func (d *db) queue(r ha.SessionRecord) {
	if d.local {
		d.committed = d.seq
		return
	}
	d.queued = d.seq
	d.pending = append(d.pending, pendingRec{seq: d.seq, rec: r})
	d.wake()
}

// wake tells the committer there may be work.
func (d *db) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// begin gives the next command that may write its sequence number.
func (d *db) begin() { d.seq++ }

// wait returns once every change up to seq is in the store, or an error
// if one of them was not stored.
func (d *db) wait(ctx context.Context, seq uint64) error {
	for {
		d.mu.Lock()
		committed, ch := d.committed, d.changed
		lost := false
		for _, r := range d.failed {
			lost = lost || (seq > r[0] && seq <= r[1])
		}
		d.mu.Unlock()
		if lost {
			return errNotStored
		}
		if seq <= committed {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var errNotStored = errors.New("the write was not confirmed by the store (this node may have lost the active role); retry")

// notify wakes waiters. Caller holds mu.
func (d *db) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// batch is one commit: whole commands whose keys no other batch in flight
// touches, so batches may commit concurrently and in any order without
// reordering the changes of any key.
type batch struct {
	gen  uint64
	recs []ha.SessionRecord
	min  uint64 // lowest command in it
}

// take removes from the queue the oldest commands that can go now, up to
// maxOps distinct keys and maxBytes (at least one command), coalescing
// changes of one key into the last. A command is skipped when one of its
// keys is in a batch in flight or in a command skipped before it. It
// returns nil when nothing can go.
func (d *db) take(maxOps, maxBytes int) *batch {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) == 0 {
		return nil
	}
	idx := map[string]int{}
	blocked := map[string]bool{}
	b := &batch{gen: d.gen}
	var rest []pendingRec
	size, i := 0, 0
	full := false
	for i < len(d.pending) {
		// One command's changes: [i, j).
		j := i
		for j < len(d.pending) && d.pending[j].seq == d.pending[i].seq {
			j++
		}
		cmd := d.pending[i:j]
		i = j
		skip := full
		add, bytes := 0, 0
		for _, p := range cmd {
			k := p.rec.Key
			if d.inflight[k] || blocked[k] {
				skip = true
			}
			if _, ok := idx[k]; !ok {
				add++
			}
			bytes += len(k) + len(p.rec.Value) + keyOverhead
		}
		if !skip && len(b.recs) > 0 && (len(idx)+add > maxOps || size+bytes > maxBytes) {
			skip, full = true, true
		}
		if skip {
			for _, p := range cmd {
				blocked[p.rec.Key] = true
			}
			rest = append(rest, cmd...)
			continue
		}
		if b.min == 0 {
			b.min = cmd[0].seq
		}
		for _, p := range cmd {
			if k, ok := idx[p.rec.Key]; ok {
				b.recs[k] = p.rec
			} else {
				idx[p.rec.Key] = len(b.recs)
				b.recs = append(b.recs, p.rec)
			}
		}
		size += bytes
	}
	if len(b.recs) == 0 {
		return nil
	}
	d.pending = rest
	for k := range idx {
		d.inflight[k] = true
	}
	d.flying[b] = struct{}{}
	return b
}

// fullBatch reports whether the queue holds at least a full batch
// (maxOps changes or maxBytes), so that another commit may start beside
// the ones in flight.
func (d *db) fullBatch(maxOps, maxBytes int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) >= maxOps {
		return true
	}
	size := 0
	for _, p := range d.pending {
		if size += len(p.rec.Key) + len(p.rec.Value) + keyOverhead; size >= maxBytes {
			return true
		}
	}
	return false
}

// maxHold bounds how long a commit waits for the writers the last one
// released (hold).
const maxHold = 5 * time.Millisecond

// done records that b is stored; its commit took took.
func (d *db) done(b *batch, took time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.gen != d.gen {
		return // from before a reset: its waiters have failed already
	}
	// The writers b releases will most likely write again at once (a web
	// server's clients that do not pipeline): the next commit waits a
	// little for them, so that one cohort of clients shares each commit
	// instead of two taking turns with half the keys each.
	d.expect = min(len(b.recs)+len(d.pending), maxHoldKeys)
	d.holdEnd = d.clk.Now().Add(min(took/2, maxHold))
	for _, r := range b.recs {
		delete(d.inflight, r.Key)
	}
	delete(d.flying, b)
	// Everything below the oldest change still queued or in flight is in.
	low := d.queued + 1
	if len(d.pending) > 0 {
		low = min(low, d.pending[0].seq)
	}
	for f := range d.flying {
		low = min(low, f.min)
	}
	if low-1 > d.committed {
		d.committed = low - 1
		d.notify()
	}
	d.wake()
}

// maxHoldKeys: a cohort larger than a batch is not waited for.
const maxHoldKeys = batchOps

// hold reports how long the next commit, with none in flight, should wait
// for more changes: until as many are queued as the last commit carried
// plus those queued when it ended (its writers came back), for at most
// half its duration (maxHold at most). Zero: start now.
func (d *db) hold() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) >= d.expect {
		return 0
	}
	return max(d.holdEnd.Sub(d.clk.Now()), 0)
}

// reset replaces the copy with recs (a fresh load). writable makes this
// node the writer at epoch. Every change not yet stored fails.
func (d *db) reset(recs []ha.SessionRecord, writable bool, epoch ha.Epoch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m = make(map[string]entry, len(recs))
	d.bytes = 0
	for _, r := range recs {
		d.m[r.Key] = entry{val: r.Value, exp: r.ExpireAt, rev: r.Rev, hash: r.Hash}
		d.bytes += int64(len(r.Key) + len(r.Value))
		d.watchRev = max(d.watchRev, r.Rev)
	}
	d.failPendingLocked()
	d.writable, d.epoch, d.loading = writable, epoch, false
}

// stopWriting makes the copy read-only and fails every change not yet
// stored (the copy is reloaded before it is used again for writes).
func (d *db) stopWriting() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writable {
		// The copy may hold changes the store refused: useless until reloaded.
		d.loading = true
	}
	d.writable = false
	d.failPendingLocked()
}

func (d *db) failPendingLocked() {
	d.pending = nil
	d.inflight = map[string]bool{}
	d.flying = map[*batch]struct{}{}
	d.gen++
	if d.seq > d.committed {
		d.failed = append(d.failed, [2]uint64{d.committed, d.seq})
		if len(d.failed) > 64 {
			d.failed = d.failed[1:]
		}
		d.committed = d.seq // the failed range is excluded above
	}
	d.queued = 0 // nothing left to wait for
	d.notify()
}

// apply changes a standby's copy as the watch reports.
func (d *db) apply(recs []ha.SessionRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writable {
		return // the active's copy is its own
	}
	for _, r := range recs {
		old, ok := d.m[r.Key]
		if ok && r.Rev != 0 && old.rev > r.Rev {
			continue // refreshed past this change already (active-active)
		}
		if t, dead := d.tombs[r.Key]; dead {
			if r.Rev <= t {
				continue
			}
			delete(d.tombs, r.Key)
		}
		if ok {
			d.bytes -= int64(len(r.Key) + len(old.val))
		}
		d.watchRev = max(d.watchRev, r.Rev)
		if r.Deleted {
			delete(d.m, r.Key)
			continue
		}
		d.m[r.Key] = entry{val: r.Value, exp: r.ExpireAt, rev: r.Rev, hash: r.Hash}
		d.bytes += int64(len(r.Key) + len(r.Value))
	}
	d.notify() // active-active writers wait for the watch to reach their revision
}

// expired deletes up to limit expired keys (on the active) and reports how
// many it queued.
//
// One pass looks at no more than sweepScan keys, from a random place (Go's
// map iteration starts at one), as Redis's active expiry samples keys: the
// lock is held briefly however large the store. Expired keys are hidden from
// every reply anyway; this only frees their space.
func (d *db) expire(limit int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.writable {
		return 0
	}
	now := d.nowMs()
	n, seen := 0, 0
	for k, e := range d.m {
		if seen++; seen > sweepScan {
			break
		}
		if e.exp != 0 && e.exp <= now {
			// Each deletion a command of its own: take groups them in
			// batches within batchOps and batchBytes. As one command
			// (taken whole) they made a transaction of up to limit
			// operations, which etcd refuses past 128.
			d.begin()
			d.del(k)
			n++
			if n >= limit {
				break
			}
		}
	}
	return n
}

// Stats is the size of this node's copy.
type Stats struct {
	Keys     int
	Bytes    int64 // keys and values
	Writable bool
}

func (d *db) stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statsLocked()
}

func (d *db) statsLocked() Stats {
	return Stats{Keys: len(d.m), Bytes: d.bytes, Writable: d.writable}
}
