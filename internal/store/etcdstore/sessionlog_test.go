package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// The packed layout's tests: two nodes a and b on one real etcd, fenced
// by the leader key as the agents are; failovers and crashes injected
// between the steps of a compaction and of a migration (SessionLog.hook);
// every history checked for linearizability with porcupine (a register per
// key: no acknowledged write lost, no deleted key back).

type regIn struct {
	write      bool
	key, value string // value "": absent (deleted)
}

var regModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regIn).key
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regIn)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regIn)
		if in.write {
			return fmt.Sprintf("write(%s, %q)", in.key, in.value)
		}
		return fmt.Sprintf("read(%s) → %q", in.key, output)
	},
}

type packedEnv struct {
	t     *testing.T
	ctx   context.Context
	addr  string
	clu   string
	start time.Time

	mu   sync.Mutex
	hist []porcupine.Operation
	keys map[string]bool
}

func newPackedEnv(t *testing.T, addr string) *packedEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &packedEnv{t: t, ctx: ctx, addr: addr, clu: storetest.Cluster(t), start: time.Now(), keys: map[string]bool{}}
}

// pnode is one node: its store connection, its session in etcd, its view
// of the data in the packed layout, and its epoch when it is the active.
type pnode struct {
	e     *packedEnv
	name  string
	s     *Store
	l     *SessionLog
	epoch ha.Epoch
}

func (e *packedEnv) node(name string, ready bool) *pnode {
	s, err := Dial(e.clu, []string{e.addr}, 2*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	if _, err := s.NewSession(e.ctx, 10*time.Second); err != nil {
		e.t.Fatal(err)
	}
	// Compaction only when the test asks (CompactBytes out of reach).
	l := s.PackedSessions(PackedOptions{Ready: func() bool { return ready }, CompactBytes: 1 << 40})
	e.t.Cleanup(l.bg.Wait)
	return &pnode{e: e, name: name, s: s, l: l}
}

func (e *packedEnv) now() int64 { return int64(time.Since(e.start)) }

// promote makes n the active (the leader key must be free) and loads as
// the active does; the load is recorded as a read of every key.
func (n *pnode) promote() {
	ep, err := n.s.Campaign(n.e.ctx, n.name)
	if err != nil {
		n.e.t.Fatalf("%s campaigns: %v", n.name, err)
	}
	n.epoch = ep
	call := n.e.now()
	recs, _, err := n.l.LoadSessionsAsActive(n.e.ctx, n.name, ep)
	if err != nil {
		n.e.t.Fatalf("%s loads as the active: %v", n.name, err)
	}
	n.e.recordLoad(call, recs)
}

// resign ends n's epoch (a failover: its later writes fail the fence).
func (n *pnode) resign() {
	if err := n.s.Resign(n.e.ctx, n.name, n.epoch); err != nil {
		n.e.t.Fatalf("%s resigns: %v", n.name, err)
	}
}

// load is a standby's load, recorded as a read of every key.
func (n *pnode) load() map[string]string {
	call := n.e.now()
	recs, _, err := n.l.LoadSessions(n.e.ctx)
	if err != nil {
		n.e.t.Fatalf("%s loads: %v", n.name, err)
	}
	return n.e.recordLoad(call, recs)
}

func (e *packedEnv) recordLoad(call int64, recs []ha.SessionRecord) map[string]string {
	ret := e.now()
	got := map[string]string{}
	for _, r := range recs {
		got[r.Key] = string(r.Value)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.keys {
		e.hist = append(e.hist, porcupine.Operation{ClientId: 1, Input: regIn{key: k}, Output: got[k], Call: call, Return: ret})
	}
	return got
}

// write commits key=value (value "": delete) as n at its epoch; it
// reports whether the fence let it through. An acknowledged write goes in
// the history; a refused one changed nothing.
func (n *pnode) write(key, value string) bool {
	r := ha.SessionRecord{Key: key, Value: []byte(value), Deleted: value == ""}
	call := n.e.now()
	_, err := n.l.CommitSessions(n.e.ctx, n.name, n.epoch, []ha.SessionRecord{r})
	if errors.Is(err, ha.ErrNotLeader) {
		return false
	}
	if err != nil {
		n.e.t.Fatalf("%s writes %s: %v", n.name, key, err)
	}
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	n.e.keys[key] = true
	n.e.hist = append(n.e.hist, porcupine.Operation{ClientId: 0, Input: regIn{write: true, key: key, value: value}, Call: call, Return: n.e.now()})
	return true
}

func (e *packedEnv) checkLinearizable() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if res, info := porcupine.CheckOperationsVerbose(regModel, e.hist, 10*time.Second); res != porcupine.Ok {
		_ = info
		e.t.Fatalf("history of %d operations is not linearizable (%s): an acknowledged write lost or a deleted key back", len(e.hist), res)
	}
}

// fill writes n single-record log entries: keys k00..k19 put, then
// overwritten, some deleted; the last entry is a delete.
func (n *pnode) fill(entries int) {
	for i := 0; i < entries; i++ {
		k := fmt.Sprintf("k%02d", i%20)
		v := fmt.Sprintf("v%d", i)
		if i%7 == 3 || i == entries-1 {
			v = ""
		}
		if !n.write(k, v) {
			n.e.t.Fatalf("%s: write %d refused", n.name, i)
		}
	}
}

func (e *packedEnv) count(prefix string) int64 {
	s, err := Dial(e.clu, []string{e.addr}, 2*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.cli.Get(e.ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Count
}

// TestCompactionFailover: a failover (or a crash of the active) at each
// point of a compaction: between steps 1 and 2 ("read"), 2 and 3
// ("written"), 3 and 4 ("switched"), and inside step 4 ("deleted", after
// its first batch). The old active writes beside the compaction up to the
// failover; the deposed active's compaction stops at the fence; the new
// active loads, writes and compacts; a standby loads. The whole history is
// linearizable, and the store ends with one generation and no log entry
// at or below its snapshot's revision.
func TestCompactionFailover(t *testing.T) {
	srv := storetest.StartEtcd(t)
	for _, c := range []struct {
		step  string
		crash bool // the old active stops dead instead of being deposed while it runs
	}{{"read", false}, {"written", false}, {"written", true}, {"switched", false}, {"switched", true}, {"deleted", false}} {
		name := c.step
		if c.crash {
			name += "/crash"
		}
		t.Run(name, func(t *testing.T) {
			e := newPackedEnv(t, srv.Addr)
			a, b := e.node("a", true), e.node("b", true)
			a.promote() // migrates the empty store: generation 1
			a.fill(deleteBatch + 12)
			var b2 *pnode
			var once sync.Once
			cctx, crash := context.WithCancel(e.ctx)
			a.l.hook = func(step string) {
				if step != c.step {
					return
				}
				once.Do(func() {
					// Writes beside the compaction, acknowledged.
					a.write("k01", "beside")
					a.write("k02", "")
					a.write("new", "x")
					if c.crash {
						if c.step == "switched" {
							// A crash leaves any of the folded entries; the newest
							// (a delete) gone and older puts of its key left must
							// not bring that key back.
							e.deleteNewestFolded(a.l)
						}
						crash()
						return
					}
					a.resign()
					if a.write("k03", "deposed") {
						t.Error("the deposed active's write passed the fence")
					}
					b.promote()
					b.write("k04", "from-b")
					b.write("k05", "")
					b2 = b
				})
			}
			err := a.l.Compact(cctx, "a", a.epoch)
			if c.crash {
				if err == nil {
					t.Fatal("the crashed compaction finished")
				}
				a.resign()
				b.promote()
				b.write("k04", "from-b")
				b2 = b
			} else if !errors.Is(err, ha.ErrNotLeader) {
				t.Fatalf("the deposed active's compaction: %v, want ErrNotLeader", err)
			}
			// The new active compacts fully, writes on, and a standby loads.
			if err := b2.l.Compact(e.ctx, "b", b2.epoch); err != nil {
				t.Fatalf("the new active's compaction: %v", err)
			}
			b2.write("k06", "after")
			c := e.node("c", true)
			c.load()
			e.checkLinearizable()
			// One generation left (the orphan and the old one removed), and
			// no folded entry.
			gens, err := c.l.listGens(e.ctx, 0)
			if err != nil || len(gens) != 1 {
				t.Fatalf("generations after the second compaction: %v %v", gens, err)
			}
			st := b2.l.Stats()
			if st.Layout != "packed" || st.LogEntries != 1 || st.Compactions != 1 || st.SnapshotAt == 0 {
				t.Fatalf("stats: %+v", st)
			}
			if n := e.count(c.l.logPrefix()); n != 1 {
				t.Fatalf("%d log entries left, want 1 (the write after the compaction)", n)
			}
		})
	}
}

// deleteNewestFolded deletes, by hand, the newest log entry as of now
// (all of them are at or below the revision the compaction folded).
func (e *packedEnv) deleteNewestFolded(l *SessionLog) {
	resp, err := l.s.cli.Get(e.ctx, l.logPrefix(), clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) == 0 {
		e.t.Fatalf("log: %v", err)
	}
	kvs := resp.Kvs
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].ModRevision < kvs[j].ModRevision })
	// The three writes beside the compaction come last; the one before
	// them is fill's final delete.
	k := kvs[len(kvs)-4]
	recs, err := decodeBatch(k.Value, 0)
	if err != nil || len(recs) != 1 || !recs[0].Deleted {
		e.t.Fatalf("newest folded entry: %+v %v", recs, err)
	}
	if _, err := l.s.cli.Delete(e.ctx, string(k.Key)); err != nil {
		e.t.Fatal(err)
	}
}

// TestMigration: one key per session to the packed layout. With Ready
// false the active keeps one key per session. A standby watching the
// per-key layout stops at the switch with every key still there (before
// the migration's deletes reach it). A migration that crashes after
// writing its chunks leaves an orphan generation and the per-key layout in
// force; the next one removes the orphan. A failover in the middle of the
// per-key deletes: the deposed active's next delete fails the fence and
// the new active finishes them. The history is linearizable throughout.
func TestMigration(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	a := e.node("a", false)
	a.promote()
	if st := a.l.Stats(); st.Layout != "keys" {
		t.Fatalf("stats with Ready false: %+v", st)
	}
	const keys = 120
	for i := 0; i < keys; i++ {
		a.write(fmt.Sprintf("s%03d", i), fmt.Sprintf("v%d", i))
	}
	a.write("s000", "")
	if n := e.count(a.l.snapPrefix()) + e.count(a.l.logPrefix()); n != 0 {
		t.Fatalf("%d keys in the packed layout while Ready is false", n)
	}
	if n := e.count(a.s.sessPrefix()); n != keys-1 {
		t.Fatalf("%d per-key keys, want %d", n, keys-1)
	}

	// A standby follows the per-key layout.
	sb := e.node("standby", false)
	want := sb.load()
	if sb.l.Stats().Layout != "keys" {
		t.Fatalf("standby stats: %+v", sb.l.Stats())
	}
	seen := map[string]string{}
	for k, v := range want {
		seen[k] = v
	}
	var smu sync.Mutex
	wctx, wcancel := context.WithCancel(e.ctx)
	defer wcancel()
	_, rev, _ := sb.l.LoadSessions(e.ctx)
	werr := make(chan error, 1)
	go func() {
		werr <- sb.l.WatchSessions(wctx, rev, func(recs []ha.SessionRecord) {
			smu.Lock()
			defer smu.Unlock()
			for _, r := range recs {
				if r.Deleted {
					delete(seen, r.Key)
				} else {
					seen[r.Key] = string(r.Value)
				}
			}
		})
	}()

	// b migrates but crashes after writing its chunks: an orphan.
	a.resign()
	b := e.node("b", true)
	ep, err := b.s.Campaign(e.ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	b.epoch = ep
	bctx, crash := context.WithCancel(e.ctx)
	b.l.hook = func(step string) {
		if step == "migrate-written" {
			crash()
		}
	}
	if _, _, err := b.l.LoadSessionsAsActive(bctx, "b", ep); err == nil {
		t.Fatal("the crashed migration loaded")
	}
	if gens, _ := b.l.listGens(e.ctx, 0); len(gens) != 1 || e.count(b.l.currentKey()) != 0 {
		t.Fatalf("after a crash before the switch: generations %v, snap/current %d", gens, e.count(b.l.currentKey()))
	}
	b.resign()

	// c migrates; a failover after its first range of per-key deletes.
	c := e.node("c", true)
	c.l.rangeKeys = 50
	at, goOn := make(chan struct{}), make(chan struct{})
	var once, release sync.Once
	t.Cleanup(func() { release.Do(func() { close(goOn) }) }) // runs before the wait for c's clean-up
	c.l.hook = func(step string) {
		if step == "keys-deleted" {
			once.Do(func() { close(at); <-goOn })
		}
	}
	c.promote()
	<-at
	// The standby stopped at the switch, before any delete, with every key.
	select {
	case err := <-werr:
		if !errors.Is(err, ErrLayoutChanged) {
			t.Fatalf("the standby's watch ended with %v, want ErrLayoutChanged", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the standby's watch of the per-key layout did not stop at the migration")
	}
	smu.Lock()
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("the standby's copy when its watch stopped: %d keys, want %d", len(seen), len(want))
	}
	smu.Unlock()
	c.resign()
	d := e.node("d", false) // a node that finds both layouts trusts snap/current
	// d's clean-up waits after its first range until c has tried its next
	// one: had d removed every key first, c would find nothing left to
	// delete and write nothing (CI saw that race: lastErr nil).
	d.l.rangeKeys = 50
	cTried := make(chan struct{})
	var dOnce sync.Once
	d.l.hook = func(step string) {
		if step == "keys-deleted" {
			dOnce.Do(func() { <-cTried })
		}
	}
	d.promote()
	release.Do(func() { close(goOn) })
	c.l.bg.Wait()
	close(cTried)
	if !errors.Is(c.l.lastErr, ha.ErrNotLeader) {
		t.Fatalf("the deposed active's per-key deletes: %v, want ErrNotLeader", c.l.lastErr)
	}
	d.l.bg.Wait()
	if n := e.count(a.s.sessPrefix()); n != 0 {
		t.Fatalf("%d per-key keys left after the new active's clean-up (%v)", n, d.l.lastErr)
	}
	if gens, _ := d.l.listGens(e.ctx, 0); len(gens) != 1 {
		t.Fatalf("generations: %v (the orphan stays)", gens)
	}
	// Active-active's load (one key per session) refuses the packed store.
	if _, _, err := d.s.LoadSessions(e.ctx); !errors.Is(err, ErrSessionsPacked) {
		t.Fatalf("a per-key load of the packed store: %v, want ErrSessionsPacked", err)
	}
	d.write("s001", "after")
	d.write("s002", "")
	if got := sb.load(); len(got) != keys-2 || sb.l.Stats().Layout != "packed" {
		t.Fatalf("the standby reloads: %d keys, %+v", len(got), sb.l.Stats())
	}
	e.checkLinearizable()
}

// TestDeposedActiveCannotCompact: once another node is the active, the old
// one's compaction and migration change nothing (the fence), and the
// active compacts by itself once the log outgrows CompactBytes.
func TestDeposedActiveCannotCompact(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	a, b := e.node("a", true), e.node("b", true)
	a.promote()
	a.fill(30)
	a.resign()
	b.promote()
	cur, err := a.s.cli.Get(e.ctx, a.l.currentKey())
	if err != nil || len(cur.Kvs) != 1 {
		t.Fatal(cur, err)
	}
	if err := a.l.Compact(e.ctx, "a", a.epoch); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("the deposed active's compaction: %v, want ErrNotLeader", err)
	}
	after, err := a.s.cli.Get(e.ctx, a.l.prefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range after.Kvs {
		if kv.ModRevision > cur.Header.Revision {
			t.Fatalf("the deposed active wrote %s", kv.Key)
		}
	}
	// Nor can a deposed node migrate (a fresh cluster in the per-key layout).
	e2 := newPackedEnv(t, srv.Addr)
	x, y := e2.node("x", false), e2.node("y", true)
	x.promote()
	x.write("k", "v")
	x.resign()
	ep, err := y.s.Campaign(e2.ctx, "y")
	if err != nil {
		t.Fatal(err)
	}
	if err := y.s.Resign(e2.ctx, "y", ep); err != nil {
		t.Fatal(err)
	}
	if _, _, err := y.l.LoadSessionsAsActive(e2.ctx, "y", ep); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("a deposed node's migration: %v, want ErrNotLeader", err)
	}
	if n := e2.count(y.l.snapPrefix()) + e2.count(y.l.logPrefix()); n != 0 {
		t.Fatalf("the deposed node's migration left %d keys", n)
	}
	// The active compacts on its own once the log passes CompactBytes.
	b.l.opts.CompactBytes = 200
	b.fill(60)
	deadline := time.Now().Add(10 * time.Second)
	for b.l.Stats().Compactions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction: %+v (%v)", b.l.Stats(), b.l.lastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.l.bg.Wait()
	e.node("c", false).load()
	e.checkLinearizable()
}
