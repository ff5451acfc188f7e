package sim

import (
	"errors"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// Membership changes at haven's level (`haven members add|remove`,
// Agent.ChangeMembers): the embedded etcd's own member change is not
// modelled, only what haven makes of it. The call is made through a node
// other than the one leaving, checked on that node's view with the agent's
// own quorum rule (agent.CheckMemberChange) and its "is active, switchover
// first" refusal, and commits in the store; the removed node's etcd member
// applies the change 1 to 50 ms later and stops, and its agent with it
// (internal/node: member.Stopped). Invariant: once the removal is
// acknowledged (the agent answers once the removed node's record has left
// the store: agent.RemovedGone), the removed node never serves. An added node's agent is
// started (the operator's next step) and joins as a standby.

var errHealed = errors.New("not committed: the faults have healed")

// members is the store's voting membership as haven's agents see it: the
// service nodes not removed, and the witness.
func (w *world) members() []ha.Member {
	var list []ha.Member
	for _, m := range w.nodes {
		if m.removed {
			continue
		}
		healthy := m.alive && !m.frozen && !m.partReq && !m.partResp
		list = append(list, ha.Member{Name: m.name, Started: true, Healthy: healthy})
	}
	return append(list, ha.Member{Name: "w1", Started: true, Healthy: true})
}

// memberChange is one `haven members add|remove target` asked of n.
func (w *world) memberChange(n, target *node) {
	add := target.removed
	action := "remove"
	if add {
		action = "add"
	}
	n.opBusy = true
	n.tracef("operator: members %s %s", action, target.name)
	answer := func(format string, args ...any) {
		n.opBusy = false
		n.tracef("operator answer: members %s %s: "+format, append([]any{action, target.name}, args...)...)
	}
	if err := agent.CheckMemberChange(w.members(), add, target.name); err != nil {
		answer("%v", err)
		return
	}
	if !add && n.view().Leader.Node == target.name {
		answer("%s is active; `haven switchover` first", target.name)
		return
	}
	n.call("members "+action, opTimeout(n.timing()), func(*memstore.Client) error {
		// Committed: the member list changes now (not once the faults
		// have healed: the heal adds every node back).
		if w.healed {
			return errHealed
		}
		if add {
			target.removed, target.partReq = false, false
			return nil
		}
		target.removed = true
		target.removedAck = time.Time{}
		// The cluster ignores a removed member at once (etcd drops its
		// messages): its agent's requests no longer reach the store.
		target.partReq = true
		w.after(w.dur(time.Millisecond, 50*time.Millisecond), nil, func() {
			if target.removed && target.alive {
				target.tracef("its etcd member was removed and stopped; the agent stops")
				target.kill()
			}
		})
		return nil
	}, func(err error) {
		if err != nil {
			answer("%v", err)
			return
		}
		w.res.Members++
		if add {
			answer("added; now start its agent")
			if !target.alive && !w.healed {
				target.start()
			}
			return
		}
		// agent.waitGone: answer once the removed node's record has
		// left the store (its session ended), in a view that holds a
		// write of n's after the commit, polling every 10 ms.
		after := n.now()
		deadline := after.Add(agent.RemovedWait(n.timing()))
		n.opBusy = true
		gone := func() bool { return agent.RemovedGone(n.snap, n.name, target.name, after) }
		if w.o.NoRemovalGuard {
			gone = func() bool { _, ok := n.snap.Nodes[target.name]; return !ok }
		} else {
			n.publish()
		}
		var look func()
		look = func() {
			if !n.alive {
				return
			}
			if gone() {
				if target.removed {
					target.removedAck = w.now()
				}
				answer("removed; its session has ended")
				return
			}
			if !n.now().Before(deadline) {
				answer("removed, but its record is still in the store after %s", agent.RemovedWait(n.timing()))
				return
			}
			n.caughtUp = append(n.caughtUp, func() { n.afterLocal(n.poll(10*time.Millisecond), look) })
		}
		look()
	})
}

// checkRemoved: a node whose removal was acknowledged never serves again
// (until it is added back).
func (w *world) checkRemoved(n *node) {
	// Except a holder whose key a stale lessor revoked early: its record
	// left the store with its lease while it still serves on its bound,
	// which only the lock-delay covers (docs/simulation.md, rule 11).
	if n.removed && !n.removedAck.IsZero() && n.serving() && !(n.st.Holding() && n.w.staleRevoked[n.st.Epoch]) {
		w.failf("%s serves at epoch %d, %s after its removal from the cluster was acknowledged", n.name, n.st.Epoch, w.now().Sub(n.removedAck))
	}
}
