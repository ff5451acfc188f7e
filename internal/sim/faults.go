package sim

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/operator"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// planFaults schedules the first fault or operator call; each schedules the
// next until the fault phase ends.
func (w *world) planFaults() {
	var next func()
	next = func() {
		if w.elapsed() >= w.o.FaultPhase {
			return
		}
		w.inject()
		w.after(time.Duration(100+w.rng.IntN(2500))*time.Millisecond, nil, next)
	}
	w.after(3*time.Second, nil, next)
}

func (w *world) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1))
}

func (w *world) pick() *node { return w.nodes[w.rng.IntN(len(w.nodes))] }

// inject starts one fault or one operator call, chosen by the seed.
func (w *world) inject() {
	n := w.pick()
	w.res.Faults++
	switch k := w.rng.IntN(23); {
	case k < 2: // kill, restarted later
		if !n.alive {
			return
		}
		n.kill()
		w.after(w.dur(time.Second, 8*time.Second), nil, func() {
			if !n.alive && !w.healed {
				n.start()
			}
		})
	case k < 3: // restart (clean stop, then start)
		if !n.alive {
			return
		}
		n.tracef("restarted")
		_ = n.client.Close()
		n.kill()
		w.after(w.dur(10*time.Millisecond, time.Second), nil, func() {
			if !n.alive {
				n.start()
			}
		})
	case k < 5: // freeze (SIGSTOP), up to past a lease
		if !n.alive || n.frozen {
			return
		}
		n.freeze(w.dur(50*time.Millisecond, 5*time.Second))
	case k < 8: // partition from the store: requests, answers, or both
		dir := w.rng.IntN(3)
		n.partReq, n.partResp = dir != 1, dir != 0
		n.tracef("partitioned from the store (requests cut %t, answers cut %t)", n.partReq, n.partResp)
		w.after(w.dur(100*time.Millisecond, 6*time.Second), nil, func() {
			n.partReq, n.partResp = n.removed, false // a removed member stays cut off
			n.tracef("partition healed")
			n.watchChanged()
		})
	case k < 9: // slow store
		// Requests, answers or both; a third of the time just under
		// renew_timeout: renewals that succeed late.
		slow := w.dur(50*time.Millisecond, 1500*time.Millisecond)
		if w.rng.IntN(3) == 0 {
			slow = w.dur(w.cfg.Timing.RenewTimeout*3/4, w.cfg.Timing.RenewTimeout)
		}
		dir := w.rng.IntN(3)
		if dir != 1 {
			n.slowReq = slow
		}
		if dir != 0 {
			n.slowResp = slow
		}
		n.tracef("store slower by %s (requests %s, answers %s)", slow, n.slowReq, n.slowResp)
		w.after(w.dur(500*time.Millisecond, 6*time.Second), nil, func() { n.slowReq, n.slowResp = 0, 0 })
	case k < 10: // watch stalled, silently or starting over (ha.Snapshot.Behind)
		n.watchStall = true
		if !w.o.NoViewLost && w.rng.IntN(2) == 0 {
			n.tracef("watch starting over, cannot read the store")
			n.watchBehind()
		} else {
			n.tracef("watch stalled")
		}
		w.after(w.dur(100*time.Millisecond, 4*time.Second), nil, func() {
			n.watchStall = false
			n.watchChanged()
		})
	case k < 11: // service crash, restarted by the supervisor
		if !n.alive || !n.svcUp {
			return
		}
		n.tracef("service crashed")
		n.svcUp = false
		n.refreshHealth()
		w.after(w.dur(200*time.Millisecond, 3*time.Second), n, func() {
			n.svcUp = true
			n.refreshHealth()
		})
	case k < 12: // a check flaps
		flips := 1 + 2*w.rng.IntN(3)
		var flip func(i int)
		flip = func(i int) {
			n.checkOK = !n.checkOK
			n.refreshHealth()
			if i+1 < flips {
				w.after(w.dur(50*time.Millisecond, 800*time.Millisecond), n, func() { flip(i + 1) })
			} else if !n.checkOK {
				n.checkOK = true
				n.refreshHealth()
			}
		}
		if n.alive {
			n.tracef("check flaps %d times", flips)
			flip(0)
		}
	case k == 20: // a stale lessor revokes the active's live lease (lockdelay.go)
		if w.o.Mode != ha.ModeActiveActive {
			w.staleRevoke()
		}
	case k == 21: // n freezes with its etcd member, which acknowledges late (lockdelay.go)
		// Not in active-active: there a standby has no fence deadline,
		// and the answer puts it in rotation for up to a renew interval
		// past its lease's expiry in the store (docs/simulation.md).
		if w.o.Mode != ha.ModeActiveActive {
			// Mostly the active's own process: the case that matters.
			if l := w.store.Leader(); !l.None() && w.rng.IntN(4) != 0 {
				for _, m := range w.nodes {
					if m.name == l.Node {
						n = m
					}
				}
			}
			n.staleAcks()
		}
	case k == 22: // the holder freezes with its etcd member and wakes cut off, before its fence (wake.go)
		for _, m := range w.nodes {
			if m.st.Holding() && m.staleWake() {
				break
			}
		}
	default:
		w.operator(n)
	}
}

// heal ends every fault: thaw, reconnect, restart, health back, maintenance
// off, service started.
func (w *world) heal() {
	w.healed = true
	w.tracef("---- faults heal ----")
	for _, n := range w.nodes {
		if n.removed {
			// The operator adds it back (members add, then starts it).
			n.tracef("added back to the cluster")
			n.removed, n.removedAck = false, time.Time{}
		}
		n.partReq, n.partResp, n.watchStall, n.slowReq, n.slowResp = false, false, false, 0, 0
		n.staleArmed, n.staleUntil = false, time.Time{} // a member woken now hears the new leader at once
		n.svcUp, n.checkOK = true, true
		if n.frozen {
			n.thaw()
		}
		if !n.alive {
			n.start()
		}
		if n.stoppedBy != "" {
			n.stoppedBy = ""
		}
		n.refreshHealth()
		n.watchChanged()
	}
	// Operator calls are no longer started; one still in flight lands
	// within a few ms now that the store is fast again.
	clear := func() {
		for _, n := range w.nodes {
			_ = w.admin.SetMaintenance(bg, n.name, false)
		}
	}
	clear()
	w.after(3*time.Second, nil, clear)
}

// ---- operator calls: the agent's handlers (internal/agent/ops.go) ----

// operator makes one operator call through n's API.
func (w *world) operator(n *node) {
	if !n.alive || n.frozen || n.opBusy || w.healed {
		return
	}
	w.res.Operator++
	target := ""
	if w.rng.IntN(2) == 0 {
		target = w.pick().name
	}
	switch k := w.rng.IntN(11); {
	case k == 10:
		if t := w.pick(); t != n {
			w.memberChange(n, t)
		}
	case k < 4:
		w.switchover(n, target, false, "switchover")
	case k < 5 && w.o.Mode == ha.ModePassiveBackup:
		w.switchover(n, w.pick().name, true, "promote")
	case k < 7:
		on := w.rng.IntN(3) == 0
		m := w.pick()
		w.maintenance(n, m.name, on)
	default:
		m := n
		if m.st.Holding() {
			return // needs --force: a switchover first, covered above
		}
		if m.stoppedBy == "" && w.rng.IntN(2) == 0 {
			m.tracef("operator: service stop")
			m.stoppedBy = "op"
		} else {
			m.tracef("operator: service start")
			m.stoppedBy = ""
		}
		m.refreshHealth()
		m.publish()
	}
}

func (w *world) maintenance(n *node, target string, on bool) {
	n.opBusy = true
	n.tracef("operator: maintenance %s %t", target, on)
	set := func() {
		if w.healed {
			n.opBusy = false
			return
		}
		n.call("maintenance", opTimeout(n.timing()), func(c *memstore.Client) error { return c.SetMaintenance(bg, target, on) }, func(err error) {
			n.opBusy = false
			n.tracef("operator: maintenance %s %t: %v", target, on, err)
		})
	}
	if on && n.view().Leader.Node == target && w.o.Mode != ha.ModeActiveActive {
		w.handOver(n, "", false, "maintenance of "+target, func(err error) {
			if err != nil {
				n.opBusy = false
				return
			}
			n.opBusy = true
			set()
		})
		return
	}
	set()
}

func (w *world) switchover(n *node, to string, promote bool, what string) {
	n.tracef("operator: %s to %q", what, to)
	w.handOver(n, to, promote, "requested by an operator", func(err error) {
		// Back to back: the operator asks again as soon as the first is
		// answered, as TestSwitchoverThroughProxyZeroErrors does; the
		// second must not be refused because of the first.
		if err == nil && !promote && !w.healed && n.alive && !n.frozen && !n.opBusy && w.rng.IntN(2) == 0 {
			w.res.Operator++
			w.switchover(n, "", false, "switchover (back to back)")
		}
	})
}

// refusedForIntent reports whether PickTarget refused only because
// records in snap said a switchover is in progress: with those records
// eligible, as they become once the intent is gone, it would have picked a
// target. Only the records operator.Settled waits for count (healthy
// standbys out of maintenance): others stay ineligible for other reasons.
func (w *world) refusedForIntent(snap ha.Snapshot, to string, promote bool) bool {
	found := false
	nodes := maps.Clone(snap.Nodes)
	for name, rec := range nodes {
		if rec.Eligible || !strings.Contains(rec.Why, " in progress") {
			continue
		}
		found = true
		if rec.Role != ha.RoleStandby || !rec.Healthy || snap.Intents.Maintenance[name] {
			continue
		}
		rec.Eligible = true
		nodes[name] = rec
	}
	if !found {
		return false
	}
	snap.Nodes = nodes
	_, err := agent.PickTarget(w.cfg, snap, to, false, promote)
	return err == nil
}

// refusedBusy records a refusal because another switchover is in progress,
// decided on the view of revision rev (ophistory.go).
func (w *world) refusedBusy(n *node, what string, from time.Time) {
	if from.IsZero() {
		from = t0
	}
	w.res.Busy++
	w.opCall(n, opIn{kind: opBusy, what: what, finished: maps.Clone(n.finished)}, from)
}

// handOver is Agent.Switchover/Promote + handOver: validate on the node's
// view, record the intent, wait for the outcome on the watch. Every answer
// is checked against what the store really did.
func (w *world) handOver(n *node, to string, promote bool, reason string, done func(error)) {
	answer := func(format string, args ...any) {
		n.opBusy = false
		err := fmt.Errorf(format, args...)
		n.tracef("operator answer: %v", err)
		done(err)
	}
	if w.o.Mode == ha.ModeActiveActive {
		answer("active-active: no active role to hand over")
		return
	}
	n.opBusy = true
	snap := n.view()
	if !promote && snap.Leader.None() {
		answer("no node is active")
		return
	}
	if promote {
		if err := operator.PromoteRefused(snap, to, false); err != nil {
			answer("%v", err)
			return
		}
	}
	target, err := agent.PickTarget(w.cfg, snap, to, false, promote)
	if err != nil {
		if w.refusedForIntent(snap, to, promote) {
			// The records lag the intent they report (a standby
			// republishes once it sees the intent gone), so the refusal
			// is judged from the last switchover this node saw settle.
			w.refusedBusy(n, "a "+reason+" on "+n.name+"'s view", n.settledAt)
		}
		answer("%v", err)
		return
	}
	from := snap.Leader
	sw := operator.Intent(w.newID(), from, target, reason, promote, n.now())
	var committed time.Time
	sent := w.now()
	n.call("request switchover", opTimeout(n.timing()), func(c *memstore.Client) error {
		err := c.RequestSwitchover(bg, sw)
		if err == nil {
			committed = w.now()
		}
		return err
	}, func(err error) {
		switch {
		case errors.Is(err, ha.ErrBusy):
			w.refusedBusy(n, sw.ID, sent)
			answer("another switchover is in progress")
			return
		case errors.Is(err, ha.ErrStale):
			w.opCall(n, opIn{kind: opStale, from: from, what: sw.ID}, sent)
			w.res.Stale++
			answer("stale view, retry: %v", err)
			return
		case err != nil:
			answer("record the switchover in the store: %v", err)
			return
		}
		w.opCall(n, opIn{kind: opRecorded, from: from, what: sw.ID}, sent)
		n.tracef("operator: switchover %s recorded: %s@%d → %s", sw.ID, from.Node, from.Epoch, target)
		deadline := n.trueAt(sw.Deadline)
		over := false
		var look func()
		look = func() {
			if over {
				return
			}
			outcome, why := agent.HandOverSeen(n.snap, from, target)
			switch outcome {
			case agent.HandOverPending:
				if !w.now().Before(deadline) {
					over = true
					n.call("clear switchover", callTimeout(n.timing()), func(c *memstore.Client) error { return c.ClearSwitchover(bg, sw.ID) }, func(error) {})
					answer("%s did not become active within %s", target, agent.SwitchoverWindow)
					return
				}
				// The handler polls the watched snapshot every 2 ms.
				n.caughtUp = append(n.caughtUp, func() { n.afterLocal(n.poll(2*time.Millisecond), look) })
				return
			case agent.HandOverOther:
				over = true
				l := n.snap.Leader
				w.checkAnswer(n, sw, committed, l, fmt.Sprintf("%s took over instead of %s (%s)", l.Node, target, why))
				w.opCall(n, opIn{kind: opAnswer, from: from, leader: l, what: sw.ID}, sent)
				n.call("clear switchover", callTimeout(n.timing()), func(c *memstore.Client) error { return c.ClearSwitchover(bg, sw.ID) }, func(error) {})
				w.res.Other++
				answer("%s took over instead of %s (%s)", l.Node, target, why)
			case agent.HandOverDone:
				over = true
				l := n.snap.Leader
				w.checkAnswer(n, sw, committed, l, fmt.Sprintf("switched over to %s at epoch %d", target, l.Epoch))
				w.opCall(n, opIn{kind: opAnswer, from: from, leader: l, what: sw.ID}, sent)
				if w.held[l.Epoch] != target {
					// "X is active" is true only once X's machine took
					// the role up: holding the key is not enough.
					w.failf("%s answered \"switched over to %s at epoch %d\" before %s took the role up at that epoch", n.name, target, l.Epoch, target)
				}
				n.settle(sw.ID, func(settled bool) {
					if settled {
						if n.finished == nil {
							n.finished = map[string]bool{}
						}
						n.finished[sw.ID] = true
						n.settledAt = w.now()
					}
					n.opBusy = false
					n.tracef("operator answer: switched over %s → %s at epoch %d", from.Node, target, l.Epoch)
					w.res.Switched++
					done(nil)
				})
			}
		}
		look()
		w.at(deadline, n, look)
	})
}

// checkAnswer: an answer about the outcome of a switchover must be about an
// epoch granted after the switchover was recorded; an epoch granted before
// says nothing about it (the operator's view was stale).
func (w *world) checkAnswer(n *node, sw ha.Switchover, committed time.Time, l ha.Leader, answer string) {
	g, ok := w.grants[l.Epoch]
	switch {
	case !ok:
		w.failf("%s answered %q, but the store never granted epoch %d", n.name, answer, l.Epoch)
	case g.node != l.Node:
		w.failf("%s answered %q, but epoch %d went to %s", n.name, answer, l.Epoch, g.node)
	case g.at.Before(committed):
		w.failf("%s answered %q to switchover %s (%s@%d → %s), but %s had epoch %d %s before the switchover was recorded: the answer is about a stale view",
			n.name, answer, sw.ID, sw.From, sw.Epoch, sw.To, g.node, l.Epoch, committed.Sub(g.at))
	}
}

// settle is the operator's settleSwitchover: withdraw the intent, then
// wait (polling the watched snapshot every 2 ms) until the other standbys
// are eligible again (operator.Settled), for at most one call's deadline
// in all. settled: the snapshot showed it settled (not the deadline).
func (n *node) settle(id string, done func(settled bool)) {
	deadline := n.now().Add(callTimeout(n.timing()))
	over := false
	finish := func(settled bool) {
		if !over {
			over = true
			done(settled)
		}
	}
	n.afterLocal(callTimeout(n.timing()), func() { finish(false) })
	n.call("clear switchover", callTimeout(n.timing()), func(c *memstore.Client) error { return c.ClearSwitchover(bg, id) }, func(error) {
		var look func()
		look = func() {
			if over {
				return
			}
			if operator.Settled(n.snap, id) {
				finish(true)
				return
			}
			if !n.now().Before(deadline) {
				finish(false)
				return
			}
			n.caughtUp = append(n.caughtUp, func() { n.afterLocal(n.poll(2*time.Millisecond), look) })
		}
		look()
	})
}
