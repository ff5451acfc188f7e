// Package proxyvip keeps a virtual IP on one node whose proxy is healthy
// (`vip.follow: proxy`), so that the proxy layer has no single point of
// failure: an election of its own in the coordination store (its own
// session, leader key and epoch, beside the active role's) picks the node;
// the address is added after the node has won and serves, and removed, as
// part of fencing, before that election's lease can run out.
//
// The rules are the active role's: the same state machine (package
// machine) decides, fed with this election's renewals, its leader key and
// the local proxy's health. The proxy's health plays the service's part: a
// holder whose proxy fails demotes, removes the address and hands the key
// back; a node whose proxy is healthy may campaign for a vacant key. So the
// safety argument of package machine carries over: the holder stops
// holding fence_margin before the store can let another node win, and the
// address also gets a lifetime in the kernel that runs out by then, for a
// holder that is frozen or killed.
//
// The lock-delay (package lockdelay) guards this election as it guards the
// active role's: etcd can end a live session early (a frozen and woken raft
// leader revokes it), so a node that wins the key adds the address at once
// only if the election's tenure record says the previous holder resigned or
// haven's revoker judged its lease expired (with the embedded etcd the
// revoker watches this election's key too: package node); otherwise (an
// external etcd's own expiry, a stale lessor's revocation) it waits
// lease_ttl from when it saw the key vacant, by when the previous holder
// has removed its copy.
package proxyvip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
)

// Address is the virtual IP on this node's interface (*vip.VIP).
type Address interface {
	// Add puts the address on (lifetime validFor, none when zero) and
	// announces it; it reports whether it was newly added.
	Add(validFor time.Duration) (bool, error)
	// Refresh restarts the lifetime; an error if the address is gone.
	Refresh(validFor time.Duration) error
	// Remove takes it off; it reports whether it was there.
	Remove() (bool, error)
	// Close stops the announcements.
	Close()
}

// Options configure an Elector.
type Options struct {
	Node string
	// Dial opens this election's own connection to the store: its own
	// session and leader key, apart from the active role's. It is called
	// until it succeeds.
	Dial    func(ctx context.Context) (ha.Coordinator, error)
	Address Address
	// Describe names the address in events and logs ("10.0.0.100/24 on eth1").
	Describe string
	// Lifetime is the longest kernel lifetime for an address that must be
	// gone within left (vip.Lifetime); nil or zero results: no lifetime.
	Lifetime func(left time.Duration) time.Duration
	// Health delivers the local proxy's health each time it changes
	// (check.Runner.Updates); the node is unhealthy until the first value.
	Health <-chan check.Result
	// LinkUp, when set, is asked every 100 ms whether the address's
	// interface can carry it (vip.VIP.LinkUp): a node whose link is down
	// is unhealthy too, as keepalived drops a VIP on a link without carrier.
	LinkUp func() (up bool, why string, err error)

	LeaseTTL       time.Duration
	RenewInterval  time.Duration
	RenewTimeout   time.Duration
	FenceMargin    time.Duration
	PromoteBackoff time.Duration
	// EtcdElection is the store's raft election timeout: after a pause of
	// this process longer than 4/5 of it, renewals count only once the
	// store confirms them (lease.Options.ElectionTimeout). Zero: 1.5 ×
	// RenewInterval.
	EtcdElection time.Duration
	// NoLockDelay turns the lock-delay off (lock_delay: off); it applies
	// only on a store that can end a session early (ha.EarlyRevoker).
	NoLockDelay bool

	Clock clock.Clock
	Log   *slog.Logger
	// Record receives an event for the history (every add and remove);
	// Changed is called when this node starts or stops holding the address.
	// Either may be nil.
	Record  func(ha.Event)
	Changed func()
}

// Elector runs the election and holds the address while it wins.
type Elector struct {
	o    Options
	mcfg machine.Config

	events chan machine.Event
	work   chan machine.Action
	newSes chan struct{}
	// rewatch asks the watch for a fresh snapshot: after a new session the
	// machine forgets the leader it knew ("watch again"), and a store in
	// which nothing changes sends no other snapshot.
	rewatch chan struct{}

	state  atomic.Pointer[machine.State]
	leader atomic.Pointer[ha.Leader] // last leader the watch showed
	held   atomic.Bool

	mu sync.Mutex // one add, refresh or remove at a time

	// hard bounds what outlives the background context on shutdown (the
	// resign in progress, late campaign results); Run cancels it when it
	// stops waiting for them.
	hard context.Context

	// Owned by the loop goroutine: the two halves of health.
	proxy     check.Result
	linkOK    bool
	linkWhy   string
	linkKnown bool

	// Lock-delay: the key's vacancy and the latest win's decision; the
	// promotion waiting on it (owned by the loop goroutine); the latest
	// wait in progress or done.
	ld        *lockdelay.Tracker
	ldOpts    atomic.Pointer[lockdelay.Options]
	delayed   *machine.Promote
	delayFrom time.Time
	delayC    <-chan time.Time
	store     ha.Coordinator // set by Run before the loop starts
	lockDelay atomic.Pointer[ha.LockDelay]
}

// New checks o; it touches neither the store nor the host.
func New(o Options) (*Elector, error) {
	switch {
	case o.Node == "":
		return nil, errors.New("proxyvip: no node name")
	case o.Dial == nil || o.Address == nil || o.Health == nil:
		return nil, errors.New("proxyvip: Dial, Address and Health are required")
	case o.LeaseTTL <= 0 || o.RenewInterval <= 0 || o.RenewTimeout <= 0 || o.FenceMargin <= 0:
		return nil, fmt.Errorf("proxyvip: timings must be positive (lease %s, renew %s/%s, fence margin %s)", o.LeaseTTL, o.RenewInterval, o.RenewTimeout, o.FenceMargin)
	case o.FenceMargin >= o.LeaseTTL:
		return nil, fmt.Errorf("proxyvip: fence margin %s must be shorter than the lease %s", o.FenceMargin, o.LeaseTTL)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Record == nil {
		o.Record = func(ha.Event) {}
	}
	if o.Changed == nil {
		o.Changed = func() {}
	}
	if o.Lifetime == nil {
		o.Lifetime = func(time.Duration) time.Duration { return 0 }
	}
	e := &Elector{
		o: o,
		mcfg: machine.Config{
			Node:           o.Node,
			FenceMargin:    o.FenceMargin,
			PromoteBackoff: o.PromoteBackoff,
			Mode:           ha.ModeActivePassive, // one holder
		},
		events:  make(chan machine.Event, 64),
		work:    make(chan machine.Action, 64),
		newSes:  make(chan struct{}, 1),
		rewatch: make(chan struct{}, 1),
		ld:      lockdelay.NewTracker(o.Clock),
	}
	e.ldOpts.Store(&lockdelay.Options{LeaseTTL: o.LeaseTTL, FenceMargin: o.FenceMargin}) // Run looks at the store
	st, _ := machine.Step(e.mcfg, machine.State{}, machine.Tick{}, o.Clock.Now())
	e.state.Store(&st)
	e.leader.Store(&ha.Leader{})
	return e, nil
}

// Held reports whether this node holds the address now.
func (e *Elector) Held() bool { return e.held.Load() }

// State is this election's machine state (role, epoch, health).
func (e *Elector) State() machine.State { return *e.state.Load() }

// Leader is the holder of the election as the store last showed it.
func (e *Elector) Leader() ha.Leader { return *e.leader.Load() }

// expires: the lease leaves room for a kernel lifetime.
func (e *Elector) expires() bool {
	return e.o.Lifetime(e.o.LeaseTTL-e.o.FenceMargin) > 0
}

// Run takes part in the election until ctx ends; then it removes the
// address, hands the key back and closes its connection. A copy of the
// address left by an earlier run goes first: a node that starts holds
// nothing.
func (e *Elector) Run(ctx context.Context) error {
	e.remove("starting: not elected yet; removing a leftover copy")
	defer e.o.Address.Close()
	var store ha.Coordinator
	for backoff := 100 * time.Millisecond; store == nil; backoff = min(2*backoff, 2*time.Second) {
		s, err := e.o.Dial(ctx)
		if err == nil {
			store = s
			break
		}
		e.o.Log.Warn("cannot reach the store for the virtual IP's election; retrying", "err", err, "in", backoff)
		if !clock.SleepCtx(ctx, e.o.Clock, backoff) {
			return nil
		}
	}
	defer store.Close()
	e.store = store
	r, early := store.(ha.EarlyRevoker)
	e.ldOpts.Store(&lockdelay.Options{
		Enabled:     early && r.EarlyRevocation() && !e.o.NoLockDelay,
		LeaseTTL:    e.o.LeaseTTL,
		FenceMargin: e.o.FenceMargin,
	})

	hard, stopHard := context.WithCancel(context.Background())
	defer stopHard()
	e.hard = hard
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	spawn := func(f func(context.Context, ha.Coordinator)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg, store) }()
	}
	spawn(e.renew)
	spawn(e.watch)
	spawn(e.worker)
	e.loop(ctx)

	// Stopping: demote (remove the address) and hand the key back.
	e.step(machine.Shutdown{})
	deadline := e.o.Clock.After(e.o.LeaseTTL)
	for e.State().Role != ha.RoleStopped {
		select {
		case ev := <-e.events:
			e.step(ev)
		case <-deadline:
			e.o.Log.Warn("virtual IP election: stopping took too long", "role", e.State().Role)
			e.remove("stopping")
			stopBG()
			e.join(&wg, stopHard)
			return nil
		}
	}
	stopBG()
	e.join(&wg, stopHard) // the worker carries out the resign before it returns
	return nil
}

// join waits for the background goroutines, giving a resign in progress
// one call's time: a store that does not answer must not hold shutdown
// for several leases (the session expires anyway).
func (e *Elector) join(wg *sync.WaitGroup, stopHard context.CancelFunc) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-e.o.Clock.After(e.callTimeout()):
		e.o.Log.Warn("virtual IP election: the store did not take the key back in time; it is freed when this session expires")
		stopHard()
	}
	<-done
}

func (e *Elector) loop(ctx context.Context) {
	tick := e.o.Clock.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var timer <-chan time.Time
		if d := e.State().NextDeadline(e.mcfg); !d.IsZero() {
			timer = e.o.Clock.After(d.Sub(e.o.Clock.Now()))
		}
		select {
		case ev := <-e.events:
			e.step(ev)
		case r := <-e.o.Health:
			e.proxy = r
			e.health()
		case <-timer:
			e.step(machine.Tick{})
		case <-e.delayC:
			e.delayC = nil
			e.promoteDelayed()
		case <-tick.C():
			e.lookLink()
			// Serving ends by the clock alone (a lease not renewed): look
			// even when no event comes, and restart the kernel lifetime.
			e.reconcile()
		case <-ctx.Done():
			return
		}
	}
}

// step applies one event and carries out the actions. Only the loop
// goroutine calls it (and Run, once the loop has returned).
func (e *Elector) step(ev machine.Event) {
	old := e.State()
	st, acts := machine.Step(e.mcfg, old, ev, e.o.Clock.Now())
	e.state.Store(&st)
	if st.Role != old.Role {
		e.o.Log.Info("virtual IP election: role change", "from", old.Role, "to", st.Role, "epoch", st.Epoch, "reason", st.Reason)
	}
	var later []machine.Event
	for _, act := range acts {
		switch act := act.(type) {
		case machine.Promote:
			// Won (eligible: lease valid, proxy healthy): add the address
			// once the lock-delay allows, at once if it does. A node that
			// cannot add it gives the key back (the machine demotes and
			// backs off), so that another can.
			if e.waitLockDelay(act) {
				continue
			}
			later = append(later, machine.PromoteResult{Epoch: act.Epoch, Seq: act.Seq, Err: e.addOnWin(st)})
		case machine.Demote:
			// The fencing lane: the removal is one local netlink request,
			// done here before the resign that follows is handed over.
			e.remove("demoting: " + act.Reason)
			if act.Fenced && !act.Deadline.IsZero() && e.o.Clock.Now().After(act.Deadline.Add(-e.o.FenceMargin/2)) {
				e.o.Log.Error("the virtual IP was removed late: after the fence deadline (was this process paused?)", "deadline", act.Deadline)
			}
			later = append(later, machine.DemoteResult{Epoch: act.Epoch})
		case machine.NewSession:
			select {
			case e.newSes <- struct{}{}:
			default:
			}
		case machine.Campaign, machine.Resign:
			e.work <- act
		}
	}
	for _, ev := range later {
		e.step(ev)
	}
	e.reconcile()
}

// addOnWin adds the address right after a win; an error means it is not
// on the interface.
func (e *Elector) addOnWin(st machine.State) error {
	now := e.o.Clock.Now()
	if ok, why := st.Eligible(e.mcfg, now); !ok {
		return errors.New("no longer eligible: " + why)
	}
	if e.expires() && e.lifetime(st, now) == 0 {
		return nil // too little of the lease left; reconcile adds it after the next renewal
	}
	if !e.add(st, now) {
		return errors.New("cannot add the virtual IP " + e.o.Describe)
	}
	return nil
}

// reconcile adds the address while the node serves, keeps its kernel
// lifetime ahead, and removes it when the node does not serve.
func (e *Elector) reconcile() {
	st := e.State()
	now := e.o.Clock.Now()
	serving := st.Serving(e.mcfg, now)
	switch {
	case serving && !e.held.Load():
		e.add(st, now)
	case serving:
		e.refresh(st, now)
	case e.held.Load():
		e.remove("no longer elected: " + st.Reason)
	}
}

// lifetime is how long the kernel may keep the address after now: it must
// be gone by the fence deadline (valid_until − fence_margin).
func (e *Elector) lifetime(st machine.State, now time.Time) time.Duration {
	return e.o.Lifetime(st.ValidUntil.Add(-e.o.FenceMargin).Sub(now))
}

// add puts the address on and reports whether it is there.
func (e *Elector) add(st machine.State, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	var life time.Duration
	if e.expires() {
		if life = e.lifetime(st, now); life == 0 {
			return false // too little of the lease left; the next renewal brings more
		}
	}
	start := e.o.Clock.Now()
	added, err := e.o.Address.Add(life)
	took := e.o.Clock.Since(start)
	if err != nil {
		e.o.Log.Error("cannot add the virtual IP; clients of the VIP cannot reach this node's proxy", "vip", e.o.Describe, "err", err)
		e.o.Record(ha.Event{Kind: "vip", To: "add failed", Reason: err.Error(), Duration: took, Epoch: st.Epoch})
		if !added {
			return false
		}
	}
	e.held.Store(true)
	e.o.Log.Info("virtual IP added: this node's proxy was elected", "vip", e.o.Describe, "epoch", st.Epoch, "took", took, "was_there", !added)
	e.o.Record(ha.Event{Kind: "vip", To: "added", Reason: e.o.Describe + " (follows a healthy proxy)", Duration: took, Epoch: st.Epoch})
	e.o.Changed()
	return true
}

func (e *Elector) refresh(st machine.State, now time.Time) {
	if !e.expires() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	life := e.lifetime(st, now)
	if life == 0 {
		return // the kernel keeps the lifetime it has; it runs out by the fence deadline
	}
	if err := e.o.Address.Refresh(life); err != nil {
		e.held.Store(false)
		e.o.Log.Warn("the virtual IP was gone from the interface; adding it again", "vip", e.o.Describe, "err", err)
		e.o.Record(ha.Event{Kind: "vip", To: "lost", Reason: err.Error()})
		e.o.Changed()
	}
}

// remove takes the address off; why goes to the log and the event.
func (e *Elector) remove(why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := e.o.Clock.Now()
	removed, err := e.o.Address.Remove()
	took := e.o.Clock.Since(start)
	if err != nil {
		e.o.Log.Error("cannot remove the virtual IP", "vip", e.o.Describe, "err", err)
		e.o.Record(ha.Event{Kind: "vip", To: "remove failed", Reason: why + ": " + err.Error(), Duration: took})
		return
	}
	if was := e.held.Swap(false); removed || was {
		e.o.Log.Info("virtual IP removed", "vip", e.o.Describe, "why", why, "took", took)
		e.o.Record(ha.Event{Kind: "vip", To: "removed", Reason: why, Duration: took})
		e.o.Changed()
	}
}

func (e *Elector) emit(ctx context.Context, ev machine.Event) bool {
	select {
	case e.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// lookLink asks whether the interface can carry the address, and tells
// the machine when that changes.
func (e *Elector) lookLink() {
	if e.o.LinkUp == nil {
		return
	}
	up, why, err := e.o.LinkUp()
	if err != nil {
		up, why = false, err.Error()
	}
	if e.linkKnown && up == e.linkOK && why == e.linkWhy {
		return
	}
	if e.linkKnown && up != e.linkOK {
		e.o.Log.Warn("virtual IP election: the VIP's interface changed", "up", up, "why", why)
	}
	e.linkOK, e.linkWhy, e.linkKnown = up, why, true
	e.health()
}

// health tells the machine the node's health for this election: its proxy
// answers and (when it is looked at) the VIP's interface is up.
func (e *Elector) health() {
	ok, why := e.proxy.Healthy, e.proxy.Reason
	if why == "" {
		why = map[bool]string{true: "proxy healthy", false: "proxy unhealthy"}[ok]
	}
	if e.o.LinkUp != nil && !e.linkKnown {
		e.lookLink() // calls back here once the link is known
		return
	}
	if e.o.LinkUp != nil && !e.linkOK {
		ok, why = false, "the VIP's link: "+e.linkWhy
	}
	if st := e.State(); st.Healthy != ok || st.HealthReason != why {
		e.step(machine.HealthChanged{Healthy: ok, Reason: why})
	}
}

// renew keeps this election's session alive as the agent does (package
// lease): a renewal starts every renew interval whatever the previous one
// does, and each answer counts from when its request was sent.
func (e *Elector) renew(ctx context.Context, store ha.Coordinator) {
	r, err := lease.New(lease.Options{
		Store: store, TTL: e.o.LeaseTTL, Interval: e.o.RenewInterval, Timeout: e.o.RenewTimeout,
		FenceMargin: e.o.FenceMargin, Clock: e.o.Clock, Log: e.o.Log,
		ElectionTimeout: e.o.EtcdElection,
		Granted: func(ctx context.Context, r lease.Renewal) bool {
			if !e.emit(ctx, machine.SessionRenewed{SentAt: r.SentAt, TTL: r.TTL, New: r.New}) {
				return false
			}
			if r.New {
				// The machine now forgets the leader it knew: have the
				// watch tell it again, even if nothing changes in the store.
				select {
				case e.rewatch <- struct{}{}:
				default:
				}
			}
			return true
		},
		Failed: func(r lease.Renewal) {
			e.o.Log.Debug("virtual IP election: renewal failed", "err", r.Err)
		},
		Lost: func(ctx context.Context, err error) bool {
			e.o.Log.Warn("virtual IP election: session lost in the store; creating a new one")
			if !e.emit(ctx, machine.SessionLost{Err: err}) {
				return false
			}
			select {
			case <-e.newSes:
				return true
			case <-ctx.Done():
				return false
			}
		},
	})
	if err != nil {
		e.o.Log.Error("virtual IP election: cannot renew the session", "err", err)
		return
	}
	r.Run(ctx)
}

func (e *Elector) watch(ctx context.Context, store ha.Coordinator) {
	vacant, held := false, ha.Epoch(0)
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		snaps := store.Watch(wctx)
		closed := false
	recv:
		for {
			select {
			case snap, ok := <-snaps:
				if !ok {
					closed = true
					break recv
				}
				if snap.Behind {
					continue // no news: the elector keeps its last view, as before Behind existed
				}
				l := snap.Leader
				vacant = e.ld.NoteVacancy(snap, vacant, held) // before the machine hears of it
				if !l.None() {
					held = l.Epoch
				}
				e.leader.Store(&l)
				if !e.emit(ctx, machine.LeaderSeen{Leader: l}) {
					cancel()
					return
				}
			case <-e.rewatch:
				// A new session: subscribe again, whose first snapshot
				// tells the machine the leader afresh.
				break recv
			}
		}
		cancel()
		if closed {
			clock.SleepCtx(ctx, e.o.Clock, 100*time.Millisecond)
		}
	}
}

// callTimeout bounds one campaign or resign: half a lease, at least the
// renew timeout (as the agent's).
func (e *Elector) callTimeout() time.Duration { return max(e.o.LeaseTTL/2, e.o.RenewTimeout) }

// worker carries out campaigns and resigns one at a time; on shutdown it
// finishes the resigns already asked for.
func (e *Elector) worker(ctx context.Context, store ha.Coordinator) {
	for {
		select {
		case act := <-e.work:
			e.do(ctx, store, act)
		case <-ctx.Done():
			for {
				select {
				case act := <-e.work:
					if r, ok := act.(machine.Resign); ok && e.resignAfterLockDelay(ctx, r.Epoch) {
						e.resign(store, r.Epoch)
					}
				default:
					return
				}
			}
		}
	}
}

func (e *Elector) do(ctx context.Context, store ha.Coordinator, act machine.Action) {
	switch act := act.(type) {
	case machine.Campaign:
		cctx, cancel := clock.WithTimeout(ctx, e.o.Clock, e.callTimeout())
		epoch, err := store.Campaign(cctx, e.o.Node)
		cancel()
		if err == nil {
			e.ld.Decide(*e.ldOpts.Load(), e.o.Node, store, epoch) // on the vacancy seen before the win
		}
		if err == nil && !e.watchCaughtUp(ctx, epoch) {
			// Report a win only once the watch has shown it, so that no
			// snapshot from before the win reads "key lost" after it. The
			// resign records a clean end: not while the previous holder
			// may still hold the address.
			if e.resignAfterLockDelay(ctx, epoch) {
				e.resign(store, epoch)
			}
			err = fmt.Errorf("the store's watch did not confirm the win at epoch %d", epoch)
		}
		if err != nil && !errors.Is(err, ha.ErrTaken) {
			e.o.Log.Debug("virtual IP election: campaign failed", "err", err)
			clock.SleepCtx(ctx, e.o.Clock, 100*time.Millisecond)
		}
		e.emitAsync(machine.CampaignResult{Epoch: epoch, Err: err})
	case machine.Resign:
		if e.resignAfterLockDelay(ctx, act.Epoch) {
			e.resign(store, act.Epoch)
		}
	}
}

// resign hands the key back, retrying a few times: a key left with a node
// that does not hold the address would keep every other node from taking
// it until this session expires. It outlives the background context (a
// resign asked for at shutdown still runs), bounded by Run's join.
func (e *Elector) resign(store ha.Coordinator, epoch ha.Epoch) {
	ctx := e.hard
	backoff := 20 * time.Millisecond
	for try := 1; try <= 5 && ctx.Err() == nil; try++ {
		cctx, cancel := clock.WithTimeout(ctx, e.o.Clock, e.callTimeout())
		err := store.Resign(cctx, e.o.Node, epoch)
		cancel()
		if err == nil || errors.Is(err, ha.ErrNotLeader) {
			return
		}
		e.o.Log.Debug("virtual IP election: resign failed; retrying", "epoch", epoch, "err", err)
		clock.SleepCtx(ctx, e.o.Clock, backoff)
		backoff *= 2
	}
}

func (e *Elector) watchCaughtUp(ctx context.Context, epoch ha.Epoch) bool {
	deadline := e.o.Clock.Now().Add(e.o.LeaseTTL)
	for {
		l := e.Leader()
		if l.Epoch > epoch || l.Node == e.o.Node && l.Epoch == epoch {
			return true
		}
		if e.o.Clock.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		e.o.Clock.Sleep(time.Millisecond)
	}
}

func (e *Elector) emitAsync(ev machine.Event) {
	select {
	case e.events <- ev:
	default:
		go func() {
			select {
			case e.events <- ev:
			case <-e.hard.Done(): // Run has returned: nobody reads events
			}
		}()
	}
}

// waitLockDelay holds the promotion act until the lock-delay decided for its
// win is over (package lockdelay), and reports whether it did. The loop
// carries it out then (promoteDelayed); the machine meanwhile stays
// promoting and can still demote.
func (e *Elector) waitLockDelay(act machine.Promote) bool {
	p, ok := e.ld.Pending(act.Epoch)
	if !ok {
		p = e.ld.Decide(*e.ldOpts.Load(), e.o.Node, e.store, act.Epoch)
	}
	wait := p.Decision.Until.Sub(e.o.Clock.Now())
	if wait <= 0 {
		e.settle(act.Epoch)
		return false
	}
	e.o.Log.Warn("virtual IP election: waiting for the previous holder's lease to run out before adding the address (lock delay)",
		"epoch", act.Epoch, "wait", wait.Round(time.Millisecond), "previous", p.Previous.Node, "previous_epoch", p.Previous.Epoch, "why", p.Decision.Reason)
	e.lockDelay.Store(&ha.LockDelay{Epoch: act.Epoch, Until: p.Decision.Until, Reason: p.Decision.Reason})
	e.delayed, e.delayFrom = &act, e.o.Clock.Now()
	e.delayC = e.o.Clock.After(wait)
	e.o.Changed()
	return true
}

// promoteDelayed carries out the promotion held by waitLockDelay, if the
// machine is still promoting at its epoch.
func (e *Elector) promoteDelayed() {
	act := e.delayed
	e.delayed = nil
	if act == nil {
		return
	}
	if ld := e.lockDelay.Load(); ld != nil && ld.Epoch == act.Epoch {
		done := ha.LockDelay{Epoch: ld.Epoch, Waited: e.o.Clock.Since(e.delayFrom), Reason: ld.Reason}
		e.lockDelay.Store(&done)
		e.o.Record(ha.Event{Kind: "lock-delay", Epoch: act.Epoch, To: e.o.Node,
			Reason: fmt.Sprintf("virtual IP: waited %s for the previous holder's lease to run out: %s", done.Waited.Round(time.Millisecond), done.Reason)})
	}
	st := e.State()
	if st.Role != ha.RolePromoting || st.Epoch != act.Epoch {
		return // demoted meanwhile: that promotion is over
	}
	e.settle(act.Epoch)
	e.step(machine.PromoteResult{Epoch: act.Epoch, Seq: act.Seq, Err: e.addOnWin(st)})
}

// settle records in the store that this tenure's predecessor can no
// longer act (ha.TenureSettler), so that a resign of it lets the next
// winner act at once. Not waited on: a tenure left unsettled only makes
// the next winner wait.
func (e *Elector) settle(epoch ha.Epoch) {
	st, ok := e.store.(ha.TenureSettler)
	if !ok {
		return
	}
	go func() {
		ctx, cancel := clock.WithTimeout(e.hard, e.o.Clock, e.callTimeout())
		defer cancel()
		if err := st.Settle(ctx, e.o.Node, epoch); err != nil {
			e.o.Log.Debug("virtual IP election: cannot settle the tenure; the next winner will wait", "epoch", epoch, "err", err)
		}
	}()
}

// resignAfterLockDelay holds a resign of epoch until the lock-delay decided
// for it is over (a resign records a clean end, on which the next winner
// adds the address at once), and reports whether to resign: not when ctx
// ends first (stopping): the key then goes with the session, unrecorded,
// and the next winner waits.
func (e *Elector) resignAfterLockDelay(ctx context.Context, epoch ha.Epoch) bool {
	wait := e.ld.ResignWait(epoch, e.o.Clock.Now())
	if wait == 0 {
		return true
	}
	if ctx.Err() == nil {
		e.o.Log.Info("virtual IP election: resign waits for the lock delay to end", "epoch", epoch, "wait", wait.Round(time.Millisecond))
		select {
		case <-e.o.Clock.After(wait):
			return true
		case <-ctx.Done():
		}
	}
	e.o.Log.Info("virtual IP election: stopping within the lock delay; not resigning (the key goes with the session and the next winner waits)", "epoch", epoch)
	return false
}

// LockDelay is this election's lock-delay: the wait in progress (Until set),
// else the latest win that waited; nil if none did.
func (e *Elector) LockDelay() *ha.LockDelay { return e.lockDelay.Load() }
