package sessions

import (
	"context"
	"errors"
	"sync"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// entry is one key's value and absolute expiry (Unix ms, 0: never).
type entry struct {
	val []byte
	exp int64
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
	seq       uint64      // last command that may write
	queued    uint64      // last command that queued a change
	committed uint64      // every change up to this one is in the store, but those in failed
	failed    [][2]uint64 // ranges (lo, hi] of changes not (or maybe not) stored, newest last
	changed   chan struct{}
	kick      chan struct{} // wakes the committer
}

type pendingRec struct {
	seq uint64
	rec ha.SessionRecord
}

func newDB(clk clock.Clock, local bool) *db {
	return &db{clk: clk, m: map[string]entry{}, local: local, writable: local, loading: !local, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

func (d *db) nowMs() int64 { return d.clk.Now().UnixMilli() }

// lookup returns key's entry if it has not expired. Caller holds mu.
func (d *db) lookup(key string) (entry, bool) {
	e, ok := d.m[key]
	if !ok || (e.exp != 0 && e.exp <= d.nowMs()) {
		return entry{}, false
	}
	return e, true
}

// set stores key and queues the change. Caller holds mu and has checked
// that the node may write.
func (d *db) set(key string, val []byte, exp int64) {
	if old, ok := d.m[key]; ok {
		d.bytes -= int64(len(key) + len(old.val))
	}
	d.m[key] = entry{val: val, exp: exp}
	d.bytes += int64(len(key) + len(val))
	d.queue(ha.SessionRecord{Key: key, Value: val, ExpireAt: exp})
}

// del removes key and queues the change if it was there (expired or not).
func (d *db) del(key string) {
	old, ok := d.m[key]
	if !ok {
		return
	}
	d.bytes -= int64(len(key) + len(old.val))
	delete(d.m, key)
	d.queue(ha.SessionRecord{Key: key, Deleted: true})
}

// queue adds a change to the current command's sequence number (begin).
func (d *db) queue(r ha.SessionRecord) {
	if d.local {
		d.committed = d.seq
		return
	}
	d.queued = d.seq
	d.pending = append(d.pending, pendingRec{seq: d.seq, rec: r})
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

// take removes the oldest pending changes, whole commands only, up to
// maxOps distinct keys and maxBytes (at least one command), coalescing
// changes of one key into the last. It returns them and the last sequence
// number they cover.
func (d *db) take(maxOps, maxBytes int) ([]ha.SessionRecord, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) == 0 {
		return nil, 0
	}
	idx := map[string]int{}
	var out []ha.SessionRecord
	size, i := 0, 0
	for i < len(d.pending) {
		// One command's changes: [i, j).
		j := i
		for j < len(d.pending) && d.pending[j].seq == d.pending[i].seq {
			j++
		}
		add, bytes := 0, 0
		for _, p := range d.pending[i:j] {
			if _, ok := idx[p.rec.Key]; !ok {
				add++
			}
			bytes += len(p.rec.Key) + len(p.rec.Value) + 16
		}
		if i > 0 && (len(idx)+add > maxOps || size+bytes > maxBytes) {
			break
		}
		for _, p := range d.pending[i:j] {
			if k, ok := idx[p.rec.Key]; ok {
				out[k] = p.rec
			} else {
				idx[p.rec.Key] = len(out)
				out = append(out, p.rec)
			}
		}
		size += bytes
		i = j
	}
	last := d.pending[i-1].seq
	d.pending = d.pending[i:]
	if len(d.pending) == 0 {
		d.pending = nil // let the backing array go
	}
	return out, last
}

// done records that every change up to seq is stored.
func (d *db) done(seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq > d.committed {
		d.committed = seq
		d.notify()
	}
}

// reset replaces the copy with recs (a fresh load). writable makes this
// node the writer at epoch. Every change not yet stored fails.
func (d *db) reset(recs []ha.SessionRecord, writable bool, epoch ha.Epoch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m = make(map[string]entry, len(recs))
	d.bytes = 0
	for _, r := range recs {
		d.m[r.Key] = entry{val: r.Value, exp: r.ExpireAt}
		d.bytes += int64(len(r.Key) + len(r.Value))
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
		if old, ok := d.m[r.Key]; ok {
			d.bytes -= int64(len(r.Key) + len(old.val))
		}
		if r.Deleted {
			delete(d.m, r.Key)
			continue
		}
		d.m[r.Key] = entry{val: r.Value, exp: r.ExpireAt}
		d.bytes += int64(len(r.Key) + len(r.Value))
	}
}

// expired deletes up to limit expired keys (on the active) and reports how
// many it queued.
func (d *db) expire(limit int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.writable {
		return 0
	}
	now := d.nowMs()
	n := 0
	started := false
	for k, e := range d.m {
		if e.exp != 0 && e.exp <= now {
			if !started {
				d.begin()
				started = true
			}
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
