package memstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// TestTenureRecord: the record is kept as etcdstore keeps it: a campaign
// writes it unsettled, Settle settles it, Resign and the revoke at expiry
// record how the tenure ended, and the lessor's tick and a stale lessor's
// revoke leave it as it was.
func TestTenureRecord(t *testing.T) {
	clk := clock.NewFakeSync(t0)
	s := New(clk)
	s.SetExpiryTick(500 * time.Millisecond)
	ctx := context.Background()
	a, b := Tenured{s.Client()}, Tenured{s.Client()}
	for _, c := range []Tenured{a, b} {
		if _, err := c.NewSession(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, w ha.Tenure) {
		t.Helper()
		if got := s.Tenure(); got != w {
			t.Fatalf("%s: tenure %+v, want %+v", what, got, w)
		}
		if got := s.Snapshot().Tenure; got != w {
			t.Fatalf("%s: snapshot's tenure %+v, want %+v", what, got, w)
		}
	}
	e1, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want("campaign", ha.Tenure{Epoch: e1, Node: "a", Unsettled: true})
	if prev, ok := a.PreviousTenure(e1); !ok || prev != (ha.Tenure{}) {
		t.Fatalf("previous tenure of the first win: %+v %t", prev, ok)
	}
	if err := b.Settle(ctx, "b", e1); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("settle by a non-holder: %v", err)
	}
	if err := a.Settle(ctx, "a", e1); err != nil {
		t.Fatal(err)
	}
	want("settle", ha.Tenure{Epoch: e1, Node: "a"})
	if err := a.Resign(ctx, "a", e1); err != nil {
		t.Fatal(err)
	}
	want("resign", ha.Tenure{Epoch: e1, Node: "a", Ended: ha.TenureResigned})

	e2, err := b.Campaign(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if prev, ok := b.PreviousTenure(e2); !ok || prev.Ended != ha.TenureResigned || prev.Epoch != e1 {
		t.Fatalf("previous tenure of b's win: %+v %t", prev, ok)
	}
	clk.Advance(300 * time.Millisecond)
	if _, err := b.Renew(ctx); err != nil { // the lease now ends between two ticks
		t.Fatal(err)
	}
	sess, exp, _ := s.LeaderLease()
	clk.AdvanceTo(exp)
	if err := s.Revoke(sess); err != nil {
		t.Fatal(err)
	}
	want("revoke at expiry", ha.Tenure{Epoch: e2, Node: "b", Ended: ha.TenureExpired, Unsettled: true})

	if _, err := a.NewSession(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	e3, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	sess, _, _ = s.LeaderLease()
	s.RevokeStale(sess) // a live lease
	if l := s.Leader(); !l.None() {
		t.Fatalf("after a stale lessor's revoke the leader is %v", l)
	}
	want("stale revoke", ha.Tenure{Epoch: e3, Node: "a", Unsettled: true})
}
