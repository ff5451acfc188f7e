package agent

import (
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
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
