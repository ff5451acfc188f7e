package agent

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// RaftMember is this node's embedded etcd member as keepLeaderAway uses it
// (the composition root hands over etcdstore's Member).
type RaftMember interface {
	IsLeader() bool
	// LeaderChanged is closed when raft's leader changes.
	LeaderChanged() <-chan struct{}
	// MoveLeaderAway hands raft leadership to the first of prefer that can
	// take it; an error wrapping ErrNoOtherMember when no member can.
	MoveLeaderAway(ctx context.Context, prefer []string) error
}

// ErrNoOtherMember is RaftMember.MoveLeaderAway's error when there is no
// other live voting member to hand etcd leadership to.
var ErrNoOtherMember = errors.New("no other live voting member to hand etcd leadership to")

// KeepLeaderAway runs keepLeaderAway for the composition root (node).
func KeepLeaderAway(ctx context.Context, a *Agent, m RaftMember, log *slog.Logger) {
	keepLeaderAway(ctx, a, m, log)
}

// keepLeaderAway moves etcd's raft leadership off this node's member while
// this node is active, so that one crash does not take out both; but not
// right after a promotion or an etcd election, nor while renewals are late
// (leaderMoveWait in leaderaway.go says why). It looks when this node's role
// changes and when raft's leader changes (both are notified), and while a
// move is pending, every renew interval, so that it sees renewals run late.
func keepLeaderAway(ctx context.Context, a *Agent, m RaftMember, log *slog.Logger) {
	if a.cfg.Mode == ha.ModeActiveActive {
		// Every healthy node is active: moving leadership away from each
		// of them would bounce it between members forever, and raft drops
		// proposals during every transfer.
		return
	}
	t := a.cfg.Timing
	var leaderSince, lateAt time.Time
	var pause <-chan time.Time // after a failed transfer: leave raft alone a while
	lastWhy := ""
	for {
		// Taken before looking, so that a change during the look is not missed.
		leaderC := m.LeaderChanged()
		var look <-chan time.Time
		now := a.clk.Now()
		switch leads := m.IsLeader(); {
		case !leads:
			leaderSince = time.Time{}
		case leaderSince.IsZero():
			leaderSince = now
		}
		st := leaderMoveStateOf(a.State(), leaderSince, lateAt)
		if !leaderSince.IsZero() && st.Role == ha.RoleActive && pause == nil {
			if renewalsLate(st, t, now) {
				lateAt, st.LateAt = now, now
			}
			wait, why := leaderMoveWait(st, t, now)
			switch {
			case wait > 0:
				if why != lastWhy {
					log.Debug("etcd leadership stays with the active for now", "why", why, "for", wait.Round(time.Millisecond))
				}
				lastWhy = why
				look = a.clk.After(min(wait, t.RenewInterval))
			case wait == 0:
				err := m.MoveLeaderAway(ctx, longestRunning(a.Snapshot()))
				switch {
				case errors.Is(err, ErrNoOtherMember):
					// A one-member cluster, or the others are down:
					// nothing to move and nothing to log; look again in a
					// while.
					pause = a.clk.After(time.Second)
				case err != nil:
					// While raft transfers leadership it takes no
					// proposals: after a transfer that did not finish,
					// leave raft alone for a while.
					pause = a.clk.After(time.Second)
					log.Debug("move etcd leadership away from the active", "err", err)
				default:
					log.Info("moved etcd leadership to another member")
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.roleC:
		case <-leaderC:
		case <-look:
		case <-pause:
			pause = nil
		case <-a.clk.After(leaderAwayEvery):
		}
	}
}

// leaderAwayEvery is how often keepLeaderAway looks without being told of
// a change: a safety net, the notifications do the work.
const leaderAwayEvery = 5 * time.Second

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
