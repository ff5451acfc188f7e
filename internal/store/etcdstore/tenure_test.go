package etcdstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// TestTenureRecord (lockdelay): the snapshot in which the leader key goes
// already says how its tenure ended: "resigned" after Resign, "expired"
// when haven's revoker revoked the lease, nothing when etcd's own tick did
// (the case a frozen etcd leader's stale lessor also takes). A campaign
// writes an unsettled tenure; Settle clears it while the key is held.
func TestTenureRecord(t *testing.T) {
	t.Parallel()
	m, addr := startOneMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// withRevoker is named as a VIP election is (config.VIPElection): the
	// revoker covers that key too (package node).
	withRevoker, tickOnly := storetest.Cluster(t)+".vip", storetest.Cluster(t)+"-tick"
	var logs syncbuf.Buffer
	go m.RevokeAtExpiry(ctx, LeaderKey(withRevoker), slog.New(slog.NewTextHandler(&logs, nil)), nil)

	// vacated campaigns as node, runs end, and returns the tenure of the
	// first snapshot without a leader.
	vacated := func(cluster string, settle bool, end func(s *Store, e ha.Epoch)) (ha.Epoch, ha.Tenure) {
		t.Helper()
		s, err := Dial(cluster, []string{addr}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.NewSession(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w := s.Watch(wctx)
		e, err := s.Campaign(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if settle {
			if err := s.Settle(ctx, "a", e); err != nil {
				t.Fatal(err)
			}
			if err := s.Settle(ctx, "b", e); err != ha.ErrNotLeader {
				t.Fatalf("Settle by a node that does not hold the key: %v, want ErrNotLeader", err)
			}
		}
		held := false
		for snap := range w {
			switch {
			case snap.Leader.Epoch == e && !held:
				unsettled := ha.Tenure{Epoch: e, Node: "a", Unsettled: true}
				if snap.Tenure == unsettled && settle {
					continue // the campaign's record; Settle's follows
				}
				if want := (ha.Tenure{Epoch: e, Node: "a", Unsettled: !settle}); snap.Tenure != want {
					t.Fatalf("tenure while held = %+v, want %+v", snap.Tenure, want)
				}
				held = true
				end(s, e)
			case held && snap.Leader.None():
				return e, snap.Tenure
			}
		}
		t.Fatalf("the leader key of %s did not go\n%s", cluster, logs.String())
		return 0, ha.Tenure{}
	}

	e, got := vacated(withRevoker, true, func(s *Store, e ha.Epoch) {
		if err := s.Resign(ctx, "a", e); err != nil {
			t.Fatal(err)
		}
	})
	if want := (ha.Tenure{Epoch: e, Node: "a", Ended: ha.TenureResigned}); got != want {
		t.Fatalf("after a resign: tenure %+v, want %+v", got, want)
	}
	// Expiry: the revoker is usually first; on a loaded machine etcd's tick
	// may beat it now and then, so a few rounds, one of which must be it.
	expired := false
	for try := 0; try < 4 && !expired; try++ {
		e, got = vacated(withRevoker, true, func(*Store, ha.Epoch) {}) // no renewals: the lease expires
		switch got {
		case ha.Tenure{Epoch: e, Node: "a", Ended: ha.TenureExpired}:
			expired = true
		case ha.Tenure{Epoch: e, Node: "a"}: // the tick was first
		default:
			t.Fatalf("after an expiry: tenure %+v, want epoch %d of a, expired", got, e)
		}
	}
	if !expired {
		t.Fatalf("no expiry recorded by the revoker in 4 rounds\n%s", logs.String())
	}
	// A tenure never settled stays so when it expires, whoever ends it:
	// its holder's predecessor may still act.
	for try := 0; try < 4; try++ {
		e, got = vacated(withRevoker, false, func(*Store, ha.Epoch) {})
		if got.Ended == ha.TenureExpired || try == 3 {
			break
		}
	}
	if !got.Unsettled || got.Epoch != e {
		t.Fatalf("an unsettled tenure after its expiry: %+v, want epoch %d still unsettled", got, e)
	}
	e, got = vacated(tickOnly, true, func(*Store, ha.Epoch) {})
	if want := (ha.Tenure{Epoch: e, Node: "a"}); got != want {
		t.Fatalf("after etcd's own tick: tenure %+v, want %+v (no record: the next winner waits)", got, want)
	}
}

// TestPreviousTenure: a won campaign reports the tenure record its own
// transaction replaced, whatever the watch showed before.
func TestPreviousTenure(t *testing.T) {
	t.Parallel()
	_, addr := startOneMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster := storetest.Cluster(t)
	dial := func() *Store {
		s, err := Dial(cluster, []string{addr}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.NewSession(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := dial(), dial()
	e1, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if prev, ok := a.PreviousTenure(e1); !ok || prev != (ha.Tenure{}) {
		t.Fatalf("first campaign's previous tenure = %+v %v, want none", prev, ok)
	}
	// a's key goes unrecorded (as a frozen etcd leader's revocation would).
	if _, err := a.cli.Delete(ctx, a.leaderKey()); err != nil {
		t.Fatal(err)
	}
	e2, err := b.Campaign(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if prev, ok := b.PreviousTenure(e2); !ok || prev != (ha.Tenure{Epoch: e1, Node: "a", Unsettled: true}) {
		t.Fatalf("previous tenure at %d = %+v %v, want a's unsettled record at %d", e2, prev, ok, e1)
	}
	if _, ok := b.PreviousTenure(e1); ok {
		t.Fatal("PreviousTenure answered for an epoch this store did not win")
	}
}
