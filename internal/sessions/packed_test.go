package sessions

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestPackedLayoutOnEtcd: the session store on etcd's packed layout, end
// to end over RESP. Data written in the per-key layout (Ready false) is
// migrated by the next active's load; the active compacts by itself while
// clients write; after a failover the new active has every acknowledged
// write, and the old one, now a standby, follows it.
func TestPackedLayoutOnEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t)
	cluster := storetest.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := false
	open := func() (*etcdstore.Store, *etcdstore.SessionLog) {
		s, err := etcdstore.Dial(cluster, []string{srv.Addr}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if _, err := s.NewSession(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return s, s.PackedSessions(etcdstore.PackedOptions{Ready: func() bool { return ready }, CompactBytes: 4096})
	}
	sa, la := open()
	sb, lb := open()
	a, b := startNode(t, la, "a"), startNode(t, lb, "b")
	ca, cb := dial(t, a.addr), dial(t, b.addr)
	promote := func(s *etcdstore.Store, n *node, name string) {
		ep, err := s.Campaign(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		n.epoch.Store(int64(ep))
		n.active.Store(true)
	}

	// One key per session while not every node reads the packed layout.
	promote(sa, a, "a")
	eventually(t, "a takes writes", func() bool { return ca.do("SET", "old0", "v") == "+OK\r\n" })
	for i := 1; i < 50; i++ {
		if r := ca.do("SET", fmt.Sprintf("old%d", i), "v"); r != "+OK\r\n" {
			t.Fatalf("SET: %q", r)
		}
	}
	if st := la.Stats(); st.Layout != "keys" {
		t.Fatalf("a's layout with Ready false: %+v", st)
	}
	eventually(t, "b follows a", func() bool { return cb.do("GET", "old49") == "$1\r\nv\r\n" })

	// Every node reads it now: b's load as the next active migrates.
	ready = true
	epA := ha.Epoch(a.epoch.Load())
	if err := sa.Resign(ctx, "a", epA); err != nil {
		t.Fatal(err)
	}
	a.active.Store(false)
	promote(sb, b, "b")
	eventually(t, "b takes writes", func() bool { return cb.do("SET", "new0", "v") == "+OK\r\n" })
	if st := lb.Stats(); st.Layout != "packed" || st.SnapshotKeys != 50 {
		t.Fatalf("b's layout after its load: %+v", st)
	}
	val := strings.Repeat("x", 100)
	for i := 0; i < 300; i++ {
		if r := cb.do("SET", fmt.Sprintf("new%d", i), val); r != "+OK\r\n" {
			t.Fatalf("SET: %q", r)
		}
		if i%10 == 0 {
			if r := cb.do("DEL", fmt.Sprintf("old%d", i/10)); r != ":1\r\n" {
				t.Fatalf("DEL: %q", r)
			}
		}
	}
	eventually(t, "b compacts the log", func() bool { return lb.Stats().Compactions > 0 })
	eventually(t, "a follows b across the migration", func() bool {
		return ca.do("GET", "new299") == fmt.Sprintf("$100\r\n%s\r\n", val) && ca.do("EXISTS", "old0") == ":0\r\n"
	})
	if st := la.Stats(); st.Layout != "packed" {
		t.Fatalf("a's layout as a standby after the migration: %+v", st)
	}

	// Failover back to a: every acknowledged write is there.
	if err := sb.Resign(ctx, "b", ha.Epoch(b.epoch.Load())); err != nil {
		t.Fatal(err)
	}
	b.active.Store(false)
	promote(sa, a, "a")
	eventually(t, "a takes writes again", func() bool { return ca.do("SET", "last", "v") == "+OK\r\n" })
	if r := ca.do("DBSIZE"); r != fmt.Sprintf(":%d\r\n", 50-30+300+1) {
		t.Fatalf("DBSIZE on the new active: %q", r)
	}
	for i := 0; i < 300; i++ {
		if r := ca.do("GET", fmt.Sprintf("new%d", i)); r != fmt.Sprintf("$100\r\n%s\r\n", val) {
			t.Fatalf("new%d on the new active: %q", i, r)
		}
	}
	for i := 0; i < 50; i++ {
		want := "$1\r\nv\r\n"
		if i < 30 { // deleted while b was active
			want = "$-1\r\n"
		}
		if r := ca.do("GET", fmt.Sprintf("old%d", i)); r != want {
			t.Fatalf("old%d on the new active: %q, want %q", i, r, want)
		}
	}
	eventually(t, "b follows a", func() bool { return cb.do("GET", "last") == "$1\r\nv\r\n" })
}

// TestOversizedCommandOnEtcd: a write command whose changes cannot fit one
// etcd request (1.5 MiB by default) is refused at once, changing nothing,
// and the others' writes go on; the largest command allowed (keys of
// MaxKeyBytes, values up to commandBytes in all) does commit, in both
// layouts. Before the check, MSET of two 1 MiB values was retried for
// 2.5 s and then failed every client's pending writes.
func TestOversizedCommandOnEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t)
	cluster := storetest.Cluster(t)
	for _, packed := range []bool{false, true} {
		t.Run(fmt.Sprint("packed=", packed), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, l, c := activeOnEtcd(ctx, t, srv.Addr, fmt.Sprint(cluster, packed), packed)

			mib := strings.Repeat("v", 1<<20)
			key := func(c byte) string { return strings.Repeat(string(c), MaxKeyBytes) }
			start := time.Now()
			got := c.do("MSET", "a", mib, "b", mib)
			if !strings.HasPrefix(got, fmt.Sprintf("-ERR value too large for the store's request limit (%d bytes)", commandBytes)) {
				t.Fatalf("MSET of two 1 MiB values: %q", got)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("refused after %v; want at once", took)
			}
			got = c.do("SET", key('k')+"k", "v")
			if !strings.HasPrefix(got, fmt.Sprintf("-ERR key of %d bytes is over haven's key limit (%d bytes)", MaxKeyBytes+1, MaxKeyBytes)) {
				t.Fatalf("SET of a long key: %q", got)
			}
			for _, reason := range []string{"too_large", "key_too_long"} {
				if v := testutil.ToFloat64(n.srv.metrics.refused.WithLabelValues(reason)); v != 1 {
					t.Fatalf("haven_sessions_refused_total{reason=%q} = %v, want 1", reason, v)
				}
			}
			if got := c.do("INFO", "memory"); !strings.Contains(got, fmt.Sprintf("haven_max_key_bytes:%d\r\nhaven_max_command_bytes:%d\r\n", MaxKeyBytes, commandBytes)) {
				t.Fatalf("INFO memory: %q", got)
			}
			if got := c.do("EXISTS", "a", "b", key('k')+"k"); got != ":0\r\n" {
				t.Fatalf("after the refusals EXISTS says %q", got)
			}
			// The largest allowed: a value of max_value_bytes with the
			// longest key, and two keys whose cost is commandBytes exactly.
			if got := c.do("SET", key('k'), mib); got != "+OK\r\n" {
				t.Fatalf("SET of the longest key with a 1 MiB value: %q", got)
			}
			v := strings.Repeat("w", (commandBytes-2*MaxKeyBytes-2*keyOverhead)/2)
			args := [][]byte{[]byte("MSET"), []byte(key('p')), []byte(v), []byte(key('q')), []byte(v)}
			if cost := cmdCost(commandTable()["mset"], args, false); cost != commandBytes {
				t.Fatalf("cost %d, want %d", cost, commandBytes)
			}
			// A key over the limit stored by an earlier version can
			// still be deleted.
			if got := c.do("DEL", key('k')+"k"); got != ":0\r\n" {
				t.Fatalf("DEL of a long key: %q", got)
			}
			if got := c.do("MSET", key('p'), v, key('q'), v); got != "+OK\r\n" {
				t.Fatalf("MSET of cost commandBytes: %q", got)
			}
			if got := c.do("SET", "y", "2"); got != "+OK\r\n" {
				t.Fatalf("SET after: %q", got)
			}
			// In the store: a load sees them all.
			recs, _, err := l.LoadSessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]int{}
			for _, r := range recs {
				have[r.Key] = len(r.Value)
			}
			if have[key('k')] != 1<<20 || have[key('p')] != len(v) || have[key('q')] != len(v) || have["y"] != 1 {
				t.Fatalf("stored: %d records", len(recs))
			}
		})
	}
}

// TestSweepOfManyKeysOnEtcd: when more keys expire at once than one etcd
// transaction takes (128 operations), the active's sweep deletes them all
// in the store. Its deletions went as one command, so one transaction of
// up to sweepLimit operations, which etcd refused again after every reload.
func TestSweepOfManyKeysOnEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, l, c := activeOnEtcd(ctx, t, srv.Addr, storetest.Cluster(t), false) // per key: 128 operations a transaction
	for i := range 3 * batchOps {
		if got := c.do("SET", fmt.Sprint("k", i), "v", "PX", "300"); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
	}
	eventually(t, "the expired keys deleted in the store", func() bool {
		recs, _, err := l.LoadSessions(ctx)
		return err == nil && len(recs) == 1
	})
}

// activeOnEtcd dials the etcd at addr for cluster and starts node "a" on
// its session store, in the packed layout if packed (else one key per
// session), as the active; it returns the node, its store and a client
// that has seen it take writes.
func activeOnEtcd(ctx context.Context, t *testing.T, addr, cluster string, packed bool) (*node, *etcdstore.SessionLog, *rawClient) {
	t.Helper()
	s, err := etcdstore.Dial(cluster, []string{addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.NewSession(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l := s.PackedSessions(etcdstore.PackedOptions{Ready: func() bool { return packed }})
	n := startNode(t, l, "a")
	ep, err := s.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	n.epoch.Store(int64(ep))
	n.active.Store(true)
	c := dial(t, n.addr)
	eventually(t, "a takes writes", func() bool { return c.do("SET", "x", "1") == "+OK\r\n" })
	return n, l, c
}
