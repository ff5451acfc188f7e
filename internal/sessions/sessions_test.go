package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/resp"
)

func TestExpiryWithFakeClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	_, addr := startLocal(t, Options{Clock: clk})
	c := dial(t, addr)
	expect := func(want string, args ...string) {
		t.Helper()
		if got := c.do(args...); got != want {
			t.Fatalf("%v: got %q, want %q", args, got, want)
		}
	}
	expect("+OK\r\n", "SET", "k", "v", "PX", "100")
	clk.Advance(99 * time.Millisecond)
	expect("$1\r\nv\r\n", "GET", "k")
	expect(":1\r\n", "PTTL", "k")
	clk.Advance(time.Millisecond)
	expect("$-1\r\n", "GET", "k")
	expect(":-2\r\n", "TTL", "k")
	expect(":0\r\n", "EXISTS", "k")
	expect("+OK\r\n", "SET", "k", "v", "EXAT", "1700000001")
	expect(":1\r\n", "TTL", "k")
	clk.Advance(time.Second)
	expect("$-1\r\n", "GET", "k")
	// INCR keeps the TTL, as Redis does.
	expect("+OK\r\n", "SET", "n", "1", "EX", "10")
	expect(":2\r\n", "INCR", "n")
	expect(":10\r\n", "TTL", "n")
}

func TestLimits(t *testing.T) {
	_, addr := startLocal(t, Options{MaxKeys: 2, MaxValueBytes: 8})
	c := dial(t, addr)
	expect := func(want string, args ...string) {
		t.Helper()
		if got := c.do(args...); got != want {
			t.Fatalf("%v: got %q, want %q", args, got, want)
		}
	}
	expect("+OK\r\n", "SET", "a", "1")
	expect("+OK\r\n", "SET", "b", "1")
	expect("-"+errOOM+"\r\n", "SET", "c", "1")
	expect("+OK\r\n", "SET", "a", "2") // replacing is fine
	expect("-"+errOOM+"\r\n", "MSET", "a", "1", "c", "1")
	expect(":1\r\n", "DEL", "b")
	expect("+OK\r\n", "SET", "c", "1")
	// Over max_value_bytes: dropped by the reader, the connection stays.
	got := c.do("SET", "a", "123456789")
	if !strings.HasPrefix(got, "-ERR an argument is longer than max_value_bytes (8)") {
		t.Fatalf("oversize value: %q", got)
	}
	expect("$1\r\n2\r\n", "GET", "a")
	// More keys than one store transaction takes: refused, nothing changed.
	mset, del := []string{"MSET"}, []string{"DEL"}
	for i := range batchOps + 1 {
		mset = append(mset, fmt.Sprint("k", i), "v")
		del = append(del, fmt.Sprint("k", i))
	}
	want := fmt.Sprintf("-ERR too many keys in one command (%d; at most %d): send them in several commands\r\n", batchOps+1, batchOps)
	expect(want, mset...)
	expect(want, del...)
	// Active-active compares every key and the store's layout: one less.
	_, aaAddr := startLocal(t, Options{ActiveActive: true})
	if got, want := dial(t, aaAddr).do(mset[:1+2*batchOps]...), fmt.Sprintf("-ERR too many keys in one command (%d; at most %d): send them in several commands\r\n", batchOps, batchOps-1); got != want {
		t.Fatalf("active-active MSET of %d keys: %q", batchOps, got)
	}
	// and counts the keys twice in a command's size: what fits
	// active-passive may not.
	k, v := strings.Repeat("k", MaxKeyBytes), strings.Repeat("v", (commandBytes-2*MaxKeyBytes-2*keyOverhead)/2)
	if got := dial(t, aaAddr).do("MSET", k[1:]+"1", v, k[1:]+"2", v); !strings.HasPrefix(got, fmt.Sprintf("-ERR value too large for the store's request limit (%d bytes): this command's keys and values come to %d;", commandBytes, commandBytes+2*MaxKeyBytes)) {
		t.Fatalf("active-active MSET over the limit: %q", got)
	}
	expect(":1\r\n", "DEL", "a", "k1")
	expect("$-1\r\n", "GET", "a")
	expect("+PONG\r\n", "PING")
}

func TestPipelineAndInline(t *testing.T) {
	_, addr := startLocal(t, Options{})
	c := dial(t, addr)
	var b []byte
	for i := 0; i < 100; i++ {
		b = append(b, encode("SET", fmt.Sprint("k", i), fmt.Sprint(i))...)
	}
	b = append(b, "GET k42\r\nQUIT\r\n"...)
	if _, err := c.nc.Write(b); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if r := c.reply(); r != "+OK\r\n" {
			t.Fatalf("reply %d: %q", i, r)
		}
	}
	if r := c.reply(); r != "$2\r\n42\r\n" {
		t.Fatalf("GET: %q", r)
	}
	if r := c.reply(); r != "+OK\r\n" {
		t.Fatalf("QUIT: %q", r)
	}
}

func TestScanVisitsEveryKey(t *testing.T) {
	_, addr := startLocal(t, Options{})
	c := dial(t, addr)
	for i := 0; i < 500; i++ {
		c.do("SET", fmt.Sprint("sess:", i), "x")
	}
	c.do("SET", "other", "x")
	seen := map[string]bool{}
	cursor := "0"
	for n := 0; ; n++ {
		if n > 1000 {
			t.Fatal("SCAN does not end")
		}
		r := c.do("SCAN", cursor, "MATCH", "sess:*", "COUNT", "7")
		lines := strings.Split(r, "\r\n")
		cursor = lines[2]
		for i := 5; i+1 < len(lines); i += 2 {
			seen[lines[i]] = true
		}
		if cursor == "0" {
			break
		}
	}
	if len(seen) != 500 || seen["other"] {
		t.Fatalf("saw %d keys (other: %v), want the 500 sess: keys", len(seen), seen["other"])
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"[ab]x", "bx", true}, {"[^ab]x", "bx", false}, {"[a-c]", "b", true}, {`a\*`, "a*", true},
		{`a\*`, "ab", false}, {"sess:*:x", "sess:1:x", true}, {"*x", "abc", false},
	} {
		if got := Match([]byte(c.p), []byte(c.s)); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// memBackend is a small real ha.SessionData: a map, a revision, a fence on
// the leader, a log for watchers.
type memBackend struct {
	mu      sync.Mutex
	data    map[string]ha.SessionRecord
	rev     int64
	leader  ha.Leader
	log     [][]ha.SessionRecord // log[i] committed at revision i+1
	changed chan struct{}
	fail    error // the next commits fail with it
	sizes   []int
	delay   time.Duration // each fenced commit takes this long (a store's round trip)
}

func newMemBackend() *memBackend {
	return &memBackend{data: map[string]ha.SessionRecord{}, changed: make(chan struct{})}
}

func (m *memBackend) LoadSessions(ctx context.Context) ([]ha.SessionRecord, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ha.SessionRecord
	for _, r := range m.data {
		out = append(out, r)
	}
	return out, m.rev, nil
}

func (m *memBackend) WatchSessions(ctx context.Context, rev int64, fn func([]ha.SessionRecord)) error {
	for {
		m.mu.Lock()
		pending := m.log[rev:]
		ch := m.changed
		m.mu.Unlock()
		for _, recs := range pending {
			fn(recs)
			rev++
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *memBackend) CommitSessions(ctx context.Context, node string, epoch ha.Epoch, recs []ha.SessionRecord) (int64, error) {
	m.mu.Lock()
	delay := m.delay
	m.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	if m.leader.Node != node || m.leader.Epoch != epoch {
		return 0, ha.ErrNotLeader
	}
	return m.applyLocked(recs), nil
}

func (m *memBackend) applyLocked(recs []ha.SessionRecord) int64 {
	m.rev++
	recs = append([]ha.SessionRecord(nil), recs...)
	for i := range recs {
		recs[i].Rev = m.rev
	}
	for _, r := range recs {
		if r.Deleted {
			delete(m.data, r.Key)
		} else {
			m.data[r.Key] = r
		}
	}
	m.sizes = append(m.sizes, len(recs))
	m.log = append(m.log, recs)
	close(m.changed)
	m.changed = make(chan struct{})
	return m.rev
}

func (m *memBackend) CommitSessionsIf(ctx context.Context, recs []ha.SessionRecord, expect map[string]int64) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, false, m.fail
	}
	for k, rev := range expect {
		if m.data[k].Rev != rev {
			return m.rev, false, nil
		}
	}
	if len(recs) == 0 {
		return m.rev, true, nil
	}
	return m.applyLocked(recs), true, nil
}

func (m *memBackend) GetSessions(ctx context.Context, keys []string) ([]ha.SessionRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ha.SessionRecord, len(keys))
	for i, k := range keys {
		r, ok := m.data[k]
		if !ok {
			r = ha.SessionRecord{Key: k, Deleted: true, Rev: m.rev}
		}
		out[i] = r
	}
	return out, nil
}

// node is one replicated server on a memBackend.
type node struct {
	srv    *Server
	addr   string
	active atomic.Bool
	epoch  atomic.Int64
}

func startNode(t *testing.T, b ha.SessionData, name string) *node {
	t.Helper()
	n := &node{}
	n.srv = New(Options{Node: name, Backend: b, Role: func() (ha.Epoch, bool) {
		return ha.Epoch(n.epoch.Load()), n.active.Load()
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.srv.Serve(ctx, ln) }()
	go func() { defer wg.Done(); n.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return n
}

func (m *memBackend) promote(n *node, name string, epoch ha.Epoch) {
	m.mu.Lock()
	m.leader = ha.Leader{Node: name, Epoch: epoch}
	m.mu.Unlock()
	n.epoch.Store(int64(epoch))
	n.active.Store(true)
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	b := newMemBackend()
	a, s := startNode(t, b, "a"), startNode(t, b, "b")
	b.promote(a, "a", 10)
	ca, cs := dial(t, a.addr), dial(t, s.addr)
	eventually(t, "a takes writes", func() bool { return ca.do("SET", "k", "v1") == "+OK\r\n" })
	if r := cs.do("SET", "k", "x"); r != "-"+errReadOnly+"\r\n" {
		t.Fatalf("standby write: %q", r)
	}
	eventually(t, "the standby sees the write", func() bool { return cs.do("GET", "k") == "$2\r\nv1\r\n" })

	// a loses the role in the store before it knows: its write fails
	// the fence and the client is told so; nothing is half-applied.
	b.mu.Lock()
	b.leader = ha.Leader{Node: "b", Epoch: 20}
	b.mu.Unlock()
	if r := ca.do("SET", "k", "lost"); !strings.HasPrefix(r, "-ERR the write was not confirmed") {
		t.Fatalf("fenced write: %q", r)
	}
	a.active.Store(false)
	s.epoch.Store(20)
	s.active.Store(true)
	eventually(t, "b takes writes", func() bool { return cs.do("SET", "k2", "v2") == "+OK\r\n" })
	if r := cs.do("GET", "k"); r != "$2\r\nv1\r\n" {
		t.Fatalf("after failover: %q", r)
	}
	eventually(t, "a follows b", func() bool { return ca.do("GET", "k2") == "$2\r\nv2\r\n" })
	if r := ca.do("GET", "k"); r != "$2\r\nv1\r\n" {
		t.Fatalf("the old active still shows a refused write: %q", r)
	}
}

func TestStoreErrorFailsWaitingReplies(t *testing.T) {
	b := newMemBackend()
	a := startNode(t, b, "a")
	b.promote(a, "a", 1)
	c := dial(t, a.addr)
	eventually(t, "writes", func() bool { return c.do("SET", "k", "v") == "+OK\r\n" })
	b.mu.Lock()
	b.fail = errors.New("etcd unreachable")
	b.mu.Unlock()
	if r := c.do("SET", "k", "w"); !strings.HasPrefix(r, "-ERR the write was not confirmed") {
		t.Fatalf("write during a store outage: %q", r)
	}
	b.mu.Lock()
	b.fail = nil
	b.mu.Unlock()
	// The copy is reloaded from the store: the refused write is not there.
	eventually(t, "reload", func() bool { return c.do("GET", "k") == "$1\r\nv\r\n" })
}

func TestGroupCommit(t *testing.T) {
	b := newMemBackend()
	a := startNode(t, b, "a")
	b.promote(a, "a", 1)
	c := dial(t, a.addr)
	eventually(t, "writes", func() bool { return c.do("SET", "k", "v") == "+OK\r\n" })
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := dial(t, a.addr)
			for j := 0; j < 50; j++ {
				if r := cc.do("SET", fmt.Sprint("k", i, ":", j), "v"); r != "+OK\r\n" {
					t.Errorf("SET: %q", r)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	commits, keys := len(b.sizes), len(b.data)
	b.mu.Unlock()
	if keys != 1001 {
		t.Fatalf("%d keys in the store, want 1001", keys)
	}
	t.Logf("1001 writes in %d commits", commits)
}

// TestGroupCommitWaitsForTheBatchInFlight: while a commit is in flight,
// the writes of clients that do not pipeline wait and go together in the
// next commit, rather than each few of them starting one of their own
// (every commit costs the store a raft round whatever its size).
func TestGroupCommitWaitsForTheBatchInFlight(t *testing.T) {
	b := newMemBackend()
	b.delay = 30 * time.Millisecond
	a := startNode(t, b, "a")
	b.promote(a, "a", 1)
	c := dial(t, a.addr)
	eventually(t, "writes", func() bool { return c.do("SET", "k", "v") == "+OK\r\n" })
	const clients, each = 24, 10
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := dial(t, a.addr)
			for j := 0; j < each; j++ {
				if r := cc.do("SET", fmt.Sprint("k", i, ":", j), "v"); r != "+OK\r\n" {
					t.Errorf("SET: %q", r)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	commits, keys := len(b.sizes), len(b.data)
	b.mu.Unlock()
	if keys != clients*each+1 {
		t.Fatalf("%d keys in the store, want %d", keys, clients*each+1)
	}
	// Four commits in flight of whatever was queued made batches of about
	// clients/6 keys (4.1 measured); one at a time made them about
	// clients/2 (two cohorts of clients took turns, one waiting for its
	// commit while the other's replies went out and its next writes
	// queued); waiting a little for the released writers (db.hold) makes
	// one cohort of about clients.
	if per := float64(clients*each) / float64(commits-1); per < clients*2/3 {
		t.Fatalf("%d writes of %d clients in %d commits (%.1f keys each): not grouped", clients*each, clients, commits-1, per)
	}
	t.Logf("%d writes of %d clients in %d commits", clients*each, clients, commits-1)
}

func TestFullBatch(t *testing.T) {
	d := newDB(clock.Real{}, false)
	d.reset(nil, true, 1)
	put := func(k string, n int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.begin()
		d.set(k, bytes.Repeat([]byte("v"), n), 0)
	}
	put("a", 10)
	put("b", 10)
	for _, tc := range []struct {
		ops, bytes int
		want       bool
	}{{3, 1 << 20, false}, {2, 1 << 20, true}, {128, 40, true}, {128, 100, false}} {
		if got := d.fullBatch(tc.ops, tc.bytes); got != tc.want {
			t.Errorf("fullBatch(%d, %d) = %v with 2 queued changes of 27 bytes each", tc.ops, tc.bytes, got)
		}
	}
}

// TestHoldWaitsForTheCohort: after a commit, the next one waits until the
// writers it released have come back (as many changes queued as it
// carried plus those queued meanwhile), for at most half the commit's
// time and never more than maxHold; after an idle spell it starts at once.
func TestHoldWaitsForTheCohort(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	d := newDB(clk, false)
	d.reset(nil, true, 1)
	put := func(keys ...string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, k := range keys {
			d.begin()
			d.set(k, []byte("v"), 0)
		}
	}
	if w := d.hold(); w != 0 {
		t.Fatalf("first commit holds %v", w)
	}
	put("a1", "a2", "a3") // cohort A
	b := d.take(128, 1<<20)
	put("b1", "b2") // cohort B queues while A's commit is in flight
	d.done(b, 6*time.Millisecond)
	if w := d.hold(); w != 3*time.Millisecond {
		t.Fatalf("hold %v with 2 of 5 writers back, want half the commit (3ms)", w)
	}
	put("a1", "a2") // A comes back, not whole yet
	clk.Advance(time.Millisecond)
	if w := d.hold(); w != 2*time.Millisecond {
		t.Fatalf("hold %v with 4 of 5 writers back, 1ms later, want 2ms", w)
	}
	put("a3")
	if w := d.hold(); w != 0 {
		t.Fatalf("hold %v with all 5 writers back, want none", w)
	}
	b = d.take(128, 1<<20)
	if len(b.recs) != 5 {
		t.Fatalf("batch of %d keys, want both cohorts (5)", len(b.recs))
	}
	d.done(b, time.Second)
	put("x")
	if w := d.hold(); w != maxHold {
		t.Fatalf("hold %v after a 1s commit, want maxHold (%v)", w, maxHold)
	}
	clk.Advance(maxHold)
	if w := d.hold(); w != 0 {
		t.Fatalf("hold %v once maxHold has passed, want none", w)
	}
}

// TestConcurrentBatchesKeepKeyOrder: batches in flight never share a key,
// a command waits behind an earlier one on the same key, and a reply is
// released only when everything before it is stored.
func TestConcurrentBatchesKeepKeyOrder(t *testing.T) {
	d := newDB(clock.Real{}, false)
	d.reset(nil, true, 1)
	put := func(keys ...string) uint64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.begin()
		for _, k := range keys {
			d.set(k, []byte("v"), 0)
		}
		return d.seq
	}
	keysOf := func(b *batch) string {
		var ks []string
		for _, r := range b.recs {
			ks = append(ks, r.Key)
		}
		return strings.Join(ks, ",")
	}
	put("a")
	put("b")
	b1 := d.take(128, 1<<20)
	if got := keysOf(b1); got != "a,b" {
		t.Fatalf("first batch %q", got)
	}
	s3 := put("a", "e")
	put("c")
	s5 := put("e")
	b2 := d.take(128, 1<<20)
	if got := keysOf(b2); got != "c" {
		t.Fatalf("second batch %q, want c (a is in flight, and e of the last command waits behind the command with a)", got)
	}
	if b := d.take(128, 1<<20); b != nil {
		t.Fatalf("took %q while its keys are in flight", keysOf(b))
	}
	d.done(b2, 0)
	if d.committed != 0 {
		t.Fatalf("committed %d before the first batch", d.committed)
	}
	d.done(b1, 0)
	if d.committed != s3-1 {
		t.Fatalf("committed %d, want %d", d.committed, s3-1)
	}
	b3 := d.take(128, 1<<20)
	if got := keysOf(b3); got != "a,e" {
		t.Fatalf("third batch %q", got)
	}
	d.done(b3, 0)
	if d.committed != s5 {
		t.Fatalf("committed %d, want %d", d.committed, s5)
	}
}

// TestActiveRemovesExpiredKeys: an expired key disappears from the store
// (the active deletes it), and no node returns it after its TTL.
func TestActiveRemovesExpiredKeys(t *testing.T) {
	b := newMemBackend()
	a, s := startNode(t, b, "a"), startNode(t, b, "b")
	b.promote(a, "a", 1)
	ca, cs := dial(t, a.addr), dial(t, s.addr)
	eventually(t, "writes", func() bool { return ca.do("SET", "k", "v", "PX", "300") == "+OK\r\n" })
	set := time.Now()
	eventually(t, "the store drops it", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		_, ok := b.data["k"]
		return !ok
	})
	if time.Since(set) < 300*time.Millisecond {
		t.Fatalf("removed after %s, before its TTL", time.Since(set))
	}
	for _, c := range []*rawClient{ca, cs} {
		if r := c.do("GET", "k"); r != "$-1\r\n" {
			t.Fatalf("after its TTL: %q", r)
		}
	}
}

// TestActiveActive: two nodes write the same counter at once; every
// increment counts once (compare-and-swap), each node reads its own writes.
func TestActiveActive(t *testing.T) {
	b := newMemBackend()
	testActiveActive(t, b, b)
}

// testActiveActive runs two active-active nodes on backends a and b (one
// store, seen through each node's connection).
func testActiveActive(t *testing.T, a, b ha.SessionData) {
	var addrs []string
	for i, backend := range []ha.SessionData{a, b} {
		srv := New(Options{Node: fmt.Sprint("n", i), Backend: backend, ActiveActive: true, Role: func() (ha.Epoch, bool) { return 0, true }})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
		go func() { defer wg.Done(); srv.Run(ctx) }()
		t.Cleanup(func() { cancel(); wg.Wait() })
		addrs = append(addrs, ln.Addr().String())
	}
	ca, cb := dial(t, addrs[0]), dial(t, addrs[1])
	eventually(t, "a takes writes", func() bool { return ca.do("SET", "k", "v") == "+OK\r\n" })
	if r := ca.do("GET", "k"); r != "$1\r\nv\r\n" {
		t.Fatalf("read your write: %q", r)
	}
	eventually(t, "b takes writes", func() bool { return cb.do("SET", "k2", "w") == "+OK\r\n" })
	var wg sync.WaitGroup
	for _, addr := range addrs {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := dial(t, addr)
				for range 30 {
					// A hot key: a node whose compare-and-swap keeps
					// losing says so without applying the increment, and
					// the client tries again, as it would.
					r := c.do("INCR", "n")
					for try := 0; try < 100 && strings.HasPrefix(r, "-ERR too many concurrent writes"); try++ {
						r = c.do("INCR", "n")
					}
					if !strings.HasPrefix(r, ":") {
						t.Errorf("INCR: %q", r)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for i, c := range []*rawClient{ca, cb} {
		eventually(t, fmt.Sprint("node ", i, " reads the counter at 180 after 180 increments from two nodes"), func() bool {
			return c.do("GET", "n") == "$3\r\n180\r\n"
		})
	}
	if r := cb.do("SET", "k", "x", "NX"); r != "$-1\r\n" {
		t.Fatalf("SET NX of a key another node wrote: %q", r)
	}
}

// TestDeposedActiveAnswersNothing: once the node no longer serves as
// active, its copy answers no data command, even before the replication
// loop notices (a process frozen past its lease and resumed).
func TestDeposedActiveAnswersNothing(t *testing.T) {
	var serving atomic.Bool
	serving.Store(true)
	s := New(Options{Backend: newMemBackend(), Role: func() (ha.Epoch, bool) { return 1, serving.Load() }})
	s.db.reset([]ha.SessionRecord{{Key: "k", Value: []byte("v")}}, true, 1) // as runActive does
	get := func() string {
		var b bytes.Buffer
		w := resp.NewWriter(&b)
		s.exec(&conn{authed: true, proto: 2}, [][]byte{[]byte("GET"), []byte("k")}, w)
		w.Flush()
		return b.String()
	}
	if r := get(); r != "$1\r\nv\r\n" {
		t.Fatalf("active: %q", r)
	}
	serving.Store(false)
	if r := get(); r != "-"+errLoading+"\r\n" {
		t.Fatalf("deposed: %q", r)
	}
}
