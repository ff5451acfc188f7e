// Package sim runs whole haven clusters in one process, deterministically:
// every node's agent core (internal/agent's Step, Plan and the worker's,
// watcher's, record's and health's rules, around the role machine), the
// waits of the agent's goroutines (renewer, watcher, worker, fencing lane,
// publisher), etcd's lease expiry, faults and operator calls are events of
// one seeded scheduler over a fake clock, on the in-memory store
// (internal/store/memstore). The same seed replays the same run exactly.
// See docs/simulation.md.
package sim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/proxy"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// Options describe one run. Scenario picks everything else from the seed.
type Options struct {
	Seed    uint64
	Mode    ha.Mode
	Preempt bool
	Nodes   int // service nodes; a witness is added
	// FaultPhase is how long faults and operator calls are injected; then
	// every fault heals and the cluster must settle within Settle.
	FaultPhase time.Duration
	Trace      io.Writer // every event, when set
	// Revoker: the member that leads etcd revokes the leader key's lease
	// at its expiry (embedded etcd); otherwise only etcd's 500 ms tick
	// drops it (revoke.go).
	Revoker bool
	// NoLockDelay turns the agent's lock-delay off (lockdelay.go), as
	// `lock_delay: off` does: to show what it guards against.
	NoLockDelay bool
	// NoPauseGuard turns the renewer's pause rule off (lease.Pauses,
	// wake.go): renewals after a pause count unconfirmed, as before
	// 2026-12-07; to show what it guards against.
	NoPauseGuard bool
	// NoRemovalGuard puts back `members remove` as it was before
	// 2026-12-07 (members.go): a new session counts before the node's
	// record is in the store, and the removal is judged gone on the
	// asking node's view, however old, by the record alone; to show what
	// agent.RemovedGone and lease.Options.Created guard against.
	NoRemovalGuard bool
	// NoHeldBy puts back the switchover target's choice as it was before
	// 2026-12-07: a standby's record counts by its Eligible alone, not
	// as available when the intent it was held back by (HeldBy) is gone
	// from the view (operator.Available); to show what a lagging record
	// did to the next switchover after one answered settled.
	NoHeldBy bool
	// NoViewLost puts back the watch as it was before 2026-12-07: a
	// stalled watch is silent, never Behind, so a standby whose session
	// is alive keeps its last view as current (and its record eligible)
	// however long the watch stalls; to show what machine.ViewLost guards
	// against, and (with NoViewPublish) the schedules of the seeds found
	// before it.
	NoViewLost bool
	// NoViewPublish puts back the machine's publish rule as the
	// simulation ran it before 2026-12-07: a step that changes only
	// LeaderKnown publishes nothing, so the record's "view of the store
	// is behind" lasts until the next heartbeat or other change.
	NoViewPublish bool
	// Proxy: haven's proxy routes a client to the active (proxy.go;
	// active-passive and passive-backup).
	Proxy bool
}

// Scenario derives a run's options from its seed.
func Scenario(seed uint64) Options {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	modes := []ha.Mode{ha.ModeActivePassive, ha.ModeActivePassive, ha.ModeActiveActive, ha.ModePassiveBackup}
	return Options{
		Seed:       seed,
		Mode:       modes[r.IntN(len(modes))],
		Preempt:    r.IntN(2) == 0,
		Nodes:      2 + r.IntN(3),
		FaultPhase: time.Duration(20+r.IntN(40)) * time.Second,
		Revoker:    r.IntN(3) != 0,
		Proxy:      r.IntN(3) == 0,
	}
}

// Result sums up a run that kept every invariant.
type Result struct {
	Events     int
	Simulated  time.Duration
	Promotions int
	Operator   int // operator calls made
	Faults     int
	Switched   int // switchovers answered "done"
	Stale      int // switchovers answered "stale view, retry"
	Other      int // switchovers answered "X took over instead"
	Busy       int // calls refused: another switchover in progress
	Members    int // membership changes (members add/remove) answered done
	Fenced     int // fenced demotions (lease about to run out)
	Restarts   int // agent processes started after the first
	FencedOps  int // fenced writes and reads checked for linearizability
	Revoked    int // leader leases revoked at their expiry (revoke.go)
	// OperatorOps: operations of the operator history checked for
	// linearizability (ophistory.go).
	OperatorOps int
	// ProxyStrikes: failed requests the proxy's quarantine counted (proxy.go).
	ProxyStrikes int
	// StaleRevoked: leader leases a stale lessor revoked early;
	// StaleAcks: renewals it acknowledged late (lockdelay.go).
	StaleRevoked, StaleAcks int
	// StaleWakes: holders frozen with their etcd member and woken cut off
	// before their fence; StaleWakeAcks and StaleWakeRefused: renewals
	// sent after the wake that its stale lessor acknowledged, and that
	// were refused because they were sent confirmed (wake.go; with the
	// pause rule every one is confirmed).
	StaleWakes, StaleWakeAcks, StaleWakeRefused int
	LockDelays                                  int // promotions that waited on the lock-delay
	// ViewsLost: watches that started over and told the agent (Behind).
	ViewsLost int
}

// Add sums r and o, for a run of many seeds.
func (r Result) Add(o Result) Result {
	r.Events += o.Events
	r.Simulated += o.Simulated
	r.Promotions += o.Promotions
	r.Operator += o.Operator
	r.Faults += o.Faults
	r.Switched += o.Switched
	r.Stale += o.Stale
	r.Other += o.Other
	r.Busy += o.Busy
	r.Members += o.Members
	r.Fenced += o.Fenced
	r.Restarts += o.Restarts
	r.FencedOps += o.FencedOps
	r.Revoked += o.Revoked
	r.OperatorOps += o.OperatorOps
	r.ProxyStrikes += o.ProxyStrikes
	r.StaleRevoked += o.StaleRevoked
	r.StaleAcks += o.StaleAcks
	r.StaleWakes += o.StaleWakes
	r.StaleWakeAcks += o.StaleWakeAcks
	r.StaleWakeRefused += o.StaleWakeRefused
	r.LockDelays += o.LockDelays
	r.ViewsLost += o.ViewsLost
	return r
}

// Failure is an invariant that did not hold; Trace holds the last events.
type Failure struct {
	Seed  uint64
	At    time.Duration
	What  string
	Trace []string
	Flags string // the test flags besides the seed that replay it
}

func (f *Failure) Error() string {
	return fmt.Sprintf("seed %d: at %s: %s\nlast events:\n%s\nreplay: go test ./internal/sim -run TestSim -sim.seed=%d%s -sim.trace",
		f.Seed, f.At, f.What, strings.Join(f.Trace, "\n"), f.Seed, f.Flags)
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// world is one simulated cluster.
type world struct {
	o     Options
	rng   *rand.Rand
	clk   *clock.Fake
	store *memstore.Server
	admin *memstore.Client
	cfg   *config.Config
	nodes []*node
	rev   *revoker // nil without Options.Revoker

	proxyCfg proxy.Settings
	px       *proxyModel // nil without Options.Proxy

	q      eventQueue
	seq    uint64
	events int
	ring   []string
	ringAt int
	fail   *Failure
	res    Result

	fenced    []*fencedOp // every fenced call (fenced.go)
	ops       []opRec     // the operator history (ophistory.go)
	lastKey   ha.Leader
	lastSw    string // the store's switchover intent, as last observed
	fencedSeq int
	grants    map[ha.Epoch]grant  // every epoch the store granted, by whom and when
	held      map[ha.Epoch]string // the node whose machine took up each epoch
	// staleRevoked: epochs whose key a stale lessor revoked early; their
	// holder may serve on without its key (rule 2 does not apply to it,
	// rule 1 does: that is the lock-delay's job).
	staleRevoked map[ha.Epoch]bool
	maxEpoch     ha.Epoch
	lastRev      int64
	healed       bool
	dirty        bool // a node stepped or the store changed since the last check
	ids          int
	// tracing: trace lines are made (for o.Trace, or to report a
	// failure: a failed seed is run again with it, since it replays).
	tracing bool
}

type grant struct {
	node string
	at   time.Time
}

type event struct {
	at  time.Duration // since t0
	seq uint64
	n   *node // nil: not tied to a node's process
	inc int   // the node's incarnation when scheduled
	f   func()
}

func (e *event) before(o *event) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.seq < o.seq
}

// eventQueue is a binary heap of events by value (no allocation per
// event beyond its closure): the scheduler's hot path.
type eventQueue []event

func (q eventQueue) Len() int { return len(q) }

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].before(&h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = event{}
	h = h[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(h) && h[l].before(&h[small]) {
			small = l
		}
		if r := l + 1; r < len(h) && h[r].before(&h[small]) {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	*q = h
	return top
}

// Run simulates one cluster; a broken invariant returns a *Failure.
func Run(o Options) (Result, error) {
	return run(o, o.Trace != nil)
}

func run(o Options, tracing bool) (Result, error) {
	w, err := newWorld(o)
	if err != nil {
		return Result{}, err
	}
	w.tracing = tracing
	w.run()
	if w.fail != nil {
		if !tracing {
			// The same seed again, keeping its last events this time.
			return run(o, true)
		}
		return w.res, w.fail
	}
	return w.res, nil
}

func newWorld(o Options) (*world, error) {
	if o.Nodes < 1 {
		o.Nodes = 3
	}
	if o.FaultPhase == 0 {
		o.FaultPhase = 30 * time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: sim\ndata_dir: /nonexistent\nmode: %s\n", o.Mode)
	fmt.Fprintf(&b, "preempt: {enabled: %t, delay: 3s}\nhooks:\n  promote_backoff: 2s\nnodes:\n", o.Preempt)
	for i := 1; i <= o.Nodes; i++ {
		backup := o.Mode == ha.ModePassiveBackup && i > 1
		fmt.Fprintf(&b, "  - {name: n%d, api: '127.0.0.1:%d', peer: '127.0.0.1:%d', client: '127.0.0.1:%d', priority: %d, backup: %t}\n",
			i, 9000+3*i, 9001+3*i, 9002+3*i, 100+10*(o.Nodes-i), backup)
	}
	b.WriteString("  - {name: w1, witness: true, peer: '127.0.0.1:8998', client: '127.0.0.1:8999'}\n")
	cfg, err := config.Parse(filepath.Join("/sim", "haven.yaml"), []byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("simulated config: %w", err)
	}
	clk := clock.NewFakeSync(t0)
	w := &world{
		o:      o,
		rng:    rand.New(rand.NewPCG(o.Seed, 0xc1a5)),
		clk:    clk,
		store:  memstore.New(clk),
		cfg:    cfg,
		ring:   make([]string, 0, 64),
		grants: map[ha.Epoch]grant{},
		held:   map[ha.Epoch]string{},

		staleRevoked: map[ha.Epoch]bool{},
	}
	w.store.SetExpiryTick(etcdTick)
	if o.Revoker {
		w.rev = &revoker{w: w}
	}
	w.admin = w.store.Client()
	w.proxyCfg = proxy.Defaults()
	for _, n := range cfg.Nodes {
		if n.Witness {
			continue
		}
		w.nodes = append(w.nodes, newNode(w, n))
	}
	return w, nil
}

// now is the true time: the store's clock.
func (w *world) now() time.Time { return w.clk.Now() }

func (w *world) elapsed() time.Duration { return w.now().Sub(t0) }

// at schedules f at true time t. An event tied to a node runs only in the
// incarnation that scheduled it, and waits while the node is frozen.
func (w *world) at(t time.Time, n *node, f func()) {
	if t.Before(w.now()) {
		t = w.now()
	}
	w.seq++
	e := event{at: t.Sub(t0), seq: w.seq, n: n, f: f}
	if n != nil {
		e.inc = n.inc
	}
	w.q.push(e)
}

func (w *world) after(d time.Duration, n *node, f func()) { w.at(w.now().Add(d), n, f) }

func (w *world) tracef(format string, args ...any) {
	if !w.tracing {
		return
	}
	line := fmt.Sprintf("%9.3fs ", w.elapsed().Seconds()) + fmt.Sprintf(format, args...)
	if w.o.Trace != nil {
		fmt.Fprintln(w.o.Trace, line)
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, line)
	} else {
		w.ring[w.ringAt] = line
		w.ringAt = (w.ringAt + 1) % len(w.ring)
	}
}

func (w *world) failf(format string, args ...any) {
	if w.fail != nil {
		return
	}
	what := fmt.Sprintf(format, args...)
	w.tracef("INVARIANT BROKEN: %s", what)
	tr := append(append([]string(nil), w.ring[w.ringAt:]...), w.ring[:w.ringAt]...)
	w.fail = &Failure{Seed: w.o.Seed, At: w.elapsed(), What: what, Trace: tr}
	if w.o.NoLockDelay {
		w.fail.Flags += " -sim.nolockdelay"
	}
	if w.o.NoPauseGuard {
		w.fail.Flags += " -sim.nopauseguard"
	}
}

// settle is the documented worst case for the cluster to have exactly one
// active after every fault healed: a pending switchover intent binds the
// cluster for its window, a lease must run out, a failed promotion backs
// off, preemption waits its delay, a winner waits its lock-delay (a lease);
// plus slack for the retries in between.
func (w *world) settle() time.Duration {
	t := w.cfg.Timing
	return machineWindow + 4*t.LeaseTTL + w.cfg.Hooks.PromoteBackoff + w.cfg.Preempt.Delay + 5*time.Second
}

const machineWindow = 10 * time.Second // agent.SwitchoverWindow

func (w *world) run() {
	for _, n := range w.nodes {
		n := n
		w.after(time.Duration(w.rng.IntN(500))*time.Millisecond, nil, func() { n.start() })
	}
	w.witnessUp()
	if w.o.Proxy && w.o.Mode != ha.ModeActiveActive {
		w.px = newProxyModel(w)
	}
	w.planFaults()
	end := w.o.FaultPhase + w.settle()
	w.at(t0.Add(w.o.FaultPhase), nil, w.heal)
	w.at(t0.Add(end), nil, w.finalCheck)
	for w.q.Len() > 0 && w.fail == nil {
		e := w.q.pop()
		if e.at > end {
			break
		}
		w.clk.AdvanceTo(t0.Add(e.at))
		if n := e.n; n != nil {
			if !n.alive || n.inc != e.inc {
				continue
			}
			if n.frozen {
				n.deferred = append(n.deferred, e)
				continue
			}
		}
		w.events++
		if w.events > 5_000_000 {
			w.failf("more than 5,000,000 events: a busy loop")
			break
		}
		e.f()
		w.observe()
	}
	if w.fail == nil {
		w.checkFenced()
	}
	if w.fail == nil {
		w.checkOperator()
	}
	w.res.Events = w.events
	w.res.Simulated = w.elapsed()
	if w.rev != nil {
		w.res.Revoked = w.rev.revoked
	}
}

// witnessUp publishes the witness's record, renewed forever.
func (w *world) witnessUp() {
	c := w.store.Client()
	var renew func()
	renew = func() {
		if _, err := c.Renew(bg); err != nil {
			_, _ = c.NewSession(bg, w.cfg.Timing.LeaseTTL)
			_ = c.Publish(bg, ha.NodeStatus{Name: "w1", Role: ha.RoleWitness, Healthy: true, Reason: "etcd member"})
		}
		w.after(w.cfg.Timing.LeaseTTL/3, nil, renew)
	}
	w.after(0, nil, renew)
}

// observe checks the invariants that must hold at every instant, and starts
// watch deliveries for what changed in the store.
func (w *world) observe() {
	if rev := w.store.Rev(); rev != w.lastRev {
		w.lastRev = rev
		l := w.store.Leader()
		if l != w.lastKey {
			w.lastKey = l
			w.keySet(l)
		}
		if id := w.store.SwitchoverID(); id != w.lastSw {
			w.lastSw = id
			w.intentSet(id)
		}
		if !l.None() {
			if l.Epoch < w.maxEpoch {
				w.failf("the store's epoch went back from %d to %d", w.maxEpoch, l.Epoch)
			}
			if _, ok := w.grants[l.Epoch]; !ok {
				w.grants[l.Epoch] = grant{node: l.Node, at: w.now()}
				w.res.Promotions++
			}
			w.maxEpoch = max(w.maxEpoch, l.Epoch)
		}
		for _, n := range w.nodes {
			n.watchChanged()
		}
		w.rev.keyChanged()
		w.px.watchChanged()
		w.dirty = true
	}
	if !w.dirty {
		return // no step and no store change: nobody started serving
	}
	w.dirty = false
	var serving *node
	for _, n := range w.nodes {
		w.checkRemoved(n)
		if !n.serving() {
			n.servingSince = time.Time{}
			continue
		}
		if n.servingSince.IsZero() || n.servingEpoch != n.st.Epoch {
			n.servingSince, n.servingEpoch = w.now(), n.st.Epoch
			n.firstEpisode = n.lastServedAt != n.st.Epoch
			n.lastServedAt = n.st.Epoch
		}
		if w.o.Mode == ha.ModeActiveActive {
			if _, ok := n.client.Session(); !ok {
				w.failf("%s serves (active-active) but its session is gone from the store", n.name)
			}
			continue
		}
		if l := w.store.Leader(); l != (ha.Leader{Node: n.name, Epoch: n.st.Epoch}) && !w.staleRevoked[n.st.Epoch] {
			w.failf("%s serves at epoch %d but the store's leader is %v: its key may be taken", n.name, n.st.Epoch, l)
		}
		if serving != nil {
			w.failf("two nodes serve at once: %s@%d and %s@%d", serving.name, serving.st.Epoch, n.name, n.st.Epoch)
		}
		serving = n
	}
}

// finalCheck: after the faults healed and the settle time passed, exactly
// one node is active and serving (every healthy node in active-active).
func (w *world) finalCheck() {
	var active []string
	for _, n := range w.nodes {
		if n.serving() {
			active = append(active, n.name)
		}
	}
	if w.o.Mode == ha.ModeActiveActive {
		if len(active) != len(w.nodes) {
			w.failf("%s after healing: serving %v, want every node", w.settle(), active)
		}
		return
	}
	if len(active) != 1 {
		var states []string
		for _, n := range w.nodes {
			states = append(states, fmt.Sprintf("%s=%s/e%d/healthy=%t/%s", n.name, n.st.Role, n.st.Epoch, n.st.Healthy, n.st.Reason))
		}
		w.failf("%s after healing: %d active %v, want exactly 1 (store leader %v; %s)", w.settle(), len(active), active, w.store.Leader(), strings.Join(states, ", "))
		return
	}
	if l := w.store.Leader(); l.Node != active[0] {
		w.failf("after healing %s serves but the store's leader is %v", active[0], l)
	}
}

func (w *world) newID() string {
	w.ids++
	return fmt.Sprintf("sw%d", w.ids)
}

// roleStr is a role change for the trace.
func roleStr(old, st machine.State) string {
	return fmt.Sprintf("%s→%s epoch=%d (%s)", old.Role, st.Role, st.Epoch, st.Reason)
}
