package agent

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/etcdstore"
)

// KeepLeaderAway runs keepLeaderAway for the composition root (node).
func KeepLeaderAway(ctx context.Context, a *Agent, m *etcdstore.Member, log *slog.Logger) {
	keepLeaderAway(ctx, a, m, log)
}

// keepLeaderAway moves etcd's raft leadership off this node's member while
// this node is active, so that one crash does not take out both. It looks
// every 100 ms (two cheap in-memory reads), so that the window in which the
// active also leads etcd stays short.
func keepLeaderAway(ctx context.Context, a *Agent, m *etcdstore.Member, log *slog.Logger) {
	if a.cfg.Mode == ha.ModeActiveActive {
		// Every healthy node is active: moving leadership away from each
		// of them would bounce it between members forever, and raft drops
		// proposals during every transfer.
		return
	}
	pause := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.clk.After(pause):
		}
		pause = 100 * time.Millisecond
		if a.State().Role != ha.RoleActive || !m.IsLeader() {
			continue
		}
		err := m.MoveLeaderAway(ctx, longestRunning(a.Snapshot()))
		if errors.Is(err, etcdstore.ErrNoOtherMember) {
			// A one-member cluster, or the others are down: nothing to
			// move and nothing to log; look again in a while.
			pause = time.Second
			continue
		}
		if err != nil {
			// While raft transfers leadership it takes no proposals: after
			// a transfer that did not finish, leave raft alone for a while.
			pause = time.Second
			log.Debug("move etcd leadership away from the active", "err", err)
		} else {
			log.Info("moved etcd leadership to another member")
		}
	}
}

// longestRunning names the nodes of snap whose agents are alive, in the
// order in which to offer etcd leadership: witnesses first (they never become active, so a crash of
// the active never takes the etcd leader with it), then healthy nodes, each
// group by how long its agent has run, longest first.
func longestRunning(snap ha.Snapshot) []string {
	recs := make([]ha.NodeStatus, 0, len(snap.Nodes))
	for _, r := range snap.Nodes {
		if r.Role != ha.RoleStopped && r.Role != ha.RoleDown {
			recs = append(recs, r) // a live agent, so a running member
		}
	}
	sort.Slice(recs, func(i, j int) bool {
		wi, wj := recs[i].Role == ha.RoleWitness, recs[j].Role == ha.RoleWitness
		if wi != wj {
			return wi
		}
		if recs[i].Healthy != recs[j].Healthy {
			return recs[i].Healthy
		}
		if !recs[i].StartedAt.Equal(recs[j].StartedAt) {
			return recs[i].StartedAt.Before(recs[j].StartedAt)
		}
		return recs[i].Name < recs[j].Name
	})
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = r.Name
	}
	return names
}
