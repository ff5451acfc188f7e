package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// checkMemberChange is the quorum rule for one membership change, pure so
// it can be tested as a table. A change is refused when, right after it,
// the healthy members could not form a majority of the new membership:
// an added member counts as down until it has joined.
func checkMemberChange(members []ha.Member, add bool, name string) error {
	healthy := 0
	var target *ha.Member
	for i, m := range members {
		if !m.Started {
			return ha.Errorf(ha.KindConflict, "a member added earlier (peer %s) has not joined yet; start its agent, or remove it, before another change (one change at a time)", m.Peer)
		}
		if m.Healthy {
			healthy++
		}
		if m.Name == name {
			target = &members[i]
		}
	}
	n := len(members)
	if add {
		if target != nil {
			return ha.Errorf(ha.KindConflict, "%s is already a member", name)
		}
		if n == 1 && healthy == 1 {
			// Growing a one-member store (after haven recover or a
			// snapshot restore) has no safe order: the store stops until
			// the second member joins. etcd's own check makes the same
			// exception for restoring cluster data.
			return nil
		}
		if need := (n+1)/2 + 1; healthy < need {
			return ha.Errorf(ha.KindConflict, "adding %s would make %d voters of which %d are healthy; a majority needs %d, so the store would stop until %s joins — bring the down members back first", name, n+1, healthy, need, name)
		}
		return nil
	}
	if target == nil {
		return ha.Errorf(ha.KindNotFound, "%s is not a member of the store", name)
	}
	if n == 1 {
		return ha.Errorf(ha.KindConflict, "%s is the only member; removing it would destroy the store", name)
	}
	left := healthy
	if target.Healthy {
		left--
	}
	if need := (n-1)/2 + 1; left < need {
		return ha.Errorf(ha.KindConflict, "removing %s would leave %d voters of which %d are healthy; a majority needs %d — bring the down members back first", name, n-1, left, need)
	}
	return nil
}

// Members lists the store's voting members.
func (a *Agent) Members(ctx context.Context) ([]ha.Member, error) {
	ms, ok := a.store.(ha.Membership)
	if !ok || a.cfg.Store.Backend != config.BackendEmbedded {
		return nil, ha.Errorf(ha.KindForbidden, "membership changes apply to the embedded etcd only; with store.backend %s the store's own tools manage its members", a.cfg.Store.Backend)
	}
	list, err := ms.Members(ctx)
	if err != nil {
		return nil, ha.Wrap(ha.KindUnavailable, err, "list members")
	}
	return list, nil
}

// ChangeMembers adds or removes one voting member, safely for the quorum.
func (a *Agent) ChangeMembers(ctx context.Context, req api.MembersRequest) ([]ha.Member, error) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	if req.Action != "add" && req.Action != "remove" {
		return nil, ha.Errorf(ha.KindInvalid, "action must be add or remove, not %q", req.Action)
	}
	list, err := a.Members(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkMemberChange(list, req.Action == "add", req.Node); err != nil {
		return nil, err
	}
	ms := a.store.(ha.Membership)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var addedPeer string
	if req.Action == "add" {
		// The operator adds the node to the config file first; this agent
		// started with the old one, so read the file again.
		fresh, err := config.Load(a.cfg.Path)
		if err != nil {
			return nil, ha.Errorf(ha.KindInvalid, "read %s again to find %s: %v", a.cfg.Path, req.Node, err)
		}
		n, ok := fresh.NodeByName(req.Node)
		if !ok {
			return nil, ha.Errorf(ha.KindNotFound, "%s is not in %s; add it to the config on every node first, then run this again", req.Node, a.cfg.Path)
		}
		addedPeer = n.Peer
		// etcd refuses an add until every member has been connected for a
		// few seconds (its strict reconfiguration check): a transient
		// state after a start or a hiccup, so retry for a while.
		deadline := a.clk.Now().Add(15 * time.Second)
		for {
			err := ms.AddMember(cctx, n.Name, n.Peer)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "unhealthy cluster") || a.clk.Now().After(deadline) {
				return nil, ha.Wrap(ha.KindConflict, err, "add %s (etcd adds a member only when every member has been connected for 5s)", n.Name)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-a.clk.After(500 * time.Millisecond):
			}
		}
	} else {
		if req.Node == a.node.Name {
			return nil, ha.Errorf(ha.KindConflict, "ask another node to remove %s (this agent would lose its store mid-request)", req.Node)
		}
		if a.Snapshot().Leader.Node == req.Node {
			return nil, ha.Errorf(ha.KindConflict, "%s is active; `haven switchover` first", req.Node)
		}
		var id uint64
		for _, m := range list {
			if m.Name == req.Node {
				id = m.ID
			}
		}
		if err := ms.RemoveMember(cctx, id); err != nil {
			return nil, ha.Wrap(ha.KindConflict, err, "remove %s", req.Node)
		}
		// Answer once the removed node is gone: its etcd member stops on
		// applying the change, its agent with it, and its record (bound to
		// its session) leaves the store when the session ends. Answering
		// at the commit would let the operator believe it stopped serving
		// while it still could (internal/sim found it).
		if err := a.waitGone(ctx, req.Node); err != nil {
			return nil, err
		}
	}
	a.record(ha.Event{Kind: "membership", Node: req.Node, To: req.Action, Who: req.Who, Reason: fmt.Sprintf("member %s %s", strings.TrimSuffix(req.Action, "e")+"ed", req.Node)})
	if req.Action == "add" && len(list) == 1 {
		// Two voters now, one started: the store answers nothing until
		// the new member joins, so answer from what is known.
		return append(list, ha.Member{Peer: addedPeer}), nil
	}
	return a.Members(ctx)
}

// CheckMemberChange is checkMemberChange, for the simulation
// (internal/sim), which models membership changes at haven's level.
func CheckMemberChange(members []ha.Member, add bool, name string) error {
	return checkMemberChange(members, add, name)
}

// RemovedGone reports whether snap shows the removed node gone, judged by
// self, the node that made the removal, once the removal has committed
// (after: self's clock at the commit's answer). Gone means both:
//
//   - the view is new enough: it holds a record self wrote after the
//     commit (its Heartbeat is not before after), so every write that
//     committed before the removal is in it; a watch that lags (a stall,
//     a slow store) would otherwise show a record missing that is there;
//   - no record of node and no leader key in its name. A node's record
//     goes into the store, bound to its session, before the node may serve
//     on that session (lease.Options.Created), and a removed member can
//     commit nothing after the removal (etcd drops its messages): so no
//     record means no session it serves on, now or later.
//
// Judged by the record alone (as before), a node whose session had
// expired and who had a new one whose record was not yet written looked
// gone and served on (internal/sim seed 6208 of a wider sweep).
func RemovedGone(snap ha.Snapshot, self, node string, after time.Time) bool {
	own, ok := snap.Nodes[self]
	if !ok || own.Heartbeat.Before(after) {
		return false
	}
	if snap.Leader.Node == node {
		return false
	}
	_, ok = snap.Nodes[node]
	return !ok
}

// RemovedWait is how long a removal waits for the removed node's record to
// leave the store: its session's lease, three etcd election timeouts and a
// second. When the removed member led raft, the others elect a leader
// (within two election timeouts of its stepping down), and the new
// leader's lessor extends every lease by an election timeout beyond its
// TTL as it takes over (etcd's lessor.Promote): with the lease and a
// second alone, removing the raft leader's member answered 503 "could not
// see it gone" although it went (TestMembersAddAndRemove). The bound is
// reached only when the record stays; a removal answers as soon as it goes.
// Three election timeouts plus a second still answered 503 at load 2.6 in
// CI (the election itself can take two timeouts and a pre-vote round, the
// revoke loop runs every 500 ms, and the answer needs this node's own
// publish after the removal), so the bound is five and two seconds: at
// most about 7.5 s with the default timings, and only when the record
// really stays.
func RemovedWait(t config.Timing) time.Duration {
	return t.LeaseTTL + 5*t.EtcdElection + 2*time.Second
}

// waitGone waits until the removed node's record has left the store, as
// seen in a view that holds a write of this node's made after the removal.
func (a *Agent) waitGone(ctx context.Context, node string) error {
	after := a.clk.Now()
	signal(a.publishC) // the write that shows the view is new enough
	deadline := after.Add(RemovedWait(a.cfg.Timing))
	for !RemovedGone(a.Snapshot(), a.node.Name, node, after) {
		if !a.clk.Now().Before(deadline) {
			return ha.Errorf(ha.KindUnavailable, "removed %s from the store, but could not see it gone within %s: its record is still there (its agent may still run; it stops when its etcd member does) or this node's view of the store is behind; check `haven status`", node, RemovedWait(a.cfg.Timing))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.clk.After(10 * time.Millisecond):
		}
	}
	return nil
}
