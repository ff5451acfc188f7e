package agent

import (
	"context"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
)

// Who should win a failover's campaign (#19).
//
// The member that leads raft applies the lost active's revocation first, so
// its own standby used to win the campaign that follows, and the new active
// then led etcd. The active moves etcd leadership off its member only a
// lease after its promotion (leaderaway.go: a transfer right after one
// stalled renewals and fenced the new active), so for that lease a second
// fault on the new active cost an etcd election and the new etcd leader's
// lease extension as well (+1 s on lan). A standby whose member leads etcd
// therefore lets another standby win: it campaigns campaignDefer later when
// another healthy standby, of a priority at least its own, could take the
// role. That standby then wins (it learns of the revocation within an etcd
// heartbeat), the etcd leader and the active end up on different nodes, and
// no leadership transfer is needed. If it does not campaign in time, this
// one campaigns anyway: a delay, never a refusal. Safety does not depend on
// it: the store lets one campaign win, whenever it comes.

// SetEtcdLeader tells the agent how to ask whether this node's embedded etcd
// member leads raft (the composition root passes Member.IsLeader). Call it
// before Run; without it the agent campaigns at once.
func (a *Agent) SetEtcdLeader(leads func() bool) { a.leadsEtcd = leads }

// DeferredCampaignStale reports whether a campaign decided before a
// deferral (campaignDefer) must not go on after it: a switchover intent
// for another node appeared while it waited (before: the intent seen when
// the wait began; after: now). The machine decided without it, and would
// have kept the vacant key for the target; it decides again once it sees
// the intent (with its grace, so a target that never takes the key still
// lets this node campaign). TestSwitchoverIsPlannedAndRecorded lost its
// target to such a campaign: the etcd leader's standby, deferred 120 ms,
// took the key the switchover had just freed for another node.
func DeferredCampaignStale(before, after *ha.Switchover, self string, now time.Time) bool {
	if after == nil || after.To == self || !now.Before(after.Deadline) {
		return false
	}
	return before == nil || before.ID != after.ID
}

// campaignDefer is how long a standby waits before campaigning: 0, or, when
// its member leads etcd and another healthy standby of a priority at least
// its own could win instead, two etcd heartbeats and 20 ms (for that
// standby to learn of the revocation and commit its campaign).
func campaignDefer(leadsEtcd bool, snap ha.Snapshot, self string, prio map[string]int, t config.Timing) time.Duration {
	if !leadsEtcd {
		return 0
	}
	for name, r := range snap.Nodes {
		if name != self && r.Role == ha.RoleStandby && r.Healthy && prio[name] >= prio[self] {
			return 2*t.EtcdHeartbeat + 20*time.Millisecond
		}
	}
	return 0
}

// A record that comes late (#19). With embedded etcd the member that leads
// raft records that the lost active's lease expired and only then revokes
// it (etcdstore.RevokeAtExpiry), so the winner acts at once (package
// lockdelay). But etcd's own 500 ms tick may revoke the lease in between;
// the revoker still records the expiry, unless a campaign has rewritten the
// tenure record first, and then the winner waits the whole lock delay
// (lease_ttl) for want of a record that was on its way. So a standby that
// sees the key go without any record of how it ended gives the record up
// to expiryRecordWait to come before it campaigns. A delay, never a
// refusal; it changes nothing when the record came with the key's
// deletion, which is the usual case.

// expiryRecordPending reports whether the vacancy v (ok: one was noted)
// left the vacated tenure without a record of its end that may still
// come: the lock delay is on (o), a key was seen held, the record is of
// that key's epoch, ended neither way, and settled (an unsettled tenure
// makes the winner wait whatever its end).
func expiryRecordPending(v lockdelay.Vacancy, ok bool, o lockdelay.Options) bool {
	t := v.Tenure
	return ok && o.Enabled && v.Epoch != 0 && t.Epoch == v.Epoch && t.Ended == "" && !t.Unsettled
}

// expiryRecordWait is how long a campaign waits for a late record of
// expiry: a tenth of the lease, against the lease the winner would wait
// without it.
func expiryRecordWait(t config.Timing) time.Duration { return t.LeaseTTL / 10 }

// awaitExpiryRecord holds a campaign, up to expiryRecordWait, while the key
// that went has no record of its end (see above).
func (a *Agent) awaitExpiryRecord(ctx context.Context) {
	v, ok := a.ld.Vacancy()
	if !expiryRecordPending(v, ok, a.lockDelayOptions()) {
		return
	}
	wait := expiryRecordWait(a.cfg.Timing)
	start := a.clk.Now()
	for a.clk.Since(start) < wait && ctx.Err() == nil {
		s := a.Snapshot()
		if !s.Leader.None() || s.Tenure.Epoch != v.Epoch || s.Tenure.Ended != "" {
			break // taken, or a record came
		}
		sleep(ctx, a.clk, 5*time.Millisecond)
	}
	s := a.Snapshot()
	a.log.Debug("the leader key went without a record of its end: waited for the revoker's", "epoch", v.Epoch,
		"waited", a.clk.Since(start).Round(time.Millisecond), "ended", s.Tenure.Ended)
}
