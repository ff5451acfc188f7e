package sessions

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
