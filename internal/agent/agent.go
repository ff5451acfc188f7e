// Package agent is the driver around the role state machine: it renews the
// session, watches the store, runs health checks and the supervised service,
// feeds what it sees to machine.Step as events and carries out the actions
// Step returns. All decisions are the machine's; this package only does I/O.
// Package node wires an agent to its etcd member, listeners, dashboard and
// proxy.
//
// Goroutines: one loop owns the machine state and steps it; a renewer keeps
// the session alive; a watcher turns store snapshots into LeaderSeen events;
// a worker carries out the ordered actions (campaign, promote, demote,
// resign); a publisher writes this node's status record. Readers such as the
// HTTP API see the state through an atomic pointer and never block.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/folders"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/operator"
	"github.com/haven-ha/haven/internal/proxyvip"
	"github.com/haven-ha/haven/internal/service"
	"github.com/haven-ha/haven/internal/service/contain"
)

// Version is set by the wiring (cli) for status records.
var Version = "dev"

// Agent runs one node.
type Agent struct {
	cfg   *config.Config
	node  config.Node
	vars  map[string]string
	mcfg  machine.Config
	clk   clock.Clock
	log   *slog.Logger
	store ha.Store
	tls   *certs.Source // this node's TLS material; nil without TLS

	health *check.Runner
	svc    *service.Supervisor // nil when the service is managed by hooks only
	group  *contain.Group      // the service's cgroup or process group; nil with svc

	events    chan machine.Event
	late      sync.WaitGroup // results emitAsync could not queue at once (Run joins them)
	lateStop  chan struct{}  // closed when Run no longer reads events
	work      chan machine.Action
	fenceC    chan FenceJob // demotions: the fencing lane (fence.go)
	publishC  chan struct{}
	newSessC  chan struct{}
	healthC   chan struct{}
	roleC     chan struct{} // signalled on every role change (keepLeaderAway)
	state     atomic.Pointer[machine.State]
	snap      atomic.Pointer[ha.Snapshot]
	view      storeView // how current snap is (leaderknown.go)
	metrics   *Metrics
	startedAt time.Time

	// roleChanged is closed and replaced when the role, epoch, health or
	// session changes (RoleChanged).
	roleChanged atomic.Pointer[chan struct{}]

	promoteMu     sync.Mutex
	promoteCancel context.CancelFunc
	promoteEpoch  ha.Epoch
	promoteDone   chan struct{} // closed when the promotion at promoteEpoch returns
	demotedSeq    atomic.Uint64 // promotions up to this Seq were demoted: never start them

	resignUntil atomic.Pointer[time.Time] // a stopping agent's resigns end by then (resignDeadline)
	sessGone    sessionLoss               // closed channel per session the store dropped (resigns stop)
	// Lock-delay (lockdelay.go).
	lockDelayed atomic.Pointer[ha.LockDelay] // the latest promotion's wait on it
	ld          *lockdelay.Tracker           // the key's vacancy and the decision of the latest win

	eventC    chan ha.Event
	opMu      sync.Mutex // one operator action at a time on this agent
	auditMu   sync.Mutex
	failedAt  atomic.Pointer[time.Time] // when the service last failed while this node was active
	askC      chan ask
	stoppedBy atomic.Pointer[string] // operator who stopped the service, if any
	presence  presenceState          // nodes lost, found, restarted

	vip *vipDriver // nil when no vip is configured
	// followProxy: the VIP's own election (vip.follow: proxy, proxyvip.go);
	// nil otherwise.
	followProxy atomic.Pointer[proxyvip.Elector]
	// sessStats reports the session store's size, when it runs (sessions.go).
	sessStats atomic.Pointer[func() ha.SessionStats]
	// the store's members as monitor last listed them (nil: unknown)
	members atomic.Pointer[[]ha.Member]
	op      *operator.Operator // switchover, promote, maintenance (ops.go)
	// folders replicates the sync: folders; nil when there are none (folders.go).
	folders *folders.Service
	// leadsEtcd: whether this node's etcd member leads raft (campaign.go);
	// nil without an embedded member.
	leadsEtcd func() bool
}

func priorities(cfg *config.Config) map[string]int { return cfg.Priorities() }

// New builds an agent for node from cfg, using store for coordination,
// operator intents, the history and the service's fenced data.
func New(cfg *config.Config, node config.Node, store ha.Store, clk clock.Clock, log *slog.Logger) (*Agent, error) {
	vars := cfg.Vars(node)
	runner, err := check.NewRunner(cfg.Checks, vars, log.With("part", "check"), check.WithClock(clk))
	if err != nil {
		return nil, fmt.Errorf("health checks: %w", err)
	}
	a := &Agent{
		cfg:  cfg,
		node: node,
		vars: vars,
		mcfg: machine.Config{
			Node:           node.Name,
			FenceMargin:    cfg.Timing.FenceMargin,
			PromoteBackoff: cfg.Hooks.PromoteBackoff,
			Mode:           cfg.Mode,
			Backup:         node.Backup,
			Priorities:     priorities(cfg),
			Preempt:        cfg.Preempt.Enabled,
			PreemptDelay:   cfg.Preempt.Delay,
			Failsafe:       cfg.OutagePolicy == config.OutageFailsafe,
		},
		clk:       clk,
		log:       log,
		store:     store,
		health:    runner,
		events:    make(chan machine.Event, 64),
		lateStop:  make(chan struct{}),
		work:      make(chan machine.Action, 64),
		fenceC:    make(chan FenceJob, 16),
		publishC:  make(chan struct{}, 1),
		newSessC:  make(chan struct{}, 1),
		healthC:   make(chan struct{}, 1),
		roleC:     make(chan struct{}, 1),
		eventC:    make(chan ha.Event, 256),
		askC:      make(chan ask),
		startedAt: clk.Now(),
		ld:        lockdelay.NewTracker(clk),
	}
	if len(cfg.Service.Command) > 0 {
		if a.group, err = openGroup(cfg, node, log); err != nil {
			return nil, err
		}
		a.svc = service.New(cfg.Service.Options(), vars, log.With("part", "service"), service.WithGroup(a.group), service.WithClock(clk))
	}
	a.metrics = newMetrics(a)
	a.op = a.newOperator()
	if err := a.newVIP(); err != nil {
		return nil, err
	}
	st := machine.State{}
	st, _ = machine.Step(a.mcfg, st, machine.Tick{}, clk.Now())
	a.state.Store(&st)
	changed := make(chan struct{})
	a.roleChanged.Store(&changed)
	a.snap.Store(&ha.Snapshot{Nodes: map[string]ha.NodeStatus{}})
	return a, nil
}

// Run drives the node until ctx ends, then leaves the active role, stops the
// service and returns.
func (a *Agent) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	spawn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg) }()
	}
	spawn(a.health.Run)
	spawn(a.forwardHealth)
	spawn(a.renew)
	spawn(a.watch)
	spawn(a.worker)
	spawn(a.fencer)
	spawn(a.publisher)
	spawn(a.eventWriter)
	spawn(a.rememberFailover)
	if a.cfg.OutagePolicy == config.OutageFailsafe {
		spawn(a.failsafeLoop)
	}
	if a.vip != nil {
		spawn(a.vipLoop)
	}
	if a.svc != nil {
		spawn(a.forwardService)
		if a.cfg.Service.Standby != config.StandbyCold {
			a.svc.SetRole(string(ha.RoleStandby), 0)
			if err := a.svc.Start(); err != nil {
				a.log.Error("cannot start the service; the node stays ineligible until it runs", "err", err)
			}
		}
	}
	a.loop(ctx)

	// Shutting down: the machine demotes if needed; wait for it to settle.
	a.step(machine.Shutdown{})
	a.settle(a.clk.After(a.cfg.Hooks.OnDemote.Timeout + 5*time.Second))
	a.vipRemove("agent stopping")
	if a.svc != nil {
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Service.StopGrace+time.Second)
		if err := a.svc.Stop(sctx); err != nil {
			a.log.Warn("stop service", "err", err)
		}
		cancel()
		if err := a.group.Close(); err != nil {
			a.log.Warn("close the service's group", "err", err)
		}
	}
	a.publishNow(context.Background())
	stopBG()
	wg.Wait()
	close(a.lateStop)
	a.late.Wait()
	a.vipClose()
	return nil
}

// settle steps the events of a shutdown until the machine has stopped or
// deadline fires.
func (a *Agent) settle(deadline <-chan time.Time) {
	for a.State().Role != ha.RoleStopped {
		select {
		case ev := <-a.events:
			a.step(ev)
		case <-deadline:
			a.log.Warn("shutdown: demotion did not finish in time", "role", a.State().Role)
			return
		}
	}
}

func (a *Agent) loop(ctx context.Context) {
	for {
		var timer <-chan time.Time
		st := a.State()
		if d := st.NextDeadline(a.mcfg); !d.IsZero() {
			timer = a.clk.After(d.Sub(a.clk.Now()))
		}
		select {
		case ev := <-a.events:
			a.step(ev)
		case <-a.healthC:
			a.refreshHealth()
		case r := <-a.askC:
			a.step(r.ev)
			r.reply <- a.State()
		case <-timer:
			a.step(machine.Tick{})
		case <-ctx.Done():
			return
		}
	}
}

// step applies one event and dispatches the resulting actions. Only the loop
// goroutine calls it.
func (a *Agent) step(ev machine.Event) {
	stepped := Step(a.mcfg, a.State(), ev, a.clk.Now())
	old, st := stepped.Old, stepped.New
	a.state.Store(&st)
	if st.Role != old.Role || st.Epoch != old.Epoch || st.Healthy != old.Healthy || st.SessionOK != old.SessionOK {
		a.noteRoleChange()
	}
	if st.Role != old.Role {
		a.log.Info("role change", "from", old.Role, "to", st.Role, "epoch", st.Epoch, "reason", st.Reason)
		a.metrics.roleChanged(old.Role, st.Role)
		a.record(ha.Event{Kind: "role", Epoch: st.Epoch, From: string(old.Role), To: string(st.Role),
			Reason: st.Reason, Duration: st.Since.Sub(old.Since)})
	}
	if st.Healthy != old.Healthy && old.Role != "" {
		kind := map[bool]string{true: "healthy", false: "unhealthy"}
		a.record(ha.Event{Kind: "health", From: kind[old.Healthy], To: kind[st.Healthy], Reason: st.HealthReason})
	}
	if stepped.Demoted {
		a.demotedSeq.Store(st.PromoteSeq) // the promotion being demoted is the latest
	}
	a.dispatch(stepped.Effects)
	if st.Role != old.Role {
		// Health of a cold standby depends on the role.
		a.refreshHealth()
		signal(a.roleC)
		if a.vip != nil {
			signal(a.vip.wake)
		}
	}
}

// State returns the current machine state.
func (a *Agent) State() machine.State { return *a.state.Load() }

// Serving reports whether this node should receive traffic now.
func (a *Agent) Serving() bool { return a.State().Serving(a.mcfg, a.clk.Now()) }

// emit feeds an event to the machine, or gives up when ctx ends: once Run
// has stopped reading events, a send that waited on a full queue would
// never end, and Run waits for its goroutines (an agent that renewed its
// lease during a long shutdown hung past SIGTERM with the queue full).
// It reports whether the event was handed over.
func (a *Agent) emit(ctx context.Context, ev machine.Event) bool {
	select {
	case a.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// recentFailure is how long this node must still wait after its service
// failed while it was active (zero if it need not).
func (a *Agent) recentFailure() time.Duration {
	t := a.failedAt.Load()
	if t == nil {
		return 0
	}
	return max(0, a.cfg.Hooks.PromoteBackoff-a.clk.Since(*t))
}

// effectiveHealth combines the checks with the state of the process.
func (a *Agent) effectiveHealth(role ha.Role) (bool, string) {
	h := HealthInputs{Role: role, VIPDown: a.vipLinkDown(), Service: a.svc != nil, Checks: a.health.Current()}
	if a.svc != nil {
		h.Cold = a.cfg.Service.Standby == config.StandbyCold
		h.Running = a.svc.Running()
	}
	if by := a.stoppedBy.Load(); by != nil {
		h.StoppedBy = *by
	}
	if h.Cold {
		h.RecentFailure = a.recentFailure()
	}
	return HealthOf(h)
}

func (a *Agent) refreshHealth() {
	st := a.State()
	ok, why := a.effectiveHealth(st.Role)
	if ok != st.Healthy || why != st.HealthReason {
		a.step(machine.HealthChanged{Healthy: ok, Reason: why})
	}
}

func (a *Agent) forwardHealth(ctx context.Context) {
	for {
		select {
		case r := <-a.health.Updates():
			a.metrics.healthy(r.Healthy)
			signal(a.healthC)
		case <-ctx.Done():
			return
		}
	}
}

func (a *Agent) forwardService(ctx context.Context) {
	for {
		select {
		case ev := <-a.svc.Events():
			if ev.Kind == service.Exited {
				a.log.Warn("service exited", "pid", ev.PID, "err", ev.Err)
				if r := a.State().Role; r == ha.RoleActive || r == ha.RolePromoting {
					now := a.clk.Now()
					a.failedAt.Store(&now)
					a.clk.AfterFunc(a.cfg.Hooks.PromoteBackoff, func() { signal(a.healthC) })
				}
				a.health.ForceFail(fmt.Sprintf("service exited (pid %d): %v", ev.PID, ev.Err))
			}
			signal(a.healthC)
			signal(a.publishC)
		case <-ctx.Done():
			return
		}
	}
}

// renew keeps the session alive and reports each renewal to the machine
// (package lease: pipelined renewals, each counted from when it was sent).
func (a *Agent) renew(ctx context.Context) {
	t := a.cfg.Timing
	r, err := lease.New(lease.Options{
		Store: a.store, TTL: t.LeaseTTL, Interval: t.RenewInterval, Timeout: t.RenewTimeout,
		CreateTimeout: sessionTimeout(t), FenceMargin: t.FenceMargin, Clock: a.clk, Log: a.log,
		ElectionTimeout: t.EtcdElection, // after a pause longer than 4/5 of it, renewals are confirmed
		// The record goes into the store, bound to the new session, before
		// the machine may serve on it: a removal that sees no record of
		// this node after its commit can trust it (RemovedGone).
		Created: a.publishNow,
		Granted: func(ctx context.Context, r lease.Renewal) bool {
			a.view.reached(r.SentAt)
			if r.New {
				a.log.Info("session created", "ttl", r.TTL)
			}
			if !a.emit(ctx, machine.SessionRenewed{SentAt: r.SentAt, TTL: r.TTL, New: r.New}) {
				return false
			}
			if r.New {
				signal(a.publishC)
			}
			return true
		},
		Answered: a.metrics.answered,
		Failed: func(r lease.Renewal) {
			a.log.Warn("lease renewal failed", "err", r.Err, "after", r.Took.Round(time.Millisecond))
		},
		Lost: func(ctx context.Context, err error) bool {
			a.log.Warn("session lost in the store; creating a new one")
			a.sessGone.lost() // the keys bound to it went with it: resigns of them stop
			if !a.emit(ctx, machine.SessionLost{Err: err}) {
				return false
			}
			select { // the machine asks for the new session (NewSession)
			case <-a.newSessC:
				return true
			case <-ctx.Done():
				return false
			}
		},
	})
	if err != nil {
		a.log.Error("cannot renew the session", "err", err)
		return
	}
	r.Run(ctx)
}

func sleep(ctx context.Context, clk clock.Clock, d time.Duration) {
	select {
	case <-clk.After(d):
	case <-ctx.Done():
	}
}

func (a *Agent) watch(ctx context.Context) {
	vacant, held := false, ha.Epoch(0)
	for ctx.Err() == nil {
		for snap := range a.store.Watch(ctx) {
			s := snap
			if s.Behind {
				// The watch is starting over: no contact, no news, but
				// the view is no longer current (SeenEvents).
				a.log.Debug("the store's watch is starting over; the view is behind until it reads the store again", "rev", s.Rev)
				a.view.behind.Store(true)
				for _, ev := range SeenEvents(a.node.Name, s, a.clk.Now()) {
					if !a.emit(ctx, ev) {
						return
					}
				}
				continue
			}
			if s.Leader.None() && !vacant && held != 0 {
				a.log.Debug("the leader key is gone", "epoch", held, "rev", s.Rev)
			}
			vacant = a.ld.NoteVacancy(s, vacant, held) // before the machine hears of it (lockdelay.go)
			if !s.Leader.None() {
				held = s.Leader.Epoch
			}
			a.snap.Store(&s)
			a.view.reached(a.clk.Now())
			a.view.snapshot.Store(true)
			a.view.behind.Store(false)
			a.metrics.leader(s.Leader)
			a.observePresence(s)
			for _, ev := range SeenEvents(a.node.Name, s, a.clk.Now()) { // intents first
				select {
				case a.events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// IntentsFor turns the store's intents into node's machine's terms at now
// (the node's clock): the switchover's wall-clock deadline becomes a time
// on that clock.
func IntentsFor(node string, s ha.Snapshot, now time.Time) machine.IntentsSeen {
	ev := machine.IntentsSeen{Maintenance: s.Intents.Maintenance[node]}
	if sw := s.Intents.Switchover; sw != nil {
		ev.Switchover = *sw
		ev.SwitchoverUntil = now.Add(sw.Deadline.Sub(now))
	}
	return ev
}

// worker carries out actions one at a time, in the order the machine gave.
func (a *Agent) worker(ctx context.Context) {
	for {
		select {
		case act := <-a.work:
			a.do(ctx, act)
		case <-ctx.Done():
			// Drain what the shutdown asked for.
			for {
				select {
				case act := <-a.work:
					a.do(context.Background(), act)
				default:
					return
				}
			}
		}
	}
}

func (a *Agent) do(ctx context.Context, act machine.Action) {
	switch act := act.(type) {
	case machine.Campaign:
		if act.Reclaim == 0 && a.leadsEtcd != nil {
			snap := a.Snapshot()
			if d := campaignDefer(a.leadsEtcd(), snap, a.node.Name, a.mcfg.Priorities, a.cfg.Timing); d > 0 {
				a.log.Debug("this member leads etcd: letting another standby campaign first", "for", d)
				sleep(ctx, a.clk, d)
				if sw := a.Snapshot().Intents.Switchover; DeferredCampaignStale(snap.Intents.Switchover, sw, a.node.Name, a.clk.Now()) {
					a.log.Debug("a switchover to another node began while the campaign waited: not campaigning", "to", sw.To, "id", sw.ID)
					a.emitAsync(machine.CampaignResult{Err: ha.ErrTaken})
					return
				}
			}
			a.awaitExpiryRecord(ctx) // campaign.go
		}
		cctx, cancel := clock.WithTimeout(ctx, a.clk, callTimeout(a.cfg.Timing))
		asked := a.clk.Now()
		epoch, err := a.store.Campaign(cctx, a.node.Name)
		cancel()
		a.log.Debug("campaign", "epoch", epoch, "err", err, "took", a.clk.Since(asked).Round(time.Millisecond))
		if act.Reclaim != 0 {
			if err == nil {
				a.log.Warn("the leader key in this node's name is bound to its session: a campaign committed although its answer was lost; taking it up", "epoch", epoch)
			} else {
				a.log.Info("the leader key in this node's name is not this session's; waiting for it to expire", "epoch", act.Reclaim, "err", err)
			}
		}
		if err == nil && !a.watchCaughtUp(ctx, epoch) {
			// The watch and the campaign answer travel apart: report a win
			// only after the watch has shown it, so that no snapshot from
			// before the win reaches the machine after it (it would read
			// "key lost" and demote). No confirmation: hand the key back.
			// The resign records a clean end, on which the next winner acts
			// at once: like any resign it must not come while the previous
			// holder may act (lockdelay.go). watchCaughtUp gave up at once
			// if the agent is stopping: then the key goes with the session,
			// unrecorded, and the next winner waits.
			a.decideLockDelay(epoch)
			if ctx.Err() == nil {
				a.log.Warn("won, but the watch did not show it; handing the key back", "epoch", epoch)
				if a.resignAfterLockDelay(ctx, epoch) {
					rctx, rcancel := clock.WithTimeout(context.WithoutCancel(ctx), a.clk, callTimeout(a.cfg.Timing))
					_ = a.store.Resign(rctx, a.node.Name, epoch)
					rcancel()
				}
			}
			err = WinUnconfirmed(epoch)
		}
		if err == nil {
			a.decideLockDelay(epoch) // on the vacancy seen before the win (lockdelay.go)
		}
		if pace := CampaignPace(err); pace > 0 {
			// The store is failing: pace the retries the machine will ask for.
			a.log.Warn("campaign failed", "err", err)
			sleep(ctx, a.clk, pace)
		}
		a.emitAsync(machine.CampaignResult{Epoch: epoch, Err: err})
	case machine.Promote:
		if err := PromoteRefused(act, a.demotedSeq.Load()); err != nil {
			// Demoted while this waited behind store calls: starting the
			// service or on_promote now would act after the demotion.
			a.emitAsync(machine.PromoteResult{Epoch: act.Epoch, Seq: act.Seq, Err: err})
			return
		}
		err := a.promote(ctx, act.Epoch)
		a.emitAsync(machine.PromoteResult{Epoch: act.Epoch, Seq: act.Seq, Err: err})
	case machine.RequestSwitchover:
		leader := a.Snapshot().Leader
		sw := SelfSwitchover(newID(), leader, a.node.Name, act.Reason, a.clk.Now())
		cctx, cancel := clock.WithTimeout(ctx, a.clk, callTimeout(a.cfg.Timing))
		err := a.store.RequestSwitchover(cctx, sw)
		cancel()
		if err == nil {
			a.log.Info("asked for a switchover to this node", "reason", act.Reason)
			a.record(ha.Event{Kind: "switchover", From: leader.Node, To: a.node.Name, Epoch: leader.Epoch, Reason: act.Reason})
		}
	case machine.ClearSwitchover:
		cctx, cancel := clock.WithTimeout(ctx, a.clk, callTimeout(a.cfg.Timing))
		_ = a.store.ClearSwitchover(cctx, act.ID)
		cancel()
	case machine.Resign:
		// A failed resign would leave the key with a node that no longer
		// acts, blocking every failover while its session lives: retry
		// until it is gone (ErrNotLeader: someone else's now, or expired).
		// A stopping agent renews no more once it exits: its session,
		// and the key with it, expires within lease_ttl after, so
		// retrying longer only delays the exit (with the store cut off,
		// ten tries outlasted a 15 s stop). That holds as well for a
		// resign that began before the agent was asked to stop, and for
		// all of them together: the machine asks again each time it sees
		// the key still held, and a dozen resigns queued behind a cut-off
		// store, a lease each, kept an agent from stopping for good.
		//
		// Nor does a resign outlive the session its key was bound to: once
		// the store has said that session is gone, so is the key, and the
		// tries (a lease and a half each while the store does not answer)
		// would only hold the worker from the campaign the new session may
		// need (TestResignStopsWithItsSession).
		sess, stopSess := a.sessGone.context(context.WithoutCancel(ctx))
		defer stopSess()
		if !a.resignAfterLockDelay(ctx, act.Epoch) { // lockdelay.go
			break // stopping within the lock-delay: the key goes with the session, unrecorded
		}
		var giveUp time.Time
		backoff := FirstResignBackoff
		for try := 1; ; try++ {
			if giveUp.IsZero() && a.State().Stopping {
				giveUp = a.resignDeadline()
			}
			if !giveUp.IsZero() && a.clk.Now().After(giveUp) {
				break // stopping: the key expires with the session
			}
			cctx, cancel := clock.WithTimeout(sess, a.clk, callTimeout(a.cfg.Timing))
			err := a.store.Resign(cctx, a.node.Name, act.Epoch)
			cancel()
			if ResignDone(err) {
				break
			}
			if sess.Err() != nil {
				a.log.Info("resign given up: the session the key was bound to is gone from the store, and the key with it", "epoch", act.Epoch, "try", try)
				break
			}
			a.log.Warn("resign failed; retrying", "epoch", act.Epoch, "try", try, "err", err)
			if try == ResignTries {
				break // the machine asks again when it sees the key still held
			}
			if !giveUp.IsZero() && a.clk.Now().After(giveUp) {
				break // stopping: the key expires with the session
			}
			sleep(sess, a.clk, backoff)
			backoff = NextResignBackoff(backoff)
		}
	}
}

// resignDeadline is when a stopping agent stops resigning: a lease after
// the first resign that saw it stopping, the same for every resign after.
func (a *Agent) resignDeadline() time.Time {
	t := a.clk.Now().Add(a.cfg.Timing.LeaseTTL)
	a.resignUntil.CompareAndSwap(nil, &t)
	return *a.resignUntil.Load()
}

// watchCaughtUp waits until the watched snapshot reflects a win at epoch:
// the key held by this node at epoch, or already at a later epoch.
func (a *Agent) watchCaughtUp(ctx context.Context, epoch ha.Epoch) bool {
	deadline := a.clk.Now().Add(a.cfg.Timing.LeaseTTL)
	for {
		if WinSeen(a.Snapshot().Leader, a.node.Name, epoch) {
			return true
		}
		if a.clk.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		a.clk.Sleep(time.Millisecond)
	}
}

// emitAsync feeds a result back without blocking the worker on a full queue.
// A result that waits is dropped once Run stops reading events, and Run
// waits for it, so that no goroutine outlives the agent.
func (a *Agent) emitAsync(ev machine.Event) {
	select {
	case a.events <- ev:
	default:
		a.late.Add(1)
		go func() {
			defer a.late.Done()
			select {
			case a.events <- ev:
			case <-a.lateStop:
			}
		}()
	}
}

func (a *Agent) roleEnv(role ha.Role, epoch ha.Epoch) map[string]string {
	return map[string]string{"HAVEN_ROLE": string(role), "HAVEN_EPOCH": strconv.FormatInt(int64(epoch), 10)}
}

func (a *Agent) promote(ctx context.Context, epoch ha.Epoch) error {
	a.log.Info("promoting", "epoch", epoch)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.promoteMu.Lock()
	a.promoteCancel, a.promoteEpoch, a.promoteDone = cancel, epoch, done
	a.promoteMu.Unlock()
	defer func() {
		a.promoteMu.Lock()
		a.promoteCancel = nil
		a.promoteMu.Unlock()
		cancel()
		close(done)
	}()
	if err := a.lockDelay(pctx, epoch); err != nil {
		return err
	}
	if a.svc != nil {
		a.svc.SetRole(string(ha.RoleActive), int64(epoch))
		if a.cfg.Service.Standby == config.StandbyCold {
			if err := a.svc.Start(); err != nil {
				return fmt.Errorf("start service: %w", err)
			}
			if err := a.waitHealthy(pctx, a.cfg.Hooks.OnPromote.Timeout); err != nil {
				return err
			}
		}
	}
	if err := service.RunHook(pctx, a.cfg.Hooks.OnPromote, a.vars, a.roleEnv(ha.RoleActive, epoch), a.log); err != nil {
		return fmt.Errorf("on_promote hook: %w", err)
	}
	return nil
}

func (a *Agent) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if r := a.health.Current(); r.Healthy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service not healthy within %s after start: %s", limit, a.health.Current().Reason)
		case <-a.clk.After(10 * time.Millisecond):
		}
	}
}

func (a *Agent) cancelPromote(epoch ha.Epoch) {
	a.promoteMu.Lock()
	defer a.promoteMu.Unlock()
	if a.promoteCancel != nil && a.promoteEpoch == epoch {
		a.promoteCancel()
	}
}

// publisher writes this node's status record whenever it is asked to, and
// every few seconds as a heartbeat. A write that failed is tried again
// after publishRetry rather than at the next heartbeat: right after a
// failover etcd may drop proposals while its leadership moves, and the
// new active's record would say "standby" for seconds.
func (a *Agent) publisher(ctx context.Context) {
	beat := a.clk.NewTicker(HeartbeatInterval)
	defer beat.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-a.publishC:
		case <-beat.C():
		case <-retry:
		case <-ctx.Done():
			return
		}
		retry = nil
		if err := a.publishNow(ctx); err != nil && !errors.Is(err, ha.ErrSessionLost) {
			retry = a.clk.After(publishRetry)
		}
	}
}

// publishRetry is how soon a failed status write is tried again.
const publishRetry = 100 * time.Millisecond

func (a *Agent) publishNow(ctx context.Context) error {
	cctx, cancel := clock.WithTimeout(ctx, a.clk, callTimeout(a.cfg.Timing))
	defer cancel()
	err := a.store.Publish(cctx, a.Record())
	if err != nil && ctx.Err() == nil {
		a.log.Debug("publish status", "err", err)
	}
	return err
}

// Record is this node's status as published in the store.
func (a *Agent) Record() ha.NodeStatus {
	st := a.State()
	now := a.clk.Now()
	rec := RecordOf(a.mcfg, st, now)
	rec.Site = a.node.Site
	rec.Since = wall(a.startedAt, st.Since, now)
	rec.AgentPID = os.Getpid()
	rec.API = a.cfg.APIURL(a.node.API)
	rec.Version = Version
	rec.StartedAt = a.startedAt
	rec.VIP = a.vipHeld()
	a.lockDelayRecord(&rec, st, now) // lockdelay.go
	if e := a.followProxy.Load(); e != nil {
		rec.VIPLockDelay = e.LockDelay()
	}
	if a.svc != nil {
		rec.ServicePID = a.svc.PID()
		rec.Containment = a.svc.Containment()
	}
	if f := a.sessStats.Load(); f != nil {
		ss := (*f)()
		rec.Sessions = &ss
	}
	if a.folders != nil {
		rec.Folders = a.folders.Stats()
	}
	return rec
}

// wall turns a machine time into wall-clock time for people.
func wall(_ time.Time, t, now time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return now.Add(-now.Sub(t)).Round(time.Millisecond)
}

// Snapshot returns the last view of the cluster seen in the store.
func (a *Agent) Snapshot() ha.Snapshot { return *a.snap.Load() }

// Config returns the configuration the agent runs with.
func (a *Agent) Config() *config.Config { return a.cfg }

// Node returns this agent's node.
func (a *Agent) Node() config.Node { return a.node }

// ServicePID returns the supervised service's pid, or 0.
func (a *Agent) ServicePID() int {
	if a.svc == nil {
		return 0
	}
	return a.svc.PID()
}

// LogDir is where the agent keeps its logs.
func LogDir(cfg *config.Config, node string) string { return filepath.Join(cfg.DataDir, node) }

// sessionLoss tells a resign that the session it began under is gone from
// the store (the renewer's Lost): its key went with it.
type sessionLoss struct {
	mu   sync.Mutex
	gone chan struct{} // closed at the next loss; nil until first asked
}

// lost records that the store dropped the current session.
func (l *sessionLoss) lost() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone != nil {
		close(l.gone)
	}
	l.gone = make(chan struct{})
}

// context is parent, cancelled when the current session is lost; stop
// releases it.
func (l *sessionLoss) context(parent context.Context) (context.Context, context.CancelFunc) {
	l.mu.Lock()
	if l.gone == nil {
		l.gone = make(chan struct{})
	}
	gone := l.gone
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
