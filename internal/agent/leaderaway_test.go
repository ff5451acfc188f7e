package agent

import (
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// TestLeaderMoveWait: the active moves etcd leadership off its member only
// a lease after its promotion and after its member became raft leader, and
// only while its renewals are on time and have been for a lease (#19: a
// transfer right after a failover stalled the new active's renewals until
// it fenced itself, and the next node promoted).
func TestLeaderMoveWait(t *testing.T) {
	for _, preset := range []string{"lan", "lan-fast"} {
		tm, _ := config.Preset(preset)
		now := time.Unix(10000, 0)
		fresh := now.Add(tm.LeaseTTL - tm.RenewInterval/2) // renewed half an interval ago
		long := now.Add(-time.Hour)
		settled := leaderMoveState{Role: ha.RoleActive, PromotedAt: long, ValidUntil: fresh, LeaderSince: long}

		cases := []struct {
			name string
			mod  func(*leaderMoveState)
			move bool
			wait time.Duration // when not moving: at least this long (0: any)
		}{
			{"settled active with renewals on time moves", func(*leaderMoveState) {}, true, 0},
			{"a standby never moves", func(s *leaderMoveState) { s.Role = ha.RoleStandby }, false, 0},
			{"promoted just now: waits a lease", func(s *leaderMoveState) { s.PromotedAt = now.Add(-time.Millisecond) }, false, tm.LeaseTTL - 2*time.Millisecond},
			{"promoted almost a lease ago: waits the rest", func(s *leaderMoveState) { s.PromotedAt = now.Add(-tm.LeaseTTL + 10*time.Millisecond) }, false, 10 * time.Millisecond},
			{"promoted a lease ago: moves", func(s *leaderMoveState) { s.PromotedAt = now.Add(-tm.LeaseTTL) }, true, 0},
			{"member elected raft leader just now: waits", func(s *leaderMoveState) { s.LeaderSince = now.Add(-time.Millisecond) }, false, tm.LeaseTTL / 2},
			{"renewals failing (newest ack 3 intervals old): waits", func(s *leaderMoveState) { s.ValidUntil = now.Add(tm.LeaseTTL - 3*tm.RenewInterval) }, false, tm.RenewInterval},
			{"renewal answered late (validity half gone): waits", func(s *leaderMoveState) { s.ValidUntil = now.Add(tm.LeaseTTL / 2) }, false, tm.RenewInterval},
			{"renewals on time again, late a moment ago: waits", func(s *leaderMoveState) { s.LateAt = now.Add(-tm.RenewInterval) }, false, tm.LeaseTTL / 2},
			{"late over a lease ago: moves", func(s *leaderMoveState) { s.LateAt = now.Add(-tm.LeaseTTL - time.Millisecond) }, true, 0},
		}
		for _, c := range cases {
			s := settled
			c.mod(&s)
			wait, why := leaderMoveWait(s, tm, now)
			switch {
			case c.move && wait != 0:
				t.Errorf("%s, %s: waits %v (%s), want a move now", preset, c.name, wait, why)
			case !c.move && wait == 0:
				t.Errorf("%s, %s: moves now, want no move", preset, c.name)
			case !c.move && wait > 0 && wait < c.wait:
				t.Errorf("%s, %s: waits %v (%s), want at least %v", preset, c.name, wait, why, c.wait)
			case !c.move && wait > 0 && why == "":
				t.Errorf("%s, %s: waits %v without saying why", preset, c.name, wait)
			}
		}
	}
}

// TestRenewalsLate: late means the newest acknowledged renewal was sent more
// than two renew intervals ago; one interval plus a round trip is on time.
func TestRenewalsLate(t *testing.T) {
	tm, _ := config.Preset("lan")
	now := time.Unix(10000, 0)
	for _, c := range []struct {
		age  time.Duration
		late bool
	}{{0, false}, {tm.RenewInterval + 20*time.Millisecond, false}, {2 * tm.RenewInterval, false}, {2*tm.RenewInterval + time.Millisecond, true}, {tm.LeaseTTL, true}} {
		s := leaderMoveState{Role: ha.RoleActive, ValidUntil: now.Add(-c.age).Add(tm.LeaseTTL)}
		if got := renewalsLate(s, tm, now); got != c.late {
			t.Errorf("newest renewal sent %v ago: late %v, want %v", c.age, got, c.late)
		}
	}
}

// TestRevokedAtExpiryMetric: each revocation the node's etcd member makes at
// a lease's expiry shows in /metrics, with how late it was.
func TestRevokedAtExpiryMetric(t *testing.T) {
	a := testAgent(t)
	a.metrics = newMetrics(a)
	a.RevokedAtExpiry(3 * time.Millisecond)
	a.RevokedAtExpiry(40 * time.Millisecond)
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "haven_lease_revoked_at_expiry_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.042 || h.GetSampleSum() > 0.044 {
			t.Fatalf("count %d sum %v, want 2 revocations 43 ms late in all", h.GetSampleCount(), h.GetSampleSum())
		}
		return
	}
	t.Fatal("haven_lease_revoked_at_expiry_seconds is not exported")
}
