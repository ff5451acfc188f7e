package etcdstore

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestCompactionCompactsHistory: with HistoryKeep, the active compacts
// etcd's history after its compaction up to the R of its newest earlier
// snapshot switch at least HistoryKeep old, never a younger one; without
// it, never. A standby loads the data intact after.
func TestCompactionCompactsHistory(t *testing.T) {
	srv := storetest.StartEtcd(t)
	e := newPackedEnv(t, srv.Addr)
	a, b := e.node("a", true), e.node("b", true)
	clock := time.Now()
	a.l.now = func() time.Time { return clock }
	a.promote()
	// readable reports whether etcd still has its history at rev.
	readable := func(rev int64) bool {
		t.Helper()
		_, err := a.s.cli.Get(e.ctx, "/x", clientv3.WithRev(rev))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	}
	compact := func() int64 {
		t.Helper()
		a.fill(20)
		if err := a.l.Compact(e.ctx, "a", a.epoch); err != nil {
			t.Fatal(err)
		}
		a.l.mu.Lock()
		defer a.l.mu.Unlock()
		return a.l.snap.Rev
	}

	r1 := compact() // HistoryKeep 0: etcd's history is left alone
	clock = clock.Add(2 * time.Hour)
	compact()
	if !readable(2) {
		t.Fatal("history compacted with HistoryKeep 0")
	}

	a.l.opts.HistoryKeep = time.Hour
	clock = clock.Add(2 * time.Hour)
	r3 := compact() // the switches of r1, r2 are older than an hour: compacts to r2's R
	if readable(r1) {
		t.Fatalf("history at %d (an earlier switch's R) still there", r1)
	}
	a.l.mu.Lock()
	r2 := a.l.historyRev
	a.l.mu.Unlock()
	if r2 <= r1 || r2 >= r3 || !readable(r2) {
		t.Fatalf("history compacted to %d; want the second switch's R, between %d and %d", r2, r1, r3)
	}
	clock = clock.Add(30 * time.Minute)
	compact() // r3's switch is 30 minutes old: kept
	if !readable(r3) || a.l.historyRev != r2 {
		t.Fatalf("history compacted to %d: a switch younger than HistoryKeep was used", a.l.historyRev)
	}
	clock = clock.Add(31 * time.Minute)
	compact() // r3's switch is 61 minutes old, the one after 31: to r3's R
	if readable(r3-1) || !readable(r3) {
		t.Fatalf("history compacted to %d, want %d", a.l.historyRev, r3)
	}
	got := b.load()
	want := a.load()
	if len(got) != len(want) {
		t.Fatalf("standby loads %d keys, the active %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("standby has %s=%q, active %q", k, got[k], v)
		}
	}
	e.checkLinearizable()
}
