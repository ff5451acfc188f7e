package agent

import (
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// When the active may move etcd leadership off its own member (#19).
//
// keepLeaderAway moves raft leadership off the active's embedded member, so
// that one crash does not cost both the active and the etcd leader. But
// while raft transfers leadership it takes no proposals, and renewals that
// reach the member in between are forwarded to a leader whose lessor is not
// primary yet: they stall for up to an election. Right after a failover, or
// right after an etcd election, that stall hit the new active when it had
// the least to spare: its renewals ran late, it fenced itself, and the next
// node promoted (the post-failover flap). So the active moves leadership
// only when all of these hold:
//
//   - it was promoted at least a lease (lease_ttl) ago;
//   - its member became raft leader at least a lease ago (an election has
//     just happened: a standby that led etcd was lost, say);
//   - its renewals are on time now (the newest acknowledged one was sent
//     less than 2 × renew_interval ago) and have been for a lease.
//
// The cost: for up to a lease after a failover or an etcd election the
// active may also lead etcd, and a crash in that window costs an etcd
// election as well (config check's "if it led etcd" row). Safety does not
// depend on the rule: it only keeps a transfer away from the moments when
// its stall would cost a needless failover.

// leaderMoveState is what the rule looks at.
type leaderMoveState struct {
	Role        ha.Role
	PromotedAt  time.Time // when this node became active (machine.State.Since)
	ValidUntil  time.Time // the session's validity as the newest renewal gave it
	LeaderSince time.Time // when this node's member was first seen leading raft this time
	LateAt      time.Time // when renewals were last seen late or failing (zero: never)
}

func leaderMoveStateOf(st machine.State, leaderSince, lateAt time.Time) leaderMoveState {
	return leaderMoveState{Role: st.Role, PromotedAt: st.Since, ValidUntil: st.ValidUntil, LeaderSince: leaderSince, LateAt: lateAt}
}

// renewalsLate reports whether the newest acknowledged renewal was sent
// more than two renew intervals ago: renewals are failing, or answered late.
func renewalsLate(s leaderMoveState, t config.Timing, now time.Time) bool {
	sent := s.ValidUntil.Add(-t.LeaseTTL) // ValidUntil is the renewal's send time plus the TTL
	return now.Sub(sent) > 2*t.RenewInterval
}

// leaderMoveWait applies the rule above: it returns 0 when the active may
// move etcd leadership away now, else how long to wait before asking again
// and why. A node that is not active never moves it (wait < 0).
func leaderMoveWait(s leaderMoveState, t config.Timing, now time.Time) (time.Duration, string) {
	if s.Role != ha.RoleActive {
		return -1, "not active"
	}
	if renewalsLate(s, t, now) {
		return t.RenewInterval, "renewals are late"
	}
	wait, why := time.Duration(0), ""
	for _, c := range []struct {
		since time.Time
		why   string
	}{
		{s.PromotedAt, "promoted less than a lease ago"},
		{s.LeaderSince, "this member became etcd leader less than a lease ago"},
		{s.LateAt, "renewals were late less than a lease ago"},
	} {
		if c.since.IsZero() {
			continue
		}
		if d := c.since.Add(t.LeaseTTL).Sub(now); d > wait {
			wait, why = d, c.why
		}
	}
	return wait, why
}
