package etcdstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// The active-passive session store's packed layout (docs/sessions.md, "The
// packed layout"), under /haven-sessions-log/<cluster>/:
//
//   - log/<epoch>-<n>: one group commit's records, written by the same
//     fenced transaction as the per-key layout's. The log's order is the
//     entries' mod revision, not their names.
//   - snap/<gen>/<i>: the chunks (at most about 1 MiB each) of a snapshot.
//   - snap/current: the generation in use and the revision R it folds
//     (every log entry with mod revision ≤ R), its chunk count and checksum.
//
// A load reads snap/current, its chunks and the log at one revision, and
// applies the chunks, then the entries past R in revision order. The active
// compacts (compact) when the log outgrows the snapshot, and migrates from
// one key per session (migrate) when its caller says every node reads this
// layout. Every write is fenced by the epoch, so a deposed active changes
// nothing.

// PackedOptions configure the packed layout.
type PackedOptions struct {
	// Ready reports that every configured node runs a version that reads
	// the packed layout: only then does an active migrate to it. nil: never.
	Ready func() bool
	// CompactBytes: the log is compacted once its bytes exceed both the
	// snapshot's and this; 0: 4 MiB.
	CompactBytes int64
	// Log gets the compactions' and migration's news; nil: slog.Default().
	Log *slog.Logger
	// HistoryKeep: after each of its compactions, the active compacts
	// etcd's history (etcd's Compact: every key's revisions, not only the
	// sessions') up to the R of its newest earlier snapshot switched at
	// least this long ago, and at least 4 times its last full read ago,
	// so that a load in progress is not cut. Each compaction rewrites the
	// whole snapshot; without this, etcd keeps those rewrites until its
	// own auto-compaction (every 5 minutes on the embedded etcd), and its
	// database grows with the write rate (docs/sessions.md). 0: never
	// (an external etcd, compacted by its operator's settings).
	HistoryKeep time.Duration
}

// Layouts as SessionLogStats names them.
const (
	layoutKeys   = "keys"
	layoutPacked = "packed"
)

const (
	defaultCompactBytes = 4 << 20
	chunkBytes          = 1 << 20 // a snapshot chunk's records, at most (one larger record goes alone)
	deleteBatch         = 128     // operations per transaction of step 4 (etcd's --max-txn-ops)
	migrateRange        = 1000    // per-key keys removed by one range delete of the migration
	logPage             = 16      // log entries read per request by a load
	// expiredSlack: compaction drops keys expired for longer than this
	// (every node hides them already, whatever its clock's skew).
	expiredSlack = time.Second
	// compactBackoff, maxCompactBackoff: the wait after a failed
	// compaction before the commits start another (each reads the whole
	// store), doubling.
	compactBackoff    = time.Second
	maxCompactBackoff = time.Minute
)

// SessionLog is the session store's data for active-passive on etcd: the
// packed layout once migrated, one key per session (Store's own methods)
// before. Active-active keeps one key per session: it needs per-key
// revisions.
type SessionLog struct {
	s    *Store
	opts PackedOptions
	n    atomic.Uint64 // log entries this process wrote (unique within an epoch)
	// compactStarts counts the compactions the commits started (tests).
	compactStarts atomic.Int64
	now           func() time.Time

	// hook, for tests, is called with a step's name between the steps of
	// a compaction and of a migration.
	hook func(step string)
	// rangeKeys: per-key keys removed by one transaction after a
	// migration (migrateRange; tests take fewer).
	rangeKeys int64

	loads atomic.Uint64 // the active's loads (writer tokens)

	mu          sync.Mutex
	layout      string // "" before the first load
	writer      string // this node's writer token, set by its load as the active
	snap        snapMeta
	logEnts     map[string]logEnt // log entries past snap.Rev, by key
	logBytes    int64             // their bytes
	compacting  bool
	cleaning    bool // the per-key keys are being removed
	compactions int64
	// After a failed compaction, the commits start none before
	// compactAfter (compactWait, doubling from compactBackoff to
	// maxCompactBackoff; zero after a success).
	compactAfter time.Time
	compactWait  time.Duration
	lastErr      error // the last compaction's or clean-up's failure (tests)
	bg           sync.WaitGroup
	// switches: this node's snapshot switches not yet used to compact
	// etcd's history (HistoryKeep), oldest first; lastRead: how long its
	// last compaction's read (step 1) took; historyRev: the revision it
	// last compacted etcd's history to.
	switches   []histMark
	lastRead   time.Duration
	historyRev int64
}

type histMark struct {
	rev int64
	at  time.Time
}

type logEnt struct {
	rev   int64
	bytes int64
}

// snapMeta is snap/current's value.
type snapMeta struct {
	Gen    uint64 `json:"gen"`
	Rev    int64  `json:"rev"` // R: the log entries it folds have mod revisions ≤ R
	Chunks int    `json:"chunks"`
	CRC    uint32 `json:"crc32c"` // of the chunks' values, in order
	Keys   int    `json:"keys"`
	Bytes  int64  `json:"bytes"`
	At     int64  `json:"at"` // Unix ms it was written
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PackedSessions returns s's session store for active-passive: the packed
// layout if it is in place (or once the active migrates to it), else one
// key per session exactly as Store's own methods.
func (s *Store) PackedSessions(opts PackedOptions) *SessionLog {
	if opts.Ready == nil {
		opts.Ready = func() bool { return false }
	}
	if opts.CompactBytes <= 0 {
		opts.CompactBytes = defaultCompactBytes
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &SessionLog{s: s, opts: opts, now: time.Now, hook: func(string) {}, rangeKeys: migrateRange, logEnts: map[string]logEnt{}}
}

func (l *SessionLog) prefix() string { return l.s.sessLogPrefix() }

func (s *Store) sessLogPrefix() string {
	return "/haven-sessions-log/" + strings.TrimPrefix(s.prefix, "/haven/")
}
func (s *Store) sessCurrentKey() string  { return s.sessLogPrefix() + "snap/current" }
func (l *SessionLog) logPrefix() string  { return l.prefix() + "log/" }
func (l *SessionLog) snapPrefix() string { return l.prefix() + "snap/" }
func (l *SessionLog) currentKey() string { return l.s.sessCurrentKey() }
func (l *SessionLog) writerKey() string  { return l.prefix() + "writer" }
func (l *SessionLog) genPrefix(gen uint64) string {
	return fmt.Sprintf("%s%016x/", l.snapPrefix(), gen)
}

// encodeBatch packs recs: for each, uvarint key length, key, a flags byte
// (1 deleted, 2 hash), the expiry (8 bytes big-endian), uvarint value
// length, value.
func encodeBatch(recs []ha.SessionRecord) []byte {
	n := 0
	for _, r := range recs {
		n += len(r.Key) + len(r.Value) + 2*binary.MaxVarintLen32 + 9
	}
	b := make([]byte, 0, n)
	for _, r := range recs {
		b = appendRecord(b, r)
	}
	return b
}

func appendRecord(b []byte, r ha.SessionRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	var f byte
	if r.Deleted {
		f |= 1
	}
	if r.Hash {
		f |= 2
	}
	b = append(b, f)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ExpireAt))
	if r.Deleted {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(r.Value)))
	return append(b, r.Value...)
}

var errBadBatch = errors.New("not a session log entry (someone wrote under /haven-sessions-log/ by hand?)")

func decodeBatch(b []byte, rev int64) ([]ha.SessionRecord, error) {
	var out []ha.SessionRecord
	for len(b) > 0 {
		kl, n := binary.Uvarint(b)
		if n <= 0 || kl > uint64(len(b)-n) || uint64(len(b)-n)-kl < 9 { // kl+9 may overflow
			return nil, errBadBatch
		}
		b = b[n:]
		r := ha.SessionRecord{Key: string(b[:kl]), Rev: rev}
		b = b[kl:]
		f := b[0]
		if f > 3 {
			return nil, errBadBatch
		}
		r.Deleted, r.Hash = f&1 != 0, f&2 != 0
		r.ExpireAt = int64(binary.BigEndian.Uint64(b[1:9]))
		b = b[9:]
		if !r.Deleted {
			vl, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < vl {
				return nil, errBadBatch
			}
			// A copy: a value that pointed into b kept the whole
			// chunk (1 MiB) or log entry in memory while it lived.
			r.Value = bytes.Clone(b[n : n+int(vl)])
			b = b[n+int(vl):]
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *SessionLog) getLayout() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.layout
}

// CommitSessions writes recs, if node holds the active role at epoch: as
// one log entry in the packed layout (a retry writes the same records
// again, so applying it twice is applying it once), else one key each.
func (l *SessionLog) CommitSessions(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (int64, error) {
	txn, key, n, err := l.commitTxn(ctx, node, epoch, recs)
	if err != nil {
		return 0, err
	}
	resp, err := txn.Commit()
	if err != nil {
		return 0, fmt.Errorf("commit %d session keys at epoch %d: %w", len(recs), epoch, err)
	}
	if !resp.Succeeded {
		return 0, ha.ErrNotLeader
	}
	if key == "" {
		return resp.Header.Revision, nil // the per-key layout
	}
	rev := resp.Header.Revision
	l.mu.Lock()
	l.addEntLocked(key, logEnt{rev: rev, bytes: n})
	start := l.needsCompactionLocked() && !l.compacting && !l.now().Before(l.compactAfter)
	if start {
		l.compacting = true
	}
	l.mu.Unlock()
	if start {
		// Beside the commits: they go on while it runs (its writes are
		// fenced at epoch like theirs).
		l.bg.Add(1)
		go func() {
			defer l.bg.Done()
			l.compactStarts.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			err := l.compactLocked(ctx, node, epoch)
			l.mu.Lock()
			l.compacting, l.lastErr = false, err
			if err != nil {
				l.compactWait = min(max(2*l.compactWait, compactBackoff), maxCompactBackoff)
				l.compactAfter = l.now().Add(l.compactWait)
			} else {
				l.compactWait, l.compactAfter = 0, time.Time{}
			}
			wait := l.compactWait
			l.mu.Unlock()
			if err != nil {
				l.opts.Log.Warn("sessions: compaction of the log stopped; trying again later", "epoch", epoch, "in", wait, "err", err)
			}
		}()
	}
	return rev, nil
}

// commitTxn is the transaction that commits recs, and the log entry's key
// and size ("" in the per-key layout).
func (l *SessionLog) commitTxn(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (clientv3.Txn, string, int64, error) {
	l.mu.Lock()
	layout, writer := l.layout, l.writer
	l.mu.Unlock()
	if writer == "" {
		return nil, "", 0, errors.New("commit before the session store was loaded as the active")
	}
	fence := append(l.s.fence(node, epoch), clientv3.Compare(clientv3.Value(l.writerKey()), "=", writer))
	switch layout {
	case layoutKeys:
		return l.s.cli.Txn(ctx).If(fence...).Then(l.s.sessionOps(recs)...), "", 0, nil
	case layoutPacked:
	default:
		return nil, "", 0, errors.New("commit before the session store was loaded")
	}
	key := fmt.Sprintf("%s%016x-%016x", l.logPrefix(), uint64(epoch), l.n.Add(1))
	val := encodeBatch(recs)
	return l.s.cli.Txn(ctx).If(fence...).Then(clientv3.OpPut(key, string(val))), key, int64(len(val)), nil
}

func (l *SessionLog) needsCompactionLocked() bool {
	return l.logBytes > l.snap.Bytes && l.logBytes >= l.opts.CompactBytes
}

func (l *SessionLog) addEntLocked(key string, e logEnt) {
	l.delEntLocked(key)
	l.logEnts[key] = e
	l.logBytes += e.bytes
}

func (l *SessionLog) delEntLocked(key string) {
	if e, ok := l.logEnts[key]; ok {
		delete(l.logEnts, key)
		l.logBytes -= e.bytes
	}
}

// LoadSessions reads the data at one revision: the packed layout if
// snap/current exists, else one key per session. A standby's load.
func (l *SessionLog) LoadSessions(ctx context.Context) ([]ha.SessionRecord, int64, error) {
	v, err := l.read(ctx, 0, false)
	if err != nil {
		return nil, 0, err
	}
	if v.curMod == 0 {
		recs, rev, err := l.s.loadSessionsAt(ctx, v.rev) // the revision snap/current was absent at
		if err != nil {
			return nil, 0, err
		}
		l.setKeys()
		return recs, rev, nil
	}
	l.setView(v)
	return v.records(), v.rev, nil
}

// LoadSessionsAsActive is the active's load, made after its promotion and
// before it accepts writes. In the per-key layout, if Ready says every node
// reads the packed layout, it migrates first. In the packed layout, it
// removes per-key keys a migration left behind (in the background).
func (l *SessionLog) LoadSessionsAsActive(ctx context.Context, node string, epoch ha.Epoch) ([]ha.SessionRecord, int64, error) {
	// A new writer token first, then the read: a commit of an earlier load
	// (same node and epoch, so the fence lets it through) that etcd applies
	// late is either in the read or refused by the token (every commit
	// compares it), never applied after the read.
	token := fmt.Sprintf("%s/%d/%d/%d", node, epoch, l.now().UnixNano(), l.loads.Add(1))
	l.mu.Lock()
	l.writer = ""
	l.mu.Unlock()
	if err := l.fenced(ctx, node, epoch, nil, clientv3.OpPut(l.writerKey(), token)); err != nil {
		return nil, 0, fmt.Errorf("load the session store as the active: %w", err)
	}
	l.mu.Lock()
	l.writer = token
	l.mu.Unlock()
	v, err := l.read(ctx, 0, false)
	if err != nil {
		return nil, 0, err
	}
	if v.curMod == 0 {
		if !l.opts.Ready() {
			recs, rev, err := l.s.loadSessionsAt(ctx, v.rev) // the revision snap/current was absent at
			if err != nil {
				return nil, 0, err
			}
			l.setKeys()
			return recs, rev, nil
		}
		if err := l.migrate(ctx, node, epoch); err != nil {
			return nil, 0, err
		}
		if v, err = l.read(ctx, 0, false); err != nil {
			return nil, 0, err
		}
		if v.curMod == 0 {
			return nil, 0, errors.New("the session store's snapshot is gone after the migration")
		}
	}
	l.setView(v)
	l.cleanKeys(node, epoch)
	return v.records(), v.rev, nil
}

func (l *SessionLog) setKeys() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.layout, l.snap, l.logEnts, l.logBytes = layoutKeys, snapMeta{}, map[string]logEnt{}, 0
}

func (l *SessionLog) setView(v *view) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.layout, l.snap, l.logEnts, l.logBytes = layoutPacked, v.cur, map[string]logEnt{}, 0
	for _, e := range v.log {
		l.addEntLocked(e.key, logEnt{rev: e.rev, bytes: int64(len(e.val))})
	}
}

// view is the packed layout as read at one revision.
type view struct {
	rev    int64
	cur    snapMeta
	curMod int64 // snap/current's mod revision; 0: absent (per-key layout)
	recs   map[string]ha.SessionRecord
	log    []ent    // entries past cur.Rev, in revision order
	folded []string // entries at or below cur.Rev still there
	gens   []uint64 // every generation with chunks, current's included
}

type ent struct {
	key string
	rev int64
	val []byte
}

func (v *view) records() []ha.SessionRecord {
	out := make([]ha.SessionRecord, 0, len(v.recs))
	for _, r := range v.recs {
		out = append(out, r)
	}
	return out
}

// read reads snap/current, its chunks and the log at revision rev (0:
// now, linearizably) and folds them; with gens, it also lists the
// generations present. snap/current absent: curMod 0, nothing else read.
func (l *SessionLog) read(ctx context.Context, rev int64, gens bool) (*view, error) {
	var opts []clientv3.OpOption
	if rev != 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := l.s.cli.Get(ctx, l.currentKey(), opts...)
	if err != nil {
		return nil, fmt.Errorf("load the session store: %w", err)
	}
	v := &view{rev: resp.Header.Revision, recs: map[string]ha.SessionRecord{}}
	if rev != 0 {
		v.rev = rev
	}
	if len(resp.Kvs) == 0 {
		return v, nil
	}
	v.curMod = resp.Kvs[0].ModRevision
	if err := json.Unmarshal(resp.Kvs[0].Value, &v.cur); err != nil {
		return nil, fmt.Errorf("the session store's %s is not a snapshot record (%v)", l.currentKey(), err)
	}
	if gens {
		if v.gens, err = l.listGens(ctx, v.rev); err != nil {
			return nil, err
		}
	}
	// The chunks, in order.
	crc, n := uint32(0), 0
	err = l.page(ctx, l.genPrefix(v.cur.Gen), v.rev, 4, func(kv ent) error {
		if kv.key != fmt.Sprintf("%s%08d", l.genPrefix(v.cur.Gen), n) {
			return fmt.Errorf("the session store's snapshot %d has %s where chunk %d belongs", v.cur.Gen, kv.key, n)
		}
		n++
		crc = crc32.Update(crc, castagnoli, kv.val)
		recs, err := decodeBatch(kv.val, v.cur.Rev)
		if err != nil {
			return err
		}
		for _, r := range recs {
			v.recs[r.Key] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n != v.cur.Chunks || crc != v.cur.CRC {
		return nil, fmt.Errorf("the session store's snapshot %d is damaged: %d chunks (checksum %08x), snap/current says %d (%08x)", v.cur.Gen, n, crc, v.cur.Chunks, v.cur.CRC)
	}
	n = 0
	// The log: entries at or below R are folded in the snapshot already
	// (a compaction that stopped before deleting them): skipped.
	// A page of logPage entries: a response of ~20 MiB at most (an entry
	// is one commit, within etcd's 1.5 MiB request limit).
	err = l.page(ctx, l.logPrefix(), v.rev, logPage, func(kv ent) error {
		if n++; n%logPage == 0 {
			l.hook("log-page")
		}
		if kv.rev <= v.cur.Rev {
			v.folded = append(v.folded, kv.key)
		} else {
			v.log = append(v.log, kv)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(v.log, func(i, j int) bool { return v.log[i].rev < v.log[j].rev })
	for _, e := range v.log {
		recs, err := decodeBatch(e.val, e.rev)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Deleted {
				delete(v.recs, r.Key)
			} else {
				v.recs[r.Key] = r
			}
		}
	}
	return v, nil
}

// page calls fn with every key under prefix at rev, in key order, limit a page.
func (l *SessionLog) page(ctx context.Context, prefix string, rev int64, limit int64, fn func(ent) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		resp, err := l.s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithRev(rev))
		if err != nil {
			return fmt.Errorf("load the session store: %w", err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(ent{key: string(kv.Key), rev: kv.ModRevision, val: kv.Value}); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// listGens lists the snapshot generations that have chunks at rev.
func (l *SessionLog) listGens(ctx context.Context, rev int64) ([]uint64, error) {
	p := l.snapPrefix()
	resp, err := l.s.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("list the session store's snapshots: %w", err)
	}
	var out []uint64
	for _, kv := range resp.Kvs {
		name, _, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), p), "/")
		if !ok {
			continue // snap/current
		}
		g, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != g {
			out = append(out, g)
		}
	}
	return out, nil
}

// fenced runs ops in one transaction if node holds the active role at
// epoch (and cmps hold); ha.ErrNotLeader if the fence failed.
func (l *SessionLog) fenced(ctx context.Context, node string, epoch ha.Epoch, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	fence := l.s.fence(node, epoch)
	resp, err := l.s.cli.Txn(ctx).If(append(fence, cmps...)...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	// Which compare failed? Look at the fence alone.
	f, err := l.s.cli.Txn(ctx).If(fence...).Commit()
	if err != nil {
		return err
	}
	if !f.Succeeded {
		return ha.ErrNotLeader
	}
	return errSnapMoved
}

var errSnapMoved = errors.New("the session store's snapshot changed meanwhile")

// writeGen writes recs as the chunks of generation gen, each put fenced
// (step 2: invisible until snap/current names gen), and returns the
// snapshot record that names them, folding rev.
func (l *SessionLog) writeGen(ctx context.Context, node string, epoch ha.Epoch, gen uint64, rev int64, recs map[string]ha.SessionRecord) (snapMeta, error) {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := snapMeta{Gen: gen, Rev: rev, Keys: len(keys), At: l.now().UnixMilli()}
	var buf []byte
	flush := func() error {
		if err := l.putChunk(ctx, node, epoch, gen, m.Chunks, buf); err != nil {
			return err
		}
		m.CRC = crc32.Update(m.CRC, castagnoli, buf)
		m.Bytes += int64(len(buf))
		m.Chunks++
		buf = buf[:0]
		return nil
	}
	for _, k := range keys {
		r := recs[k]
		if len(buf) > 0 && len(buf)+len(r.Key)+len(r.Value)+2*binary.MaxVarintLen32+9 > chunkBytes {
			if err := flush(); err != nil {
				return m, err
			}
		}
		buf = appendRecord(buf, r)
	}
	if len(buf) > 0 {
		if err := flush(); err != nil {
			return m, err
		}
	}
	return m, nil
}

// putChunk writes chunk i of generation gen, fenced, and only if the key
// is new: a write of an earlier attempt of this epoch (same node, so the
// fence passes) whose outcome was unknown may arrive late, and must not
// replace a chunk of this attempt unseen, nor this attempt one of it.
func (l *SessionLog) putChunk(ctx context.Context, node string, epoch ha.Epoch, gen uint64, i int, buf []byte) error {
	k := fmt.Sprintf("%s%08d", l.genPrefix(gen), i)
	err := l.fenced(ctx, node, epoch, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)}, clientv3.OpPut(k, string(buf)))
	if errors.Is(err, errSnapMoved) {
		err = errChunkExists
	}
	if err != nil {
		return fmt.Errorf("write chunk %d of session snapshot %d: %w", i, gen, err)
	}
	return nil
}

var errChunkExists = errors.New("the chunk exists already (an earlier attempt's write arrived late); the next attempt takes a new generation")

// switchTo is step 3: one fenced transaction, conditioned on snap/current
// still at curMod (0: absent), that points snap/current at m and deletes
// every other generation's chunks.
func (l *SessionLog) switchTo(ctx context.Context, node string, epoch ha.Epoch, curMod int64, m snapMeta, gens []uint64) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpPut(l.currentKey(), string(b))}
	for _, g := range gens {
		if g != m.Gen && len(ops) < deleteBatch {
			ops = append(ops, clientv3.OpDelete(l.genPrefix(g), clientv3.WithPrefix()))
		}
	}
	cmp := clientv3.Compare(clientv3.ModRevision(l.currentKey()), "=", curMod)
	if err := l.fenced(ctx, node, epoch, []clientv3.Cmp{cmp}, ops...); err != nil {
		return fmt.Errorf("switch the session store to snapshot %d: %w", m.Gen, err)
	}
	return nil
}

// Compact folds the log into a new snapshot, as the active at epoch
// (docs/sessions.md): 1. read snapshot and log at a revision R and fold
// them; 2. write the new generation's chunks, each fenced; 3. switch
// snap/current to it in one fenced transaction conditioned on
// snap/current's mod revision, deleting the other generations; 4. delete
// the log entries ≤ R in fenced batches. Commits go on meanwhile. A
// failover at any step loses nothing: until 3 commits a load sees the old
// snapshot and the whole log past its R; after, the new one and the log
// past R; the entries step 4 deletes are skipped by every load.
func (l *SessionLog) Compact(ctx context.Context, node string, epoch ha.Epoch) error {
	l.mu.Lock()
	if l.compacting {
		l.mu.Unlock()
		return errors.New("a compaction is running")
	}
	l.compacting = true
	l.mu.Unlock()
	err := l.compactLocked(ctx, node, epoch)
	l.mu.Lock()
	l.compacting, l.lastErr = false, err
	l.mu.Unlock()
	return err
}

// compactLocked runs a compaction; the caller has set l.compacting.
func (l *SessionLog) compactLocked(ctx context.Context, node string, epoch ha.Epoch) error {
	start := l.now()
	v, err := l.read(ctx, 0, true) // 1.
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.lastRead = l.now().Sub(start)
	l.mu.Unlock()
	if v.cur.Bytes+l.Stats().LogBytes > 1<<20 {
		// The fold holds the whole data set decoded, several times its
		// encoded size, for a moment: hand it back to the system once done,
		// or the process keeps it (measured, the agent with its member
		// after loading 200,000 keys: 1,100–1,300 bytes per key without
		// this, 381–732 with it, 260–283 with no compaction at all;
		// benchmarks.md).
		defer debug.FreeOSMemory()
	}
	if v.curMod == 0 {
		return errors.New("no snapshot to compact into (the per-key layout)")
	}
	// Drop keys every node hides already.
	cut := l.now().Add(-expiredSlack).UnixMilli()
	for k, r := range v.recs {
		if r.ExpireAt != 0 && r.ExpireAt < cut {
			delete(v.recs, k)
		}
	}
	gen := v.cur.Gen
	for _, g := range v.gens {
		gen = max(gen, g)
	}
	gen++
	l.hook("read")
	m, err := l.writeGen(ctx, node, epoch, gen, v.rev, v.recs) // 2.
	if err != nil {
		return err
	}
	l.hook("written")
	if err := l.switchTo(ctx, node, epoch, v.curMod, m, v.gens); err != nil { // 3.
		return err
	}
	l.mu.Lock()
	l.snap = m
	for k, e := range l.logEnts {
		if e.rev <= v.rev {
			l.delEntLocked(k)
		}
	}
	l.compactions++
	l.switches = append(l.switches, histMark{rev: v.rev, at: l.now()})
	l.mu.Unlock()
	l.hook("switched")
	// 4. The entries R folds: the ones read past the old R, and the ones
	// an earlier compaction left.
	old := v.folded
	for _, e := range v.log {
		old = append(old, e.key)
	}
	for i := 0; i < len(old); i += deleteBatch {
		ops := make([]clientv3.Op, 0, deleteBatch)
		for _, k := range old[i:min(i+deleteBatch, len(old))] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if err := l.fenced(ctx, node, epoch, nil, ops...); err != nil {
			return fmt.Errorf("delete %d folded session log entries: %w", len(ops), err)
		}
		l.hook("deleted")
	}
	l.compactHistory(ctx)
	return nil
}

// compactHistory compacts etcd's history up to the R of the newest
// snapshot switch of this node older than HistoryKeep and 4 times its last
// full read. Everything before that R is a rewritten chunk or a folded log
// entry, or the history of other keys, which etcd's own auto-compaction
// would drop later. A watch behind it is cut and reloads (the sessions'
// and the agents' watches do); a load started before that switch fails
// and is retried. Its failure is only logged: etcd's auto-compaction
// still runs.
func (l *SessionLog) compactHistory(ctx context.Context) {
	if l.opts.HistoryKeep <= 0 {
		return
	}
	l.mu.Lock()
	cut := l.now().Add(-max(l.opts.HistoryKeep, 4*l.lastRead))
	var rev int64
	i := 0
	for ; i < len(l.switches) && !l.switches[i].at.After(cut); i++ {
		rev = l.switches[i].rev
	}
	l.switches = l.switches[i:]
	if rev <= l.historyRev {
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	_, err := l.s.cli.Compact(ctx, rev)
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		l.opts.Log.Warn("sessions: compacting etcd's history failed (etcd's auto-compaction still runs)", "revision", rev, "err", err)
		return
	}
	l.mu.Lock()
	l.historyRev = max(l.historyRev, rev)
	l.mu.Unlock()
}

// migrate moves one key per session to the packed layout, as the active at
// epoch before it accepts writes (so no per-key change comes after its
// read): it reads the per-key keys at a revision M, writes them as a new
// generation folding R = M, and switches snap/current to it in one fenced
// transaction, conditioned on its absence. The per-key keys are removed
// after (cleanKeys); a node that finds both layouts trusts snap/current.
func (l *SessionLog) migrate(ctx context.Context, node string, epoch ha.Epoch) error {
	recs, m, err := l.s.LoadSessions(ctx)
	if err != nil {
		return err
	}
	byKey := make(map[string]ha.SessionRecord, len(recs))
	for _, r := range recs {
		byKey[r.Key] = r
	}
	gens, err := l.listGens(ctx, m)
	if err != nil {
		return err
	}
	gen := uint64(1)
	for _, g := range gens {
		gen = max(gen, g+1) // an earlier, unfinished attempt's orphans
	}
	l.hook("migrate-read")
	meta, err := l.writeGen(ctx, node, epoch, gen, m, byKey)
	if err != nil {
		return fmt.Errorf("migrate the session store to the packed layout: %w", err)
	}
	l.hook("migrate-written")
	if err := l.switchTo(ctx, node, epoch, 0, meta, gens); err != nil {
		return fmt.Errorf("migrate the session store to the packed layout: %w", err)
	}
	l.opts.Log.Info("sessions: migrated to the packed layout", "keys", meta.Keys, "bytes", meta.Bytes, "epoch", epoch)
	return nil
}

// cleanKeys removes, in the background, the per-key keys a migration
// leaves behind, in fenced transactions (each a range of at most
// migrateRange keys): a deposed active removes nothing.
func (l *SessionLog) cleanKeys(node string, epoch ha.Epoch) {
	l.mu.Lock()
	if l.cleaning {
		l.mu.Unlock()
		return
	}
	l.cleaning = true
	l.mu.Unlock()
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		err := l.removeKeys(ctx, node, epoch)
		l.mu.Lock()
		l.cleaning = false
		if err != nil {
			l.lastErr = err
		}
		l.mu.Unlock()
		if err != nil {
			l.opts.Log.Warn("sessions: removing the per-key layout's keys stopped", "epoch", epoch, "err", err)
		}
	}()
}

func (l *SessionLog) removeKeys(ctx context.Context, node string, epoch ha.Epoch) error {
	p := l.s.sessPrefix()
	end := clientv3.GetPrefixRangeEnd(p)
	for {
		resp, err := l.s.cli.Get(ctx, p, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(l.rangeKeys))
		if err != nil {
			return fmt.Errorf("list the per-key session keys: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		first, last := string(resp.Kvs[0].Key), string(resp.Kvs[len(resp.Kvs)-1].Key)
		if err := l.fenced(ctx, node, epoch, nil, clientv3.OpDelete(first, clientv3.WithRange(last+"\x00"))); err != nil {
			return fmt.Errorf("remove %d per-key session keys: %w", len(resp.Kvs), err)
		}
		l.hook("keys-deleted")
	}
}

// WatchSessions calls fn with the changes after rev: in the packed layout,
// each log entry as one batch; in the per-key layout, each change of a key,
// until snap/current appears (a migration): then it returns an error before
// any later change, so that the caller loads the packed layout (the
// migration's deletes of per-key keys come after the switch).
func (l *SessionLog) WatchSessions(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	if l.getLayout() == layoutKeys {
		return l.watchKeys(ctx, rev, fn)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range l.s.cli.Watch(wctx, l.logPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch the session store: %w", err)
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				l.mu.Lock()
				l.delEntLocked(key)
				l.mu.Unlock()
				continue
			}
			recs, err := decodeBatch(ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.addEntLocked(key, logEnt{rev: ev.Kv.ModRevision, bytes: int64(len(ev.Kv.Value))})
			l.mu.Unlock()
			if len(recs) > 0 {
				fn(recs)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("the watch of the session store closed")
}

// ErrLayoutChanged ends a watch of the per-key layout when the packed
// layout appears: the caller loads again.
var ErrLayoutChanged = errors.New("the session store moved to the packed layout; loading it again")

// watchKeys is the per-key layout's watch, on one range that also holds
// snap/current: etcd delivers one watch's events in revision order, so the
// migration's switch arrives before its deletes. (Two watches would not be
// ordered with each other.) The range starts at snap/current and ends past
// the per-key prefix; keys of other clusters in between are skipped.
func (l *SessionLog) watchKeys(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	cur, p := l.currentKey(), l.s.sessPrefix()
	if cur >= p {
		return fmt.Errorf("session key prefixes out of order: %q, %q", cur, p) // cannot happen: '-' < '/'
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range l.s.cli.Watch(wctx, cur, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch the session store: %w", err)
		}
		recs := make([]ha.SessionRecord, 0, len(wr.Events))
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			if k == cur {
				if len(recs) > 0 {
					fn(recs)
				}
				return ErrLayoutChanged
			}
			if !strings.HasPrefix(k, p) {
				continue
			}
			r, err := sessionEvent(strings.TrimPrefix(k, p), ev)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		if len(recs) > 0 {
			fn(recs)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("the watch of the session store closed")
}

var errPackedAA = errors.New("the packed session layout is for active-passive; active-active keeps one key per session")

// CommitSessionsIf is active-active's: not in this layout.
func (l *SessionLog) CommitSessionsIf(context.Context, []ha.SessionRecord, map[string]int64) (int64, bool, error) {
	return 0, false, errPackedAA
}

// GetSessions is active-active's: not in this layout.
func (l *SessionLog) GetSessions(context.Context, []string) ([]ha.SessionRecord, error) {
	return nil, errPackedAA
}

// Stats reports the layout in use and the log's and snapshot's sizes, as
// this node last saw them.
func (l *SessionLog) Stats() ha.SessionLogStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := ha.SessionLogStats{Layout: l.layout, Compactions: l.compactions}
	if l.layout != layoutPacked {
		return st
	}
	st.LogEntries, st.LogBytes = len(l.logEnts), l.logBytes
	st.SnapshotKeys, st.SnapshotBytes, st.SnapshotAt = l.snap.Keys, l.snap.Bytes, l.snap.At
	return st
}

var (
	_ ha.SessionData         = (*SessionLog)(nil)
	_ ha.SessionActiveLoader = (*SessionLog)(nil)
)
