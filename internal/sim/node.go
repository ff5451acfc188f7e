package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/haven-ha/haven/internal/agent"
	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/store/memstore"
)

var bg = context.Background()

// errTimeout is a store call whose answer did not come within its deadline.
var errTimeout = errors.New("sim: store call timed out")

// node is one agent process: the agent's core (agent.Step and the rules
// beside it) driven by events that stand for the agent's goroutines.
type node struct {
	w    *world
	name string
	mcfg machine.Config
	rate float64 // the node's clock runs at this rate of true time

	inc      int // incarnation: bumped by kill and restart
	alive    bool
	frozen   bool
	deferred []event // events that came due while frozen
	freezes  int     // freezes so far: a thaw ends only its own

	client *memstore.Client
	st     machine.State

	tickGen    int
	work       []machine.Action
	busy       bool
	fence      []agent.FenceJob
	fencing    bool
	promo      *promotion // the promotion in flight, if any
	demotedSeq uint64     // promotions up to this Seq were demoted (agent.demotedSeq)

	// renewer
	sessGen     int
	inFlight    int
	waitNewSess bool
	creating    bool // a new session is being created
	newSessSig  bool
	renewGen    int

	// watcher
	snap         ha.Snapshot
	seenRev      int64
	watchPending bool
	caughtUp     []func()

	// publisher
	publishing, publishAgain bool

	// lock-delay (lockdelay.go)
	ld         *lockdelay.Tracker
	vacant     bool
	held       ha.Epoch
	renewing   []renewal // renewals in flight
	renewIDs   int
	staleArmed bool // freeze with the next renewal that staleAcks waits for (lockdelay.go)

	// the renewer's pause rule, and the woken stale lessor (wake.go)
	pauses     lease.Pauses
	staleUntil time.Time // true time: renewals sent before then are answered by the woken member's stale lessor
	staleView  time.Time // the lease's expiry in that lessor's view (true time)

	// faults
	partReq, partResp, watchStall bool
	slowReq, slowResp             time.Duration

	// health
	svcUp, checkOK bool
	stoppedBy      string

	opBusy bool // one operator call at a time (the agent's opMu)
	// finished: switchovers this node's operator calls were told are over
	// and settled (operator.Settled): a later refusal by this node must not
	// be because of one of them (ophistory.go).
	finished map[string]bool
	// removed: the node's member was removed (members.go); removedAck:
	// when the operator was told so.
	removed    bool
	removedAck time.Time
	settledAt  time.Time // when the latest of them was answered

	// serving since (true time) at servingEpoch; firstEpisode: the first
	// time it serves at that epoch (the proxy's invariant, proxy.go).
	servingSince time.Time
	servingEpoch ha.Epoch
	firstEpisode bool
	lastServedAt ha.Epoch
}

type promotion struct {
	epoch ha.Epoch
	seq   uint64
	done  bool
	wait  []func()
	// delaying: the promotion waits on the lock-delay, which a
	// cancellation ends at once (the worker is free again: release).
	delaying bool
	release  func()
}

func newNode(w *world, n config.Node) *node {
	prio := map[string]int{}
	for _, m := range w.cfg.Nodes {
		prio[m.Name] = m.Priority
	}
	cfg := w.cfg
	return &node{
		w:    w,
		name: n.Name,
		mcfg: machine.Config{
			Node:           n.Name,
			FenceMargin:    cfg.Timing.FenceMargin,
			PromoteBackoff: cfg.Hooks.PromoteBackoff,
			Mode:           cfg.Mode,
			Backup:         n.Backup,
			Priorities:     prio,
			Preempt:        cfg.Preempt.Enabled,
			PreemptDelay:   cfg.Preempt.Delay,
		},
		// Clock rates up to the drift that config check assumes
		// (DriftAllowance: lease_ttl/100 + 10ms over a lease): ±1%.
		rate:    1 + (2*w.rng.Float64()-1)/100,
		svcUp:   true,
		checkOK: true,
	}
}

// now is the node's own clock.
func (n *node) now() time.Time {
	return t0.Add(time.Duration(float64(n.w.now().Sub(t0)) * n.rate))
}

// trueAt converts a time on the node's clock to true time.
func (n *node) trueAt(local time.Time) time.Time {
	return t0.Add(time.Duration(float64(local.Sub(t0)) / n.rate))
}

// afterLocal schedules f after d of the node's clock.
func (n *node) afterLocal(d time.Duration, f func()) {
	n.w.at(n.trueAt(n.now().Add(d)), n, f)
}

func (n *node) tracef(format string, args ...any) {
	if !n.w.tracing {
		return
	}
	n.w.tracef("%s: %s", n.name, fmt.Sprintf(format, args...))
}

// start runs a fresh agent process: state from scratch, a new connection.
func (n *node) start() {
	if n.removed {
		return // its etcd member is gone: the agent does not start
	}
	n.inc++
	if n.inc > 1 {
		n.w.res.Restarts++
	}
	n.alive, n.frozen, n.deferred = true, false, nil
	n.client = n.w.store.Client()
	n.st = machine.State{}
	n.work, n.busy, n.fence, n.fencing, n.promo, n.demotedSeq = nil, false, nil, false, nil, 0
	n.inFlight, n.waitNewSess, n.newSessSig, n.creating = 0, false, false, false
	n.snap, n.seenRev, n.watchPending, n.caughtUp = ha.Snapshot{Nodes: map[string]ha.NodeStatus{}}, -1, false, nil
	n.publishing, n.publishAgain, n.opBusy = false, false, false
	n.ld, n.vacant, n.held, n.renewing, n.staleArmed = lockdelay.NewTracker(nodeClock{Clock: n.w.clk, n: n}), false, 0, nil, false
	n.pauses, n.staleUntil = lease.Pauses{Gap: lease.PauseGap(n.timing().RenewInterval, n.timing().EtcdElection)}, time.Time{}
	n.svcUp, n.checkOK, n.stoppedBy = true, true, "" // a new process starts its service afresh
	n.tracef("agent starts (incarnation %d, clock rate %.4f)", n.inc, n.rate)
	n.step(machine.Tick{})
	n.refreshHealth()
	n.createSession(100 * time.Millisecond)
	n.watchChanged()
	n.armFenced()
	n.armHeartbeat()
}

// kill ends the process at once (SIGKILL): its service dies with it (Pdeathsig).
func (n *node) kill() {
	n.tracef("killed")
	n.alive = false
	n.w.dirty = true
	n.inc++
}

func (n *node) freeze(d time.Duration) {
	n.tracef("frozen for %s", d)
	n.frozen = true
	n.w.dirty = true
	n.freezes++
	gen := n.freezes
	n.w.after(d, nil, func() {
		// Only this freeze's own thaw: one from a freeze before a restart
		// ended a later freeze early (seeds 16643, 26005, 33789: a stale
		// wake thawed after 139 ms, too short for the pause rule).
		if !n.frozen || gen != n.freezes {
			return
		}
		n.thaw()
	})
}

func (n *node) thaw() {
	n.tracef("thawed")
	n.frozen = false
	n.w.dirty = true
	for _, e := range n.deferred {
		if e.inc == n.inc {
			n.w.at(n.w.now(), n, e.f) // in their original order
		}
	}
	n.deferred = nil
	n.watchChanged()
}

// serving is the /lb-check answer of a live, running process.
func (n *node) serving() bool {
	return n.alive && !n.frozen && n.st.Serving(n.mcfg, n.now())
}

// step is the agent's loop: one event into the agent's core (agent.Step),
// its effects carried out by this node's drivers.
func (n *node) step(ev machine.Event) {
	stepped := agent.Step(n.mcfg, n.st, ev, n.now())
	old, st := stepped.Old, stepped.New
	n.st = st
	n.w.dirty = true
	if st.Role != old.Role {
		if n.w.tracing {
			n.tracef("%s", roleStr(old, st))
		}
	}
	if st.Holding() && st.Epoch > 0 {
		n.w.held[st.Epoch] = n.name
	}
	if st.Holding() && st.Epoch < old.Epoch && old.Holding() {
		n.w.failf("%s's epoch went back from %d to %d", n.name, old.Epoch, st.Epoch)
	}
	if stepped.Demoted {
		n.demotedSeq = st.PromoteSeq
	}
	effs := stepped.Effects
	if n.w.o.NoViewPublish && !publishWorthyBefore(old, st) {
		effs = slices.DeleteFunc(slices.Clone(effs), func(e agent.Effect) bool { return e.Kind == agent.DoPublish })
	}
	n.dispatch(effs)
	n.armTick()
}

// publishWorthyBefore is the machine's publish rule before it counted
// LeaderKnown (NoViewPublish).
func publishWorthyBefore(a, b machine.State) bool {
	return a.Role != b.Role || a.Healthy != b.Healthy || a.HealthReason != b.HealthReason ||
		a.Epoch != b.Epoch || a.Leader != b.Leader || a.BackoffUntil != b.BackoffUntil ||
		a.SessionOK != b.SessionOK || a.Maintenance != b.Maintenance || a.Switchover.ID != b.Switchover.ID
}

// emit hands an event to the loop, as the agent's channels do.
func (n *node) emit(ev machine.Event) { n.w.after(0, n, func() { n.step(ev) }) }

func (n *node) armTick() {
	n.tickGen++
	d := n.st.NextDeadline(n.mcfg)
	if d.IsZero() {
		return
	}
	gen := n.tickGen
	t := n.trueAt(d)
	if !t.After(n.w.now()) {
		t = n.w.now().Add(time.Microsecond)
	}
	n.w.at(t, n, func() {
		if n.tickGen == gen {
			n.step(machine.Tick{})
		}
	})
}

// dispatch is agent.dispatch: the step's effects to this node's publisher,
// renewer, fencing lane and worker.
func (n *node) dispatch(effs []agent.Effect) {
	for _, e := range effs {
		switch e.Kind {
		case agent.DoPublish:
			n.publish()
		case agent.DoNewSession:
			n.newSessSig = true
			if n.waitNewSess {
				n.waitNewSess, n.newSessSig = false, false
				n.createSession(100 * time.Millisecond)
			}
		case agent.DoCancelPromote:
			n.cancelPromote(e.Epoch)
		case agent.DoFence:
			n.fence = append(n.fence, e.Job)
		case agent.DoWork:
			n.work = append(n.work, e.Act)
		}
	}
	n.kickFence()
	n.kickWorker()
}

// call is one store request: it arrives after a latency (unless the
// request direction is cut), commits on the store, and its answer comes
// back after another latency (unless the answer direction is cut), or the
// caller gives up after timeout on its own clock.
func (n *node) call(what string, timeout time.Duration, op func(c *memstore.Client) error, done func(error)) {
	n.callOn(n.client, what, timeout, op, done)
}

// callOn is call on connection c.
func (n *node) callOn(c *memstore.Client, what string, timeout time.Duration, op func(c *memstore.Client) error, done func(error)) {
	finished := false
	inc := n.inc
	n.w.after(n.latency()+n.slowReq, nil, func() {
		if n.partReq || inc != n.inc {
			return // lost on the way (or the process is gone: its connection too)
		}
		err := op(c)
		n.w.after(n.latency()+n.slowResp, n, func() {
			if finished || n.partResp {
				return
			}
			finished = true
			done(err)
		})
	})
	n.afterLocal(timeout, func() {
		if !finished {
			finished = true
			done(fmt.Errorf("%s: %w", what, errTimeout))
		}
	})
}

// poll is how long after a change a goroutine that polls every d sees it.
func (n *node) poll(d time.Duration) time.Duration {
	return time.Duration(n.w.rng.Int64N(int64(d)))
}

func (n *node) latency() time.Duration {
	return time.Duration(200+n.w.rng.IntN(3000)) * time.Microsecond
}

func (n *node) timing() config.Timing { return n.w.cfg.Timing }

// The agent's store deadlines (agent.Deadlines).
func callTimeout(t config.Timing) time.Duration {
	call, _, _ := agent.Deadlines(t)
	return call
}

func sessionTimeout(t config.Timing) time.Duration {
	_, session, _ := agent.Deadlines(t)
	return session
}

func opTimeout(t config.Timing) time.Duration {
	_, _, op := agent.Deadlines(t)
	return op
}

// ---- renewer (agent.renew) ----

// Each attempt is a new connection that the node adopts only when the
// answer arrives: like the etcd client's lease id, a session whose grant
// was lost on the way back is unknown to the agent.
func (n *node) createSession(backoff time.Duration) {
	t := n.timing()
	sent := n.now()
	var ttl time.Duration
	n.creating = true
	conn := n.w.store.Client()
	n.callOn(conn, "new session", sessionTimeout(t), func(c *memstore.Client) (err error) {
		ttl, err = c.NewSession(bg, t.LeaseTTL)
		return err
	}, func(err error) {
		if err != nil {
			n.afterLocal(backoff, func() { n.createSession(min(2*backoff, time.Second)) })
			return
		}
		if n.w.o.NoRemovalGuard {
			n.sessionCreated(conn, sent, ttl)
			return
		}
		// lease.Options.Created: the record goes into the store, bound to
		// the new session, before the machine hears of it.
		rec := n.record()
		n.callOn(conn, "publish", callTimeout(t), func(c *memstore.Client) error { return c.Publish(bg, rec) }, func(err error) {
			if err != nil {
				n.afterLocal(backoff, func() { n.createSession(min(2*backoff, time.Second)) })
				return
			}
			n.sessionCreated(conn, sent, ttl)
		})
	})
}

// sessionCreated: the renewer reports the new session on conn.
func (n *node) sessionCreated(conn *memstore.Client, sent time.Time, ttl time.Duration) {
	n.client = conn
	n.creating = false
	n.sessGen++
	n.tracef("session created")
	n.pauses.Start(n.now())
	n.emit(machine.SessionRenewed{SentAt: sent, TTL: ttl, New: true})
	n.publish()
	n.armRenew()
}

// armRenew starts the wait for the next renewal; like the agent's select on
// clk.After, every answer handled restarts it.
func (n *node) armRenew() {
	n.renewGen++
	gen := n.renewGen
	n.afterLocal(n.timing().RenewInterval, func() {
		if gen != n.renewGen || n.waitNewSess || n.creating {
			return
		}
		// The renewer's own rule (lease.Run): after a pause, renewals
		// count only once confirmed (etcdstore.RenewConfirmed).
		confirm := false
		if !n.w.o.NoPauseGuard {
			confirm, _ = n.pauses.Fire(n.now())
		}
		if n.inFlight >= 4 {
			n.armRenew()
			return
		}
		n.inFlight++
		sent, sg := n.now(), n.sessGen
		n.renewIDs++
		id := n.renewIDs
		n.renewing = append(n.renewing, renewal{id: id, sent: sent, sg: sg, cut: n.partReq})
		var ttl time.Duration
		done := func(err error) {
			n.inFlight--
			n.pauses.Answered(sent, confirm, sg == n.sessGen, err == nil)
			for i, r := range n.renewing {
				if r.id == id {
					n.renewing = append(n.renewing[:i], n.renewing[i+1:]...)
					break
				}
			}
			if sg != n.sessGen || n.waitNewSess || n.creating {
				return // the renewer has moved on to a new session
			}
			switch {
			case err == nil:
				n.emit(machine.SessionRenewed{SentAt: sent, TTL: ttl})
			case n.w.tracing && confirm && !errors.Is(err, ha.ErrSessionLost):
				n.tracef("renewal sent at %s not counted: %v", sent.Sub(t0), err)
			case errors.Is(err, ha.ErrSessionLost):
				n.tracef("session lost")
				n.emit(machine.SessionLost{Err: err})
				n.renewGen++
				if n.newSessSig {
					n.newSessSig = false
					n.createSession(100 * time.Millisecond)
				} else {
					n.waitNewSess = true
				}
				return
			}
			n.armRenew()
		}
		if n.w.now().Before(n.staleUntil) {
			n.staleRenewal(confirm, &ttl, done)
		} else {
			// Confirmed or not, a renewal that reaches the store's primary
			// is granted: memstore has no stale view of its own.
			n.call("renew", n.timing().RenewTimeout, func(c *memstore.Client) (err error) {
				ttl, err = c.Renew(bg)
				return err
			}, done)
		}
		if n.staleArmed {
			n.staleFreezeNow(sent)
		}
		n.armRenew()
	})
}

// ---- watcher (agent.watch) ----

// watchChanged starts a delivery of the store's latest snapshot if the
// node has not seen it and its watch can get it.
func (n *node) watchChanged() {
	if !n.alive || n.frozen || n.watchPending || n.partResp || n.watchStall {
		return
	}
	if n.w.store.Rev() == n.seenRev {
		return
	}
	n.watchPending = true
	n.w.after(n.latency()+n.slowResp, n, func() {
		n.watchPending = false
		if n.partResp || n.watchStall {
			return
		}
		snap := n.w.store.Snapshot()
		n.seenRev = snap.Rev
		n.snap = snap
		n.noteVacancy(snap)
		for _, ev := range agent.SeenEvents(n.name, snap, n.now()) {
			n.step(ev)
		}
		waiters := n.caughtUp
		n.caughtUp = nil
		for _, f := range waiters {
			f()
		}
		n.watchChanged()
	})
}

// watchBehind: the watch failed and starts over, and its first read
// cannot be served while watchStall lasts (an etcd member cut off from its
// quorum). The store driver tells the watcher (ha.Snapshot.Behind) once,
// if it had sent a snapshot; the next delivery is a current snapshot,
// changed or not.
func (n *node) watchBehind() {
	inc := n.inc
	n.w.after(n.latency(), n, func() {
		if inc != n.inc || !n.alive || n.seenRev < 0 {
			return
		}
		n.seenRev = -1
		n.w.res.ViewsLost++
		behind := n.snap
		behind.Behind = true
		for _, ev := range agent.SeenEvents(n.name, behind, n.now()) {
			n.step(ev)
		}
	})
}

// ---- worker (agent.worker / agent.do) ----

func (n *node) kickWorker() {
	if n.busy || len(n.work) == 0 {
		return
	}
	act := n.work[0]
	n.work = n.work[1:]
	n.busy = true
	n.do(act, func() {
		n.busy = false
		n.kickWorker()
	})
}

func (n *node) do(act machine.Action, done func()) {
	t := n.timing()
	switch act := act.(type) {
	case machine.Campaign:
		var epoch ha.Epoch
		n.call("campaign", callTimeout(t), func(c *memstore.Client) (err error) {
			epoch, err = c.Campaign(bg, n.name)
			return err
		}, func(err error) {
			if act.Reclaim != 0 || (err != nil && !errors.Is(err, ha.ErrTaken)) {
				n.tracef("campaign (reclaim %d): epoch %d, %v", act.Reclaim, epoch, err)
			}
			finish := func(err error) {
				if pace := agent.CampaignPace(err); pace > 0 {
					n.afterLocal(pace, func() {
						n.emit(machine.CampaignResult{Epoch: epoch, Err: err})
						done()
					})
					return
				}
				n.emit(machine.CampaignResult{Epoch: epoch, Err: err})
				done()
			}
			if err != nil {
				finish(err)
				return
			}
			n.waitCaughtUp(epoch, func(ok bool) {
				n.decideLockDelay(epoch) // on the vacancy seen before the win
				if ok {
					finish(nil)
					return
				}
				n.tracef("won at epoch %d, but the watch did not show it; handing the key back", epoch)
				n.resignAfterLockDelay(epoch, func() {
					n.call("resign", callTimeout(t), func(c *memstore.Client) error { return c.Resign(bg, n.name, epoch) }, func(error) {
						finish(agent.WinUnconfirmed(epoch))
					})
				})
			})
		})
	case machine.Promote:
		if err := agent.PromoteRefused(act, n.demotedSeq); err != nil {
			n.emit(machine.PromoteResult{Epoch: act.Epoch, Seq: act.Seq, Err: err})
			done()
			return
		}
		p := &promotion{epoch: act.Epoch, seq: act.Seq}
		n.promo = p
		act2 := func() {
			// The service and on_promote: a few ms.
			n.afterLocal(time.Duration(1+n.w.rng.IntN(50))*time.Millisecond, func() {
				n.endPromote(p, nil)
				done()
			})
		}
		wait := n.lockDelayWait(act.Epoch)
		if wait == 0 {
			n.settleTenure(act.Epoch)
			act2()
			return
		}
		// The lock-delay: the worker waits, unless a demotion cancels it.
		n.w.res.LockDelays++
		p.delaying = true
		p.release = done
		n.afterLocal(wait, func() {
			if p.done {
				return // cancelled: the worker was released then
			}
			p.delaying = false
			n.tracef("lock delay for epoch %d over", act.Epoch)
			n.settleTenure(act.Epoch)
			act2()
		})
	case machine.Resign:
		n.resignAfterLockDelay(act.Epoch, func() { n.resign(act.Epoch, 1, agent.FirstResignBackoff, done) })
	case machine.RequestSwitchover:
		sw := agent.SelfSwitchover(n.w.newID(), n.snap.Leader, n.name, act.Reason, n.now())
		n.call("request switchover", callTimeout(t), func(c *memstore.Client) error { return c.RequestSwitchover(bg, sw) }, func(err error) {
			if err == nil {
				n.tracef("asked for a switchover to itself (%s)", act.Reason)
			}
			done()
		})
	case machine.ClearSwitchover:
		n.call("clear switchover", callTimeout(t), func(c *memstore.Client) error { return c.ClearSwitchover(bg, act.ID) }, func(error) { done() })
	default:
		done()
	}
}

func (n *node) resign(epoch ha.Epoch, try int, backoff time.Duration, done func()) {
	n.call("resign", callTimeout(n.timing()), func(c *memstore.Client) error { return c.Resign(bg, n.name, epoch) }, func(err error) {
		if agent.ResignDone(err) || try == agent.ResignTries {
			done()
			return
		}
		n.afterLocal(backoff, func() { n.resign(epoch, try+1, agent.NextResignBackoff(backoff), done) })
	})
}

// waitCaughtUp mirrors agent.watchCaughtUp: the watch must show the win
// (or a later epoch) within lease_ttl.
func (n *node) waitCaughtUp(epoch ha.Epoch, done func(bool)) {
	over := false
	check := func() bool { return agent.WinSeen(n.snap.Leader, n.name, epoch) }
	if check() {
		done(true)
		return
	}
	var wait func()
	wait = func() {
		if over {
			return
		}
		if check() {
			// The agent's worker polls the watched snapshot every
			// millisecond: it sees the win up to 1 ms after the watcher
			// stored it, and the watcher's next snapshot may reach the
			// loop first.
			over = true
			n.afterLocal(n.poll(time.Millisecond), func() { done(true) })
			return
		}
		n.caughtUp = append(n.caughtUp, wait)
	}
	n.caughtUp = append(n.caughtUp, wait)
	n.afterLocal(n.timing().LeaseTTL, func() {
		if !over {
			over = true
			done(false)
		}
	})
}

func (n *node) endPromote(p *promotion, err error) {
	if p.done {
		return
	}
	p.done = true
	if n.promo == p {
		n.promo = nil
	}
	n.emit(machine.PromoteResult{Epoch: p.epoch, Seq: p.seq, Err: err})
	for _, f := range p.wait {
		f()
	}
}

// cancelPromote: a demotion of the epoch being promoted cancels it.
func (n *node) cancelPromote(epoch ha.Epoch) {
	if p := n.promo; p != nil && p.epoch == epoch {
		n.endPromote(p, context.Canceled)
		if p.delaying {
			p.delaying = false
			p.release()
		}
	}
}

// ---- fencing lane (agent.fencer) ----

func (n *node) kickFence() {
	if n.fencing || len(n.fence) == 0 {
		return
	}
	job := n.fence[0]
	n.fence = n.fence[1:]
	n.fencing = true
	if job.Demote.Fenced {
		n.w.res.Fenced++
	}
	// on_demote and stopping the service: a few ms, never past the deadline.
	d := time.Duration(1+n.w.rng.IntN(30)) * time.Millisecond
	n.afterLocal(d, func() {
		n.fencing = false
		n.work = append(n.work, job.Then...)
		n.emit(machine.DemoteResult{Epoch: job.Demote.Epoch})
		n.kickWorker()
		n.kickFence()
	})
}

// ---- publisher (agent.publisher) ----

// armHeartbeat is the publisher's ticker: a write of the record every
// agent.HeartbeatInterval of the node's clock, changed or not.
func (n *node) armHeartbeat() {
	inc := n.inc
	n.afterLocal(agent.HeartbeatInterval, func() {
		if inc != n.inc {
			return
		}
		n.publish()
		n.armHeartbeat()
	})
}

func (n *node) publish() {
	if n.publishing {
		n.publishAgain = true
		return
	}
	n.publishing = true
	rec := n.record()
	n.call("publish", callTimeout(n.timing()), func(c *memstore.Client) error { return c.Publish(bg, rec) }, func(error) {
		n.publishing = false
		if n.publishAgain {
			n.publishAgain = false
			n.publish()
		}
	})
}

// record is the agent's record (agent.RecordOf): what the machine decides.
// NoHeldBy: without the intent that holds it back, as before 2026-12-07.
func (n *node) record() ha.NodeStatus {
	rec := agent.RecordOf(n.mcfg, n.st, n.now())
	if n.w.o.NoHeldBy {
		rec.HeldBy = ""
	}
	return rec
}

// view is what the agent's operator handlers see (agent.snapshot): the
// watched snapshot with this node's live record.
func (n *node) view() ha.Snapshot {
	snap := n.snap
	nodes := make(map[string]ha.NodeStatus, len(snap.Nodes)+1)
	for k, v := range snap.Nodes {
		nodes[k] = v
	}
	nodes[n.name] = n.record()
	snap.Nodes = nodes
	return snap
}

// ---- health (agent.effectiveHealth) ----

// refreshHealth feeds the machine the agent's health (agent.HealthOf) of a
// warm standby's supervised service and one check.
func (n *node) refreshHealth() {
	if n.frozen {
		// The service and its checks run on, but the agent sees them only
		// once it runs again (a fault's first flip came here directly,
		// and stepped a frozen agent: seed 1321 after the stale wake was
		// added, a demotion inside a freeze).
		n.w.at(n.w.now(), n, n.refreshHealth)
		return
	}
	checks := check.Result{Healthy: n.checkOK, Reason: "checks pass"}
	if !n.checkOK {
		checks.Reason = "check failed"
	}
	ok, why := agent.HealthOf(agent.HealthInputs{Role: n.st.Role, Service: true, Running: n.svcUp, StoppedBy: n.stoppedBy, Checks: checks})
	if ok != n.st.Healthy || why != n.st.HealthReason {
		n.step(machine.HealthChanged{Healthy: ok, Reason: why})
	}
}
