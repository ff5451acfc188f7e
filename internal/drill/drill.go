// Package drill proves haven's failover promises by measuring them. It
// builds a sandbox cluster (three real agents with the sample service and a
// standalone proxy, in network namespaces when it runs as root), drives
// client traffic through the proxy while it injects one fault at a time,
// and reports per scenario: the outage clients saw (RTO), the requests that
// failed, acknowledged writes missing afterwards (RPO), and any sign of
// split brain. The same pieces serve the chaos tests in internal/e2e/chaos.
//
// A scenario is: the cluster whole, load running; the fault; a wait for
// recovery with a deadline (or, where no recovery is expected, a watch);
// the heal; a wait until the cluster is whole again; then every
// acknowledged write is read back.
package drill

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Scenario is one fault and how to undo it.
type Scenario struct {
	Name  string
	Title string
	Netns bool // needs network namespaces
	// Store: "" runs on any sandbox; StoreEmbedded only where the agents
	// run etcd members; "database" only on a postgres or mariadb sandbox.
	Store   string
	Promise string // what the sources promise (BRIEF.md)
	Target  string // haven's target
	// ZeroErrors: the target is no failed request at all.
	ZeroErrors bool
	// NoFailover: no promotion is expected while the fault lasts.
	NoFailover bool
	// MaxRTO, when set, is the target for the outage, given the lease.
	MaxRTO func(lease time.Duration) time.Duration
	// VIPProxy: only on a sandbox whose VIP follows a healthy proxy.
	VIPProxy bool
	run      func(ctx context.Context, r *run) error
}

// Scenarios lists every scenario, in the order a drill runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "service-crash", Title: "service crash on the active (kill -9)",
			Promise: "Keycloak: < 30 s–1 min", Target: "RTO p99 ≤ 0.5 s, 0 failed idempotent requests", run: serviceCrash,
			MaxRTO: func(time.Duration) time.Duration { return 500 * time.Millisecond }},
		{Name: "agent-crash", Title: "agent crash on the active (kill -9 of agent and service)",
			Promise: "Keycloak < 1 min; keepalived ≈ 3.5 s; Patroni 20–40 s; kube-vip ≈ 15 s", Target: "RTO ≤ lease + 0.5 s, RPO 0", run: agentCrash,
			MaxRTO: func(l time.Duration) time.Duration { return l + 500*time.Millisecond }},
		{Name: "agent-freeze", Title: "agent frozen (SIGSTOP) past its lease, then SIGCONT",
			Promise: "— (Jepsen's lock-breaking case)", Target: "the old active never serves after the new one starts", run: agentFreeze},
		{Name: "etcd-leader-freeze", Title: "the node whose etcd member leads raft frozen (SIGSTOP) past the lease, then SIGCONT", Store: StoreEmbedded,
			Promise: "— (etcd issues 12528, 15247: a woken etcd leader revokes live leases)", Target: "never two actives; one active again after the wake", run: etcdLeaderFreeze},
		{Name: "active-cut", Title: "active cut off from the cluster network, both directions", Netns: true,
			Promise: "Keycloak: seconds to minutes", Target: "minority stops, majority promotes, no split brain", run: activeCut},
		{Name: "active-cut-oneway", Title: "active's outgoing cluster traffic dropped (one direction)", Netns: true,
			Promise: "Keycloak: seconds to minutes", Target: "minority stops, majority promotes, no split brain", run: activeCutOneWay},
		{Name: "standby-cut", Title: "a standby cut off from the cluster network", Netns: true, ZeroErrors: true, NoFailover: true,
			Promise: "Keycloak Infinispan node: < 1 min", Target: "no visible effect", run: standbyCut},
		{Name: "member-loss", Title: "loss of one coordination member (kill -9 of a standby's agent)", ZeroErrors: true, NoFailover: true, Store: StoreEmbedded,
			Promise: "Keycloak Infinispan node: < 1 min", Target: "no visible effect while quorum holds", run: memberLoss},
		{Name: "majority-loss", Title: "loss of the coordination majority (both standbys cut off)", Netns: true, NoFailover: true, Store: StoreEmbedded,
			Promise: "Keycloak: loss of service, manual recovery", Target: "no promotion, the active demotes, automatic recovery on heal", run: majorityLoss},
		{Name: "switchover", Title: "planned switchover (haven switchover)", ZeroErrors: true,
			Promise: "Kea: instant; Keycloak: manual steps", Target: "≤ 100 ms of held traffic, 0 errors", run: switchover,
			MaxRTO: func(time.Duration) time.Duration { return 100 * time.Millisecond }},
		{Name: "maintenance", Title: "maintenance on the active (haven maintenance on)", ZeroErrors: true,
			Promise: "Kea: instant; Keycloak: manual steps", Target: "≤ 100 ms of held traffic, 0 errors", run: maintenance,
			MaxRTO: func(time.Duration) time.Duration { return 100 * time.Millisecond }},
		{Name: "db-restart", Title: "restart of the shared database, faster than the lease", Store: storeDatabase, NoFailover: true,
			Promise: "— (Patroni rides out a DCS blip shorter than its 30 s ttl)", Target: "no failover, outage ≤ lease, RPO 0", run: dbRestart,
			MaxRTO: func(l time.Duration) time.Duration { return l }},
		{Name: "db-loss", Title: "loss of the shared database for two leases, then back", Store: storeDatabase, NoFailover: true,
			Promise: "Keycloak: loss of service, manual recovery", Target: "no promotion, the active demotes, automatic recovery, RPO 0", run: dbLoss},
		{Name: "vip-holder-crash", Title: "agent crash on the node holding the VIP (vip.follow: proxy; kill -9)", Netns: true, VIPProxy: true,
			Promise: "keepalived ≈ 3.5 s by default (0.4 s at advert_int 0.1), without fencing", Target: "RTO ≤ lease + 0.5 s, never two holders", run: vipHolderCrash,
			MaxRTO: func(l time.Duration) time.Duration { return l + 500*time.Millisecond }},
		{Name: "rolling-restart", Title: "rolling restart of every node (standbys, switchover, old active)", ZeroErrors: true,
			Promise: "Keycloak: sessions lost, both sites offline", Target: "0 errors, 0 sessions lost", run: rollingRestart},
	}
}

// Result is what one scenario measured.
type Result struct {
	Name     string         `json:"name"`
	Title    string         `json:"title"`
	Skipped  string         `json:"skipped,omitempty"`
	Failed   string         `json:"failed,omitempty"` // the drill itself could not run it through
	What     string         `json:"what"`             // what happened
	RTO      time.Duration  `json:"rto_ns"`
	RTOAt    time.Duration  `json:"rto_at_ns"` // when the longest outage began
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	ByKind   map[string]int `json:"errors_by_kind,omitempty"`
	Acked    int            `json:"acked_writes"`
	Lost     []string       `json:"lost_writes,omitempty"`
	Split    string         `json:"split_brain,omitempty"`
	Epochs   []string       `json:"epochs"`             // node@epoch answered, in order
	Promoted []string       `json:"promoted,omitempty"` // unexpected new actives during a NoFailover fault
	Promise  string         `json:"promise"`
	Target   string         `json:"target"`
	Verdict  string         `json:"verdict"` // met, missed, or why it cannot say
	Marks    []Mark         `json:"marks"`
	// Sessions: the session store's check, in a sandbox with Sessions.
	Sessions *SessionCheck `json:"sessions,omitempty"`
	// Folders: the replicated folder's check, in a sandbox with Folders.
	Folders  *FolderCheck `json:"folders,omitempty"`
	lease    time.Duration
	From, To time.Duration `json:"-"` // the plotted window
	Ops      []Op          `json:"-"`

	// FirstOK is how long after the fault clients were first served again
	// (-1: never); ActiveAfter, how long after it the drill saw the new
	// active answer its /lb-check (0: no failover). With RTO they split an
	// outage into promotion, routing, and any gap that followed.
	FirstOK     time.Duration `json:"first_ok_ns"`
	ActiveAfter time.Duration `json:"active_after_ns,omitempty"`
	// EtcdLeader says, for a node-loss fault on an etcd store, which
	// member led etcd when the fault came: "not the lost node" (the drill
	// waited for leadership to move: the node loss alone), "the lost node"
	// (it did not move within the wait: the RTO includes an etcd election),
	// "unknown". "" when it does not apply.
	EtcdLeader string `json:"etcd_leader,omitempty"`
	// Start is when the scenario began (the zero of every offset: marks,
	// ops, rto_at_ns), on the wall clock, to find its moments in the logs.
	Start time.Time `json:"start"`
}

// Mark is a moment of a scenario: the fault, the heal, the cluster whole.
type Mark struct {
	At   time.Duration `json:"at_ns"`
	What string        `json:"what"`
}

// Options configure a drill run.
type Options struct {
	Scenarios []string // names; empty: all
	Clients   int
	Log       io.Writer
	// Recover is how long a scenario may take to recover (default 30s).
	Recover time.Duration
	// RTOSlack is added to every RTO target before judging it: the
	// tests run on loaded CI machines, where a few scheduling delays in a
	// row stretch a 100 ms switchover.
	RTOSlack time.Duration
}

// run is one scenario in progress.
type run struct {
	sb      *Sandbox
	t0      time.Time
	active  string
	epoch   ha.Epoch
	marks   []Mark
	notes   []string
	lease   time.Duration
	recover time.Duration
	log     io.Writer
	// etcd: whether the lost node led etcd when the fault came (leaderAway).
	etcd string
	// promoted: new actives the scenario itself saw during a NoFailover
	// fault (clients may not have been answered by them before the heal).
	promoted []string
	// overlap: two nodes answered /lb-check 200 at overlapping moments,
	// as the scenario's own sampling saw it ("" when they never did).
	overlap string
}

func (r *run) now() time.Duration { return time.Since(r.t0) }

func (r *run) mark(what string) {
	r.marks = append(r.marks, Mark{At: r.now(), What: what})
	r.logf("  %s %s", fmtT(r.now()), what)
}

func (r *run) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *run) logf(format string, args ...any) {
	if r.log != nil {
		fmt.Fprintf(r.log, format+"\n", args...)
	}
}

func (r *run) at(what string) time.Duration {
	for _, m := range r.marks {
		if m.What == what {
			return m.At
		}
	}
	return -1
}

// activeAt is when the scenario saw a new active (failover's mark), -1
// when it did not.
func (r *run) activeAt() time.Duration {
	for _, m := range r.marks {
		if strings.HasSuffix(m.What, ")") && strings.Contains(m.What, " active (epoch ") {
			return m.At
		}
	}
	return -1
}

// waitNewActive waits until a node other than old serves as active.
func (r *run) waitNewActive(ctx context.Context, old string) (string, ha.Epoch, error) {
	deadline := time.Now().Add(r.recover)
	for {
		if n, e := r.sb.Active(); n != "" && n != old {
			return n, e, nil
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("no node other than %s became active within %s", old, r.recover)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return "", 0, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// failover: the fault, a wait for another node, the heal.
func (r *run) failover(ctx context.Context, fault, heal func() error, faultName, healName string, hold time.Duration) error {
	// Every fault here but the service crash (the one without a heal)
	// takes the active's agent, and its member, out: a node loss. Wait
	// until etcd leadership has left the active's member, so that the RTO
	// is the node loss's own and not an etcd election's as well.
	if heal != nil {
		if err := r.leaderAway(ctx, r.active); err != nil {
			return err
		}
	}
	if err := fault(); err != nil {
		return err
	}
	r.mark(faultName)
	n, e, err := r.waitNewActive(ctx, r.active)
	if err != nil {
		return err
	}
	r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
	r.note("%s took over from %s (epoch %d → %d)", n, r.active, r.epoch, e)
	if wait := hold - (r.now() - r.at(faultName)); wait > 0 {
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	if heal != nil {
		if err := heal(); err != nil {
			return err
		}
		r.mark(healName)
	}
	return nil
}

// leaderAway waits, before a node-loss fault, until node's etcd member no
// longer leads raft (the active moves leadership off its member a lease
// after its promotion: agent/leaderaway.go), then one second more, for the
// renewals to undo the lease extension the new etcd leader grants every
// lease. A fault on the etcd leader also costs an etcd election and that
// extension; the drill measures the node loss config check's "agent lost"
// row describes, and records which case it measured (Result.EtcdLeader).
// After leaderAwayTimeout (or five leases) it faults anyway, and says so.
func (r *run) leaderAway(ctx context.Context, node string) error {
	if r.sb.DB != nil {
		return nil // no etcd
	}
	leader := func() string { return r.sb.EtcdLeader(node) }
	c, waited, err := waitLeaderAway(ctx, leader, node, max(leaderAwayTimeout, 5*r.lease), 50*time.Millisecond)
	if err != nil {
		return err
	}
	r.etcd = c
	switch {
	case c == etcdLed:
		r.note("%s still led etcd after %s of waiting for it to move: this RTO includes an etcd election and the new etcd leader's lease extension", node, waited.Round(time.Millisecond))
	case c == etcdUnknown:
		r.note("could not tell which member led etcd before the fault")
	case waited > 0:
		r.logf("  %s etcd leadership left %s after %s", fmtT(r.now()), node, waited.Round(time.Millisecond))
		return sleepCtx(ctx, time.Second)
	}
	return nil
}

// waitLeaderAway asks leader (which member leads etcd, "" when it cannot
// tell) every poll until it names a member other than node or timeout
// passes, and returns which case that is (etcdNotLed, etcdLed,
// etcdUnknown) and how long it waited (0: node did not lead at the first
// look).
func waitLeaderAway(ctx context.Context, leader func() string, node string, timeout, poll time.Duration) (string, time.Duration, error) {
	start := time.Now()
	for first := true; ; first = false {
		l := leader()
		switch {
		case l != "" && l != node && first:
			return etcdNotLed, 0, nil
		case l != "" && l != node:
			return etcdNotLed, time.Since(start), nil
		case time.Since(start) < timeout:
		case l == node:
			return etcdLed, time.Since(start), nil
		default:
			return etcdUnknown, time.Since(start), nil
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return "", time.Since(start), err
		}
	}
}

// leaderAwayTimeout bounds leaderAway's wait (at least five leases).
const leaderAwayTimeout = 15 * time.Second

// What a node-loss scenario measured, as to etcd leadership
// (Result.EtcdLeader).
const (
	etcdNotLed  = "not the lost node" // the node loss alone
	etcdLed     = "the lost node"     // node loss plus an etcd election
	etcdUnknown = "unknown"
)

func serviceCrash(ctx context.Context, r *run) error {
	return r.failover(ctx, func() error {
		pid, err := r.sb.KillService(r.active)
		r.note("killed %s's service (pid %d)", r.active, pid)
		return err
	}, nil, "fault", "", 0)
}

func agentCrash(ctx context.Context, r *run) error {
	return r.failover(ctx,
		func() error { return r.sb.StopAgent(r.active, syscall.SIGKILL, 10*time.Second) },
		func() error { return r.sb.StartAgent(r.active) }, "fault", "heal (agent restarted)", 0)
}

// vipHolderCrash kills the agent (and with it the proxy) of the node that
// holds the VIP, which need not be the active, and waits for another node
// to hold it.
func vipHolderCrash(ctx context.Context, r *run) error {
	holder := r.sb.VIPHolder()
	if holder == "" {
		return fmt.Errorf("no node holds the virtual IP")
	}
	r.note("%s held the VIP (%s was active)", holder, r.active)
	if err := r.leaderAway(ctx, holder); err != nil {
		return err
	}
	if err := r.sb.StopAgent(holder, syscall.SIGKILL, 10*time.Second); err != nil {
		return err
	}
	r.mark("fault")
	deadline := time.Now().Add(r.recover)
	for {
		if h := r.sb.VIPHolder(); h != "" && h != holder {
			r.mark(h + " holds the VIP")
			r.note("%s took the VIP over from %s", h, holder)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no node other than %s held the VIP within %s", holder, r.recover)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	if err := r.sb.StartAgent(holder); err != nil {
		return err
	}
	r.mark("heal (agent restarted)")
	return nil
}

func agentFreeze(ctx context.Context, r *run) error {
	// Frozen for two leases: well past the moment the store drops it.
	return r.failover(ctx,
		func() error { return r.sb.Signal(r.active, syscall.SIGSTOP) },
		func() error { return r.sb.Signal(r.active, syscall.SIGCONT) }, "fault", "heal (SIGCONT)", 2*r.lease)
}

// etcdLeaderFreeze freezes the agent whose embedded etcd member leads raft
// (a standby, as a rule: the active moves leadership off its own member)
// for a lease and a second, then wakes it. Woken, that member's lessor still thinks
// itself primary for a moment and may revoke every lease it saw expire
// while frozen, the live active's too (etcd issues 12528 and 15247): the
// active's key goes while its renewals keep its bound, and the next winner
// must wait out the lock-delay (package lockdelay) before it acts. Every
// node's /lb-check is sampled every 10 ms throughout: two nodes answering
// 200 at overlapping moments is split brain.
func etcdLeaderFreeze(ctx context.Context, r *run) error {
	leader := r.sb.EtcdLeader(r.active)
	if leader == "" {
		return fmt.Errorf("no agent says which etcd member leads raft")
	}
	what := "a standby"
	if leader == r.active {
		what = "the active"
	}
	mon := r.sb.WatchLB()
	defer func() {
		mon.Stop()
		r.overlap = mon.Overlap()
	}()
	seen := []string{fmt.Sprintf("%s@%d", r.active, r.epoch)}
	look := func() {
		if n, e := r.sb.Active(); n != "" {
			if a := fmt.Sprintf("%s@%d", n, e); a != seen[len(seen)-1] {
				seen = append(seen, a)
				r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
			}
		}
	}
	watch := func(d time.Duration) error {
		for end := time.Now().Add(d); time.Now().Before(end); {
			look()
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
		return nil
	}
	if err := r.sb.Signal(leader, syscall.SIGSTOP); err != nil {
		return err
	}
	r.mark("fault")
	// Past the lease: every lease the frozen lessor knew has expired in
	// its view when it wakes.
	hold := r.lease + time.Second
	if err := watch(hold); err != nil {
		_ = r.sb.Signal(leader, syscall.SIGCONT)
		return err
	}
	if err := r.sb.Signal(leader, syscall.SIGCONT); err != nil {
		return err
	}
	r.mark("heal (SIGCONT)")
	// The woken lessor's revocation comes within a tick of the wake, the
	// next winner's lock-delay a lease after it.
	if err := watch(r.lease + time.Second); err != nil {
		return err
	}
	r.note("froze %s (%s) for %s while its etcd member led raft", leader, what, fmtDur(hold))
	switch {
	case len(seen) == 1:
		r.note("%s stayed active", r.active)
	case what == "a standby":
		r.note("the active changed though it was not frozen (%s): as a rule, the woken etcd leader revoked its live lease", strings.Join(seen, " → "))
	default:
		r.note("actives: %s", strings.Join(seen, " → "))
	}
	return nil
}

func activeCut(ctx context.Context, r *run) error {
	return r.failover(ctx,
		func() error { return r.sb.Cut(r.active) },
		func() error { return r.sb.Heal(r.active) }, "fault", "heal", 2*r.lease)
}

func activeCutOneWay(ctx context.Context, r *run) error {
	return r.failover(ctx,
		func() error { return r.sb.CutEgress(r.active) },
		func() error { return r.sb.Heal(r.active) }, "fault", "heal", 2*r.lease)
}

// watch keeps the fault for d and notes any change of the active.
func (r *run) watch(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if n, e := r.sb.Active(); n != "" && (n != r.active || e != r.epoch) {
			r.note("%s became active (epoch %d) during the fault", n, e)
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func standbyCut(ctx context.Context, r *run) error {
	sb := r.sb.Standbys(r.active)[0]
	if err := r.sb.Cut(sb); err != nil {
		return err
	}
	r.mark("fault")
	r.note("cut %s off", sb)
	if err := r.watch(ctx, 3*r.lease); err != nil {
		return err
	}
	if err := r.sb.Heal(sb); err != nil {
		return err
	}
	r.mark("heal")
	return nil
}

func memberLoss(ctx context.Context, r *run) error {
	sb := r.sb.Standbys(r.active)[0]
	if err := r.sb.StopAgent(sb, syscall.SIGKILL, 10*time.Second); err != nil {
		return err
	}
	r.mark("fault")
	r.note("killed %s's agent and etcd member", sb)
	if err := r.watch(ctx, 3*r.lease); err != nil {
		return err
	}
	if err := r.sb.StartAgent(sb); err != nil {
		return err
	}
	r.mark("heal (agent restarted)")
	return nil
}

func majorityLoss(ctx context.Context, r *run) error {
	sbs := r.sb.Standbys(r.active)
	for _, n := range sbs {
		if err := r.sb.Cut(n); err != nil {
			return err
		}
	}
	r.mark("fault")
	r.note("cut %s off: %s's etcd member has no quorum", strings.Join(sbs, " and "), r.active)
	// The active must stop when its lease runs out, and nobody may start.
	var stopped time.Duration = -1
	end := time.Now().Add(3 * r.lease)
	for time.Now().Before(end) {
		srv := r.sb.Serving()
		if len(srv) > 1 || len(srv) == 1 && srv[0] != r.active {
			r.note("%v served during the outage", srv)
		}
		if len(srv) == 0 && stopped < 0 {
			stopped = r.now() - r.at("fault")
			r.mark(r.active + " stopped serving")
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	if stopped < 0 {
		r.note("%s kept serving for %s without a quorum", r.active, 3*r.lease)
	} else {
		r.note("%s stopped serving %s after losing quorum; nobody promoted", r.active, stopped.Round(time.Millisecond))
	}
	for _, n := range sbs {
		if err := r.sb.Heal(n); err != nil {
			return err
		}
	}
	r.mark("heal")
	return nil
}

func switchover(ctx context.Context, r *run) error {
	r.mark("fault")
	out, err := r.sb.Haven(ctx, "switchover", "--reason", "drill")
	if err != nil {
		return err
	}
	r.note("%s", firstLine(out))
	n, e, err := r.waitNewActive(ctx, r.active)
	if err != nil {
		return err
	}
	r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
	return nil
}

func maintenance(ctx context.Context, r *run) error {
	r.mark("fault")
	if _, err := r.sb.Haven(ctx, "maintenance", "on", r.active); err != nil {
		return err
	}
	n, e, err := r.waitNewActive(ctx, r.active)
	if err != nil {
		return err
	}
	r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
	r.note("%s in maintenance; %s took over (epoch %d → %d)", r.active, n, r.epoch, e)
	if err := sleepCtx(ctx, r.lease); err != nil {
		return err
	}
	if _, err := r.sb.Haven(ctx, "maintenance", "off", r.active); err != nil {
		return err
	}
	r.mark("heal (maintenance off)")
	return nil
}

func rollingRestart(ctx context.Context, r *run) error {
	r.mark("fault")
	restart := func(n string) error {
		if err := r.sb.StopAgent(n, syscall.SIGTERM, 20*time.Second); err != nil {
			return err
		}
		if err := r.sb.StartAgent(n); err != nil {
			return err
		}
		return r.sb.WaitWhole(ctx, r.recover)
	}
	for _, n := range r.sb.Standbys(r.active) {
		if err := restart(n); err != nil {
			return err
		}
		r.mark(n + " restarted")
	}
	if _, err := r.sb.Haven(ctx, "switchover", "--reason", "rolling restart"); err != nil {
		return err
	}
	n, e, err := r.waitNewActive(ctx, r.active)
	if err != nil {
		return err
	}
	r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
	if err := restart(r.active); err != nil {
		return err
	}
	r.mark(r.active + " restarted")
	r.note("restarted every agent, one at a time; switched over to %s (epoch %d) before restarting %s", n, e, r.active)
	return nil
}

// storeDatabase: a scenario for a sandbox whose agents share a database.
const storeDatabase = "database"

// dbRestart stops and starts the database at once: the active's renewals
// fail meanwhile, but its lease outlives the restart, so nobody moves.
func dbRestart(ctx context.Context, r *run) error {
	r.mark("fault")
	took, err := r.sb.DB.Restart()
	if err != nil {
		return err
	}
	r.mark(fmt.Sprintf("%s back after %s", r.sb.DB.Kind, fmtDur(took)))
	r.note("restarted %s in %s (lease %s)", r.sb.DB.Kind, fmtDur(took), fmtDur(r.lease))
	// A failover caused by the restart shows within a lease of it. The
	// whole lease is watched, so that the clients answered by a new active
	// count as an unexpected failover (before the heal mark).
	moved := false
	end := time.Now().Add(r.lease)
	for time.Now().Before(end) {
		if n, e := r.sb.Active(); n != "" && (n != r.active || e != r.epoch) && !moved {
			moved = true
			r.note("%s became active (epoch %d) after the restart", n, e)
			r.promoted = append(r.promoted, fmt.Sprintf("%s@%d", n, e))
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	r.mark("heal (a lease later)")
	return nil
}

// dbLoss stops the database for two leases: the active must stop serving
// when its lease runs out and nobody may start; when the database is back
// the agents elect again on their own.
func dbLoss(ctx context.Context, r *run) error {
	if err := r.sb.StopDB(); err != nil {
		return err
	}
	r.mark("fault")
	var (
		stopped time.Duration = -1
		others  []string
	)
	end := time.Now().Add(2 * r.lease)
	for time.Now().Before(end) {
		srv := r.sb.Serving()
		for _, n := range srv {
			if n != r.active && !slices.Contains(others, n) {
				others = append(others, n)
			}
		}
		if len(srv) == 0 && stopped < 0 {
			stopped = r.now() - r.at("fault")
			r.mark(r.active + " stopped serving")
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			_ = r.sb.StartDB()
			return err
		}
	}
	if err := r.sb.StartDB(); err != nil {
		return err
	}
	r.mark("heal (database started)")
	switch {
	case len(others) > 0:
		return fmt.Errorf("%s answered /lb-check 200 while the database was down", strings.Join(others, " and "))
	case stopped < 0:
		return fmt.Errorf("%s kept serving for %s without its database", r.active, 2*r.lease)
	}
	r.note("%s stopped serving %s after the database went; nobody promoted", r.active, stopped.Round(time.Millisecond))
	deadline := time.Now().Add(r.recover)
	for {
		if n, e := r.sb.Active(); n != "" {
			r.mark(fmt.Sprintf("%s active (epoch %d)", n, e))
			r.note("%s active again %s after the database came back (epoch %d → %d)", n, (r.now() - r.at("heal (database started)")).Round(time.Millisecond), r.epoch, e)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no node active within %s of the database coming back", r.recover)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Run runs the chosen scenarios on sb, one after the other, and returns
// their results. A scenario that needs network namespaces on a sandbox
// without them is reported as skipped.
func Run(ctx context.Context, sb *Sandbox, o Options) ([]Result, error) {
	all := Scenarios()
	var chosen []Scenario
	for _, sc := range all {
		if len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, sc.Name) {
			chosen = append(chosen, sc)
		}
	}
	for _, name := range o.Scenarios {
		if !slices.ContainsFunc(all, func(s Scenario) bool { return s.Name == name }) {
			return nil, fmt.Errorf("no scenario %q; the scenarios are %s", name, strings.Join(Names(), ", "))
		}
	}
	if o.Recover <= 0 {
		o.Recover = 30 * time.Second
	}
	var out []Result
	for i, sc := range chosen {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		fmt.Fprintf(logOr(o.Log), "[%d/%d] %s: %s\n", i+1, len(chosen), sc.Name, sc.Title)
		res := RunOne(ctx, sb, sc, o, i)
		out = append(out, res)
		fmt.Fprintf(logOr(o.Log), "  → %s\n", res.Summary())
	}
	return out, nil
}

func logOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Names lists the scenario names.
func Names() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// RunOne runs one scenario on a whole cluster and measures it.
func RunOne(ctx context.Context, sb *Sandbox, sc Scenario, o Options, seq int) Result {
	res := Result{Name: sc.Name, Title: sc.Title, Promise: sc.Promise, Target: sc.Target, lease: sb.Lease}
	if sc.Netns && sb.lab == nil {
		res.Skipped = "needs network namespaces: run as root"
		if sb.DB != nil {
			res.Skipped = "needs network namespaces, which a database sandbox does not use"
		}
		res.Verdict = "skipped"
		return res
	}
	switch {
	case sc.VIPProxy && !sb.Opts.VIPFollowProxy:
		res.Skipped = "needs a VIP that follows the proxies: --vip --vip-follow proxy"
	case sc.Store == storeDatabase && sb.DB == nil:
		res.Skipped = "needs a database store: --store postgres or mariadb"
	case sc.Store == StoreEmbedded && sb.DB != nil:
		res.Skipped = "about the embedded etcd members, which a database sandbox does not run"
	}
	if res.Skipped != "" {
		res.Verdict = "skipped"
		return res
	}
	if err := sb.WaitWhole(ctx, 60*time.Second); err != nil {
		res.Failed = "the cluster was not whole before the fault: " + err.Error()
		res.Verdict = "not run"
		return res
	}
	t0 := time.Now()
	r := &run{sb: sb, t0: t0, lease: sb.Lease, recover: o.Recover, log: o.Log}
	res.Start = t0
	r.active, r.epoch = sb.Active()
	target := "http://" + sb.Proxy
	if sb.VIP != "" {
		target = "http://" + sb.VIP // straight to the active, through the virtual IP
	}
	load := StartLoad(LoadOptions{Target: target, Clients: o.Clients,
		Prefix: fmt.Sprintf("d%d-%s-%d-", t0.Unix(), sc.Name, seq)}, t0)
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	_ = sleepCtx(ctx, time.Second) // a baseline before the fault
	var sessKeys []string
	if sb.Opts.Sessions {
		res.Sessions, sessKeys = sb.writeSessions(ctx, fmt.Sprintf("drill:%d:%s:%d:", t0.Unix(), sc.Name, seq))
	}
	var files map[string][]byte
	if sb.Opts.Folders {
		res.Folders, files = sb.writeFiles(ctx, fmt.Sprintf("drill-%d-%s-%d", t0.Unix(), sc.Name, seq))
	}
	err := sc.run(ctx, r)
	if err != nil {
		res.Failed = err.Error()
	}
	if werr := sb.WaitWhole(ctx, 60*time.Second); werr != nil {
		res.Failed = strings.TrimPrefix(res.Failed+"; ", "; ") + "not whole again: " + werr.Error()
	} else {
		r.mark("whole")
	}
	_ = sleepCtx(ctx, 500*time.Millisecond)
	load.Stop()
	stopped = true
	ops := load.Ops()
	res.Ops, res.Marks = ops, r.marks
	fault, whole := r.at("fault"), r.at("whole")
	if whole < 0 {
		whole = r.now()
	}
	if fault < 0 {
		fault = time.Second
	}
	res.From, res.To = max(0, fault-time.Second), r.now()
	res.RTO, res.RTOAt = Outage(ops, fault, whole)
	res.FirstOK = FirstSuccess(ops, fault)
	if a := r.activeAt(); a >= 0 {
		res.ActiveAfter = a - fault
	}
	for _, op := range ops {
		if op.End >= fault && op.Start <= whole {
			res.Requests++
		}
	}
	res.Errors, res.ByKind = Errors(ops, fault, whole)
	res.Split = SplitBrain(ops)
	if r.overlap != "" {
		res.Split = strings.TrimPrefix(res.Split+"; ", "; ") + r.overlap
	}
	res.Epochs = Epochs(ops, 0, r.now())
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	acked, lost, rerr := ReadBack(rctx, "http://"+sb.Proxy, ops)
	cancel()
	res.Acked, res.Lost = acked, lost
	if rerr != nil {
		r.note("read back incomplete: %v", rerr)
	}
	if res.Sessions != nil && res.Sessions.Err == "" {
		sb.readSessions(ctx, res.Sessions, sessKeys)
	}
	if res.Sessions != nil && res.Sessions.Err != "" {
		r.note("session check incomplete: %s", res.Sessions.Err)
	}
	if res.Folders != nil && res.Folders.Err == "" {
		sb.readFiles(ctx, res.Folders, files)
	}
	if res.Folders != nil && res.Folders.Err != "" {
		r.note("folder check incomplete: %s", res.Folders.Err)
	}
	if sc.NoFailover {
		heal := whole
		for _, m := range r.marks {
			if strings.HasPrefix(m.What, "heal") {
				heal = m.At
				break
			}
		}
		for _, e := range Epochs(ops, fault, heal) {
			if e != fmt.Sprintf("%s@%d", r.active, r.epoch) {
				res.Promoted = append(res.Promoted, e)
			}
		}
		if len(res.Promoted) > 0 {
			r.note("clients were answered at %s before the heal", strings.Join(res.Promoted, ", "))
		}
		for _, e := range r.promoted {
			if !slices.Contains(res.Promoted, e) {
				res.Promoted = append(res.Promoted, e)
			}
		}
	}
	res.EtcdLeader = r.etcd
	if d := sb.LockDelays(r.epoch); d != "" {
		r.note("%s", d)
	}
	res.What = strings.Join(r.notes, "; ")
	res.Verdict = verdict(sc, res, o.RTOSlack)
	return res
}

// split says where the outage went when it is more than one stretch from
// the fault: when the new active answered its /lb-check, when clients
// were first served again, and when the longest gap began if it came after
// that. "" when there is nothing to split.
func (r Result) split() string {
	var parts []string
	if r.ActiveAfter > 0 {
		parts = append(parts, "new active at +"+fmtDur(r.ActiveAfter))
	}
	if r.FirstOK > 0 && (r.ActiveAfter > 0 || r.FirstOK < r.RTO) {
		parts = append(parts, "clients served again at +"+fmtDur(r.FirstOK))
	}
	if f, ok := r.fault(); ok && r.RTOAt > f {
		parts = append(parts, fmt.Sprintf("then the longest gap from +%s", fmtDur(r.RTOAt-f)))
	}
	return strings.Join(parts, ", ")
}

// fault is when the fault mark was set (the start of the outage window).
func (r Result) fault() (time.Duration, bool) {
	for _, m := range r.Marks {
		if m.What == "fault" {
			return m.At, true
		}
	}
	return 0, false
}

// verdict compares a result with the scenario's target.
func verdict(sc Scenario, r Result, slack time.Duration) string {
	var miss []string
	if r.Failed != "" {
		miss = append(miss, "drill failed")
	}
	if r.Split != "" {
		miss = append(miss, "split brain")
	}
	if len(r.Lost) > 0 {
		miss = append(miss, "lost writes")
	}
	if r.Sessions != nil && len(r.Sessions.Lost) > 0 {
		miss = append(miss, "lost sessions")
	}
	if r.Folders != nil && len(r.Folders.Lost) > 0 {
		miss = append(miss, "lost files")
	}
	if sc.NoFailover && len(r.Promoted) > 0 {
		miss = append(miss, "unexpected failover")
	}
	if sc.MaxRTO != nil && r.RTO > sc.MaxRTO(r.lease)+slack {
		miss = append(miss, fmt.Sprintf("RTO over %s", fmtDur(sc.MaxRTO(r.lease)+slack)))
	}
	if sc.ZeroErrors && r.Errors > 0 {
		miss = append(miss, "errors")
	}
	if len(miss) == 0 {
		return "met"
	}
	return "missed: " + strings.Join(miss, ", ")
}

// Summary is one line about the result.
func (r Result) Summary() string {
	if r.Skipped != "" {
		return "skipped: " + r.Skipped
	}
	s := fmt.Sprintf("RTO %s, %d errors of %d requests, %d/%d acked writes lost, split brain: %s",
		fmtDur(r.RTO), r.Errors, r.Requests, len(r.Lost), r.Acked, yesNo(r.Split))
	if sp := r.split(); sp != "" {
		s += " (" + sp + ")"
	}
	if r.EtcdLeader != "" {
		s += ", etcd leader: " + r.EtcdLeader
	}
	if r.Sessions != nil {
		s += fmt.Sprintf(", %d/%d sessions lost", len(r.Sessions.Lost), r.Sessions.Written)
	}
	if r.Folders != nil {
		s += fmt.Sprintf(", %d/%d shipped files lost", len(r.Folders.Lost), r.Folders.Written)
	}
	if r.Failed != "" {
		s += "; FAILED: " + r.Failed
	}
	return s
}

func yesNo(s string) string {
	if s == "" {
		return "no"
	}
	return "YES (" + s + ")"
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
