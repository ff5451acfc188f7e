// Package machine is haven's role state machine: given the agent's state, one
// event and the current time, Step returns the next state and the actions the
// driver must carry out. It has no goroutines, no clock and no I/O, so every
// failover and fencing rule can be tested by feeding it events.
//
// # Safety argument
//
// The agent renews its store session; each renewal that succeeds proves the
// store will not expire the session before sentAt+TTL, where sentAt is read
// from the agent's own clock before the request was sent (the store starts
// the TTL when it processes the request, which is later). State.ValidUntil
// keeps the latest such bound. The active serves only while
// now < ValidUntil-FenceMargin (State.Serving), so it stops serving at least
// FenceMargin before the store can delete its leader key and let a standby
// campaign. FenceMargin covers the demote hook (or the SIGKILL of a cold
// service) plus clock-rate drift; config validation enforces that.
//
// A process that is paused (SIGSTOP, a long GC, a VM freeze) cannot act while
// paused, and on resumption Serving is computed from the clock, which has
// moved on, so it answers "not serving" before the driver has even stepped.
package machine

import (
	"errors"
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Config holds the parameters of the rules.
type Config struct {
	Node           string
	FenceMargin    time.Duration // stop acting this long before the lease can expire
	PromoteBackoff time.Duration // ineligible this long after a failed promotion

	Mode         ha.Mode        // empty means active-passive
	Backup       bool           // passive-backup: this node promotes only on an operator's request
	Priorities   map[string]int // every node's priority (higher is preferred)
	Preempt      bool           // a higher-priority node takes the role back
	PreemptDelay time.Duration  // after being eligible this long
	Failsafe     bool           // store-outage policy: keep serving while every peer confirms
}

func (c Config) activeActive() bool { return c.Mode == ha.ModeActiveActive }

// State is everything the rules depend on. The zero value is a node that has
// just started.
type State struct {
	Role   ha.Role
	Epoch  ha.Epoch // our epoch while promoting, active or demoting
	Since  time.Time
	Reason string // why the last role change happened

	Leader      ha.Leader // last leader seen in the store
	LeaderKnown bool      // a snapshot has been seen since the session began and since the watch last started over (ViewLost)

	Healthy      bool
	HealthReason string

	SessionOK  bool
	ValidUntil time.Time // the store keeps our session at least until then
	// FencedAt: the latest fenced demotion. An answer to a renewal sent
	// before it no longer counts (see SessionRenewed).
	FencedAt time.Time

	BackoffUntil time.Time // not eligible before then (failed promotion)
	Acquiring    bool      // a campaign is in flight
	Stopping     bool      // the agent is shutting down
	Reclaimed    ha.Epoch  // keys in our name up to this epoch were asked about or handed back
	Failovers    int64     // promotions of this node

	Maintenance     bool          // an operator excluded this node from elections
	Switchover      ha.Switchover // the pending switchover (ID "" when none)
	SwitchoverUntil time.Time     // its deadline on this clock
	PromoteSeq      uint64        // numbers promotions, so a late result is recognised
	VacantSince     time.Time     // the leader key has been vacant since then (zero: held or unknown)
	GraceLapsed     bool          // a switchover target has had the vacant key for SwitchoverGrace
	EligibleSince   time.Time     // eligible without a break since then
	PreemptAsked    time.Time     // when this node last asked to take the role back

	// Failsafe (store outage): the active may serve until FailsafeUntil
	// because every peer promised not to take over; a standby that made
	// such a promise is ineligible until PromisedUntil.
	FailsafeUntil time.Time
	PromisedUntil time.Time
	PromisedTo    string
}

func (s State) switchoverPending(now time.Time) bool {
	return s.Switchover.ID != "" && now.Before(s.SwitchoverUntil)
}

// SwitchoverGrace is how long a switchover's target has the vacant key to
// itself: if it has not taken it by then (it fell ill, or is overloaded),
// any eligible standby may, so a bad target cannot leave the cluster
// without an active node until the intent's deadline.
const SwitchoverGrace = time.Second

// reservedForOther: a pending switchover keeps this node from campaigning.
func (s State) reservedForOther(cfg Config, now time.Time) bool {
	if !s.switchoverPending(now) || s.Switchover.To == cfg.Node {
		return false
	}
	graceOver := s.GraceLapsed || !s.VacantSince.IsZero() && !now.Before(s.VacantSince.Add(SwitchoverGrace))
	return !graceOver
}

// Event is an input to Step.
type Event interface{ isEvent() }

// Tick lets time-based rules fire. The driver sends it at NextDeadline.
type Tick struct{}

// SessionRenewed reports a renewal (or a new session) that the store granted
// with ttl; SentAt is when the request was sent.
type SessionRenewed struct {
	SentAt time.Time
	TTL    time.Duration
	New    bool // a new session replaced a lost one
}

// SessionLost reports that the store no longer has our session.
type SessionLost struct{ Err error }

// LeaderSeen reports the leader recorded in the store (None when vacant).
type LeaderSeen struct{ Leader ha.Leader }

// ViewLost reports that the store's watch failed or stalled and is
// starting over (ha.Snapshot.Behind): the leader last seen may be out of
// date until the next LeaderSeen. A standby then neither campaigns nor
// claims to be ready to take over (its record, agent.RecordOf).
type ViewLost struct{}

// HealthChanged reports the aggregate health of the local service.
type HealthChanged struct {
	Healthy bool
	Reason  string
}

// CampaignResult reports the outcome of a Campaign action.
type CampaignResult struct {
	Epoch ha.Epoch // set when won
	Err   error    // ha.ErrTaken when somebody else won
}

// PromoteResult reports the outcome of a Promote action; Seq is the
// action's, so a late result of an earlier promotion is told apart (in
// active-active every promotion is at epoch 0).
type PromoteResult struct {
	Epoch ha.Epoch
	Seq   uint64
	Err   error
}

// DemoteResult reports that a Demote action finished.
type DemoteResult struct {
	Epoch ha.Epoch
	Err   error
}

// Shutdown asks the node to leave the active role and stop.
type Shutdown struct{}

// FailsafeGranted reports that every peer, asked at SentAt, confirmed it is
// not active and promised not to take over for Grant from when it answered.
type FailsafeGranted struct {
	SentAt time.Time
	Grant  time.Duration
}

// FailsafeAsked reports that the active node From asked this node, at now,
// to promise not to take over until Until.
type FailsafeAsked struct {
	From  string
	Until time.Time
}

// IntentsSeen reports the operators' intents that concern this node, read
// from the store. SwitchoverUntil is the switchover's deadline converted to
// this clock by the driver.
type IntentsSeen struct {
	Maintenance     bool
	Switchover      ha.Switchover
	SwitchoverUntil time.Time
}

func (Tick) isEvent()            {}
func (SessionRenewed) isEvent()  {}
func (SessionLost) isEvent()     {}
func (LeaderSeen) isEvent()      {}
func (ViewLost) isEvent()        {}
func (HealthChanged) isEvent()   {}
func (CampaignResult) isEvent()  {}
func (PromoteResult) isEvent()   {}
func (DemoteResult) isEvent()    {}
func (Shutdown) isEvent()        {}
func (IntentsSeen) isEvent()     {}
func (FailsafeGranted) isEvent() {}
func (FailsafeAsked) isEvent()   {}

// Action is an output of Step, carried out by the driver in order.
type Action interface{ isAction() }

// Campaign asks the driver to try once to take the active role. The store
// answers a campaign of the session that already holds the key with that
// key's epoch, so a campaign can be repeated when its answer was lost.
//
// Reclaim, when set, says why: the store shows the key in this node's name
// at that epoch, which the machine never learned it had won (a campaign
// that timed out after it committed, or the key of an earlier run of this
// agent). The answer is the key's epoch if it is bound to this agent's
// session, ha.ErrTaken if not (an earlier run's key: wait for it to expire).
type Campaign struct {
	Reclaim ha.Epoch
}

// Promote asks the driver to start acting as active at Epoch (start a cold
// service, run the on_promote hook) and report PromoteResult with Seq.
type Promote struct {
	Epoch ha.Epoch
	Seq   uint64
}

// Demote asks the driver to stop acting as active (on_demote hook, stop a
// cold service) and report DemoteResult. Fenced means the lease is about to
// expire: the driver must finish by the lease deadline, killing if needed.
//
// Deadline, when set (fenced), is the lease's ValidUntil at the time of the
// decision: the store may expire the key from then on, so the demotion must
// be over by then whatever else the driver is doing.
type Demote struct {
	Epoch    ha.Epoch
	Reason   string
	Fenced   bool
	Deadline time.Time
}

// Resign asks the driver to delete the leader key if it still holds Epoch.
type Resign struct{ Epoch ha.Epoch }

// Publish asks the driver to write the node's status to the store.
type Publish struct{}

// NewSession asks the driver to create a fresh session after losing one.
type NewSession struct{}

// RequestSwitchover asks the driver to record a switchover to this node
// (preemption by a higher-priority node).
type RequestSwitchover struct{ Reason string }

// ClearSwitchover asks the driver to remove a completed switchover intent.
type ClearSwitchover struct{ ID string }

func (Campaign) isAction()          {}
func (Promote) isAction()           {}
func (Demote) isAction()            {}
func (Resign) isAction()            {}
func (Publish) isAction()           {}
func (NewSession) isAction()        {}
func (RequestSwitchover) isAction() {}
func (ClearSwitchover) isAction()   {}

// Serving reports whether the node should receive traffic at now: it is
// active, healthy, and its lease is valid with the fence margin to spare.
// The HTTP /lb-check answer is exactly this.
func (s State) Serving(cfg Config, now time.Time) bool {
	return s.Role == ha.RoleActive && s.Healthy && s.SessionOK && now.Before(s.servingUntil(cfg))
}

// servingUntil is when a holder must stop: the fence deadline of its lease,
// or later if every peer has confirmed failsafe.
func (s State) servingUntil(cfg Config) time.Time {
	if t := s.fenceAt(cfg); cfg.Failsafe && s.FailsafeUntil.After(t) {
		return s.FailsafeUntil
	}
	return s.fenceAt(cfg)
}

// Holding reports whether the node believes it holds the leader key.
func (s State) Holding() bool {
	return s.Role == ha.RolePromoting || s.Role == ha.RoleActive
}

func (s State) fenceAt(cfg Config) time.Time { return s.ValidUntil.Add(-cfg.FenceMargin) }

// Eligible reports whether the node may campaign at now, and if not, why.
func (s State) Eligible(cfg Config, now time.Time) (bool, string) {
	switch {
	case s.Stopping:
		return false, "agent is stopping"
	case !s.SessionOK:
		return false, "no session in the store"
	case !now.Before(s.fenceAt(cfg)):
		return false, "lease not renewed recently enough"
	case !s.Healthy:
		return false, "service unhealthy: " + s.HealthReason
	case now.Before(s.BackoffUntil):
		return false, fmt.Sprintf("promotion failed recently; eligible again in %s", s.BackoffUntil.Sub(now).Round(time.Millisecond))
	case now.Before(s.PromisedUntil):
		return false, "promised " + s.PromisedTo + " not to take over for now (failsafe: the store is unreachable)"
	case s.Maintenance:
		return false, "in maintenance (haven maintenance off " + cfg.Node + " to end it)"
	case s.reservedForOther(cfg, now):
		return false, "switchover to " + s.Switchover.To + " in progress"
	case cfg.Mode == ha.ModePassiveBackup && cfg.Backup && !(s.switchoverPending(now) && s.Switchover.To == cfg.Node):
		return false, "backup: promoted only by an operator (haven promote " + cfg.Node + ")"
	}
	return true, "healthy and ready to take over"
}

// NextDeadline is when the driver must send a Tick, or the zero time if no
// time-based rule is pending.
func (s State) NextDeadline(cfg Config) time.Time {
	var d time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	// Only a holder has a rule that fires at the fence. Reporting it in other
	// roles would hand the driver a deadline in the past once renewals stop
	// (store unreachable), and it would tick in a busy loop.
	if s.SessionOK && s.Holding() {
		earliest(s.servingUntil(cfg))
	}
	if !s.PromisedUntil.IsZero() {
		earliest(s.PromisedUntil)
	}
	if !s.BackoffUntil.IsZero() {
		earliest(s.BackoffUntil)
	}
	if s.Switchover.ID != "" {
		earliest(s.SwitchoverUntil)
		if s.Switchover.To != cfg.Node && !s.VacantSince.IsZero() && !s.GraceLapsed {
			earliest(s.VacantSince.Add(SwitchoverGrace))
		}
	}
	if s.Role == ha.RoleStandby && !s.EligibleSince.IsZero() && s.couldPreempt(cfg) {
		// The later of: eligible for the delay, and the delay since the last ask.
		t := s.EligibleSince.Add(cfg.PreemptDelay)
		if a := s.PreemptAsked.Add(cfg.PreemptDelay); !s.PreemptAsked.IsZero() && a.After(t) {
			t = a
		}
		earliest(t)
	}
	return d
}

// Step applies ev at now and returns the new state and the actions to take.
func Step(cfg Config, s State, ev Event, now time.Time) (State, []Action) {
	var acts []Action
	if s.Role == "" {
		s.Role, s.Since, s.Reason = ha.RoleStarting, now, "agent started"
	}
	before := s
	switch ev := ev.(type) {
	case Tick:
		if !s.BackoffUntil.IsZero() && !now.Before(s.BackoffUntil) {
			s.BackoffUntil = time.Time{}
		}
		if !s.PromisedUntil.IsZero() && !now.Before(s.PromisedUntil) {
			s.PromisedUntil, s.PromisedTo = time.Time{}, ""
		}
		if s.Switchover.ID != "" && !now.Before(s.SwitchoverUntil) {
			s.Switchover, s.SwitchoverUntil = ha.Switchover{}, time.Time{}
		}
		if !s.VacantSince.IsZero() && !now.Before(s.VacantSince.Add(SwitchoverGrace)) {
			s.GraceLapsed = true
		}
	case SessionRenewed:
		if s.Holding() && !now.Before(s.servingUntil(cfg)) {
			// The fence deadline passed before this answer was seen (the
			// process was frozen, or the tick is late): by its own rule
			// the holder has given up, and a standby may already act on
			// that. A late answer must not revive it, nor one from an etcd
			// member that woke from a freeze still believing it leads and
			// renewed a lease the cluster had revoked (etcd #15247).
			s, acts = demote(cfg, s, acts, now, "lease not renewed in time: fencing before it can expire", true)
		}
		if ev.New {
			// The leader key of an earlier session went with it; watch again.
			s.LeaderKnown = false
			if s.Holding() {
				// Only if the driver skipped SessionLost: we hold nothing now.
				s, acts = demote(cfg, s, acts, now, "session replaced in the store: the leader key went with the old one", true)
			}
		}
		s.SessionOK = true
		if !ev.New && !ev.SentAt.After(s.FencedAt) {
			// Sent before this node fenced itself, answered after: it
			// proves nothing the fencing did not already give up. A late
			// answer of a woken etcd member's stale lessor, which renewed
			// nothing in the cluster, would otherwise let this node win
			// again on a bound past its lease's expiry (found by the
			// simulation, internal/sim/lockdelay.go). The next renewal
			// counts.
			break
		}
		if v := ev.SentAt.Add(ev.TTL); v.After(s.ValidUntil) || ev.New {
			s.ValidUntil = v
		}
		if s.Role == ha.RoleStarting {
			s = setRole(s, ha.RoleStandby, now, "connected to the store")
		}
	case SessionLost:
		s.SessionOK = false
		acts = append(acts, NewSession{})
	case LeaderSeen:
		if ev.Leader.None() && s.VacantSince.IsZero() {
			s.VacantSince = now
		}
		s.Leader, s.LeaderKnown = ev.Leader, true
		if s.Holding() && !cfg.activeActive() && (ev.Leader.Node != cfg.Node || ev.Leader.Epoch != s.Epoch) {
			s, acts = demote(cfg, s, acts, now, fmt.Sprintf("leader key lost in the store (now %s)", describeLeader(ev.Leader)), false)
		}
		if s.Role == ha.RoleStandby && !cfg.activeActive() && ev.Leader.Node == cfg.Node && ev.Leader.Epoch == s.Epoch && s.Epoch != 0 {
			// We gave this epoch up but the key is still ours (a resign
			// failed): give it back again, or nobody can take over.
			acts = append(acts, Resign{Epoch: s.Epoch})
		}
	case ViewLost:
		s.LeaderKnown = false
	case HealthChanged:
		s.Healthy, s.HealthReason = ev.Healthy, ev.Reason
	case CampaignResult:
		s.Acquiring = false
		if ev.Err != nil {
			if !errors.Is(ev.Err, ha.ErrTaken) && s.Leader.Node == cfg.Node && s.Leader.Epoch == s.Reclaimed && s.Leader.Epoch != s.Epoch {
				// The question about a key in our name got no answer (the
				// store was slow or cut off): ask again. Asked only once,
				// the key, bound to our live session, kept every other node
				// from taking over for as long as this agent ran (found by
				// internal/sim; see docs/simulation.md).
				s.Reclaimed = s.Leader.Epoch - 1
			}
			break
		}
		ok, why := s.Eligible(cfg, now)
		if ok && s.Leader.Epoch > ev.Epoch {
			// The watch has already shown a later leader, so our key is gone
			// (it expired before this answer was processed). Whether or not
			// the view is current (LeaderKnown): a watch that started over
			// since (ViewLost) may only have missed later changes still,
			// and epochs only grow.
			ok, why = false, "the store already moved on to "+describeLeader(s.Leader)
		}
		if !ok || s.Role != ha.RoleStandby {
			// Won, but no longer fit to act: hand the role straight back
			// (and do not take the key being handed back for a lost win).
			acts = append(acts, Resign{Epoch: ev.Epoch})
			s.Reclaimed = max(s.Reclaimed, ev.Epoch)
			s.Reason = "won the election but " + why
			break
		}
		s.Epoch = ev.Epoch
		s.Leader, s.LeaderKnown = ha.Leader{Node: cfg.Node, Epoch: ev.Epoch}, true
		s.Failovers++
		s.PromoteSeq++
		s = setRole(s, ha.RolePromoting, now, "won the election")
		acts = append(acts, Promote{Epoch: ev.Epoch, Seq: s.PromoteSeq})
	case PromoteResult:
		if s.Role != ha.RolePromoting || ev.Epoch != s.Epoch || ev.Seq != s.PromoteSeq {
			break // stale: we were demoted meanwhile, or it answers an earlier promotion
		}
		if ev.Err != nil {
			s.BackoffUntil = now.Add(cfg.PromoteBackoff)
			s, acts = demote(cfg, s, acts, now, "promotion failed: "+ev.Err.Error(), false)
			break
		}
		s = setRole(s, ha.RoleActive, now, fmt.Sprintf("promoted at epoch %d", s.Epoch))
	case DemoteResult:
		if s.Role == ha.RoleDemoting && ev.Epoch == s.Epoch {
			next := ha.RoleStandby
			if s.Stopping {
				next = ha.RoleStopped
			}
			s = setRole(s, next, now, s.Reason)
		}
	case FailsafeGranted:
		if cfg.Failsafe && s.Holding() {
			if t := ev.SentAt.Add(ev.Grant).Add(-cfg.FenceMargin); t.After(s.FailsafeUntil) {
				s.FailsafeUntil = t
			}
		}
	case FailsafeAsked:
		if ev.Until.After(s.PromisedUntil) {
			s.PromisedUntil, s.PromisedTo = ev.Until, ev.From
		}
	case IntentsSeen:
		s.Maintenance = ev.Maintenance
		if !cfg.activeActive() { // no role to hand over: every healthy node serves
			s.Switchover, s.SwitchoverUntil = ev.Switchover, ev.SwitchoverUntil
		}
	case Shutdown:
		s.Stopping = true
		if s.Holding() {
			s, acts = demote(cfg, s, acts, now, "agent shutting down", false)
		} else if s.Role != ha.RoleDemoting {
			s = setRole(s, ha.RoleStopped, now, "agent shutting down")
		}
	}

	if !s.LeaderKnown || !s.Leader.None() {
		s.VacantSince, s.GraceLapsed = time.Time{}, false
	}

	// Rules that hold whatever the event was.
	if s.Holding() {
		switch {
		case !s.SessionOK:
			s, acts = demote(cfg, s, acts, now, "session lost in the store", true)
		case !now.Before(s.servingUntil(cfg)):
			s, acts = demote(cfg, s, acts, now, "lease not renewed in time: fencing before it can expire", true)
		case !s.Healthy:
			s, acts = demote(cfg, s, acts, now, "service unhealthy: "+s.HealthReason, false)
		case s.Maintenance:
			s, acts = demote(cfg, s, acts, now, "maintenance: handing the role over", false)
		case s.switchoverPending(now) && s.Switchover.From == cfg.Node && s.Switchover.Epoch == s.Epoch:
			s, acts = demote(cfg, s, acts, now, "switchover to "+s.Switchover.To+": "+s.Switchover.Reason, false)
		}
	}
	if s.Role == ha.RoleActive && s.switchoverPending(now) && s.Switchover.To == cfg.Node {
		acts = append(acts, ClearSwitchover{ID: s.Switchover.ID})
		s.Switchover = ha.Switchover{}
	}
	ok, _ := s.Eligible(cfg, now)
	switch {
	case !ok || s.Role != ha.RoleStandby:
		s.EligibleSince = time.Time{}
	case s.EligibleSince.IsZero():
		s.EligibleSince = now
	}
	if s.Role == ha.RoleStandby && !cfg.activeActive() && !s.Acquiring && s.LeaderKnown &&
		s.Leader.Node == cfg.Node && s.Leader.Epoch != s.Epoch && s.Leader.Epoch > s.Reclaimed {
		// The key is in our name at an epoch we never took up. If it is
		// bound to our session, nobody else can take it while we live:
		// ask the store (once: epochs only grow), then act as on any win, or
		// hand it back if unfit. Without this the cluster stays without
		// an active for as long as this agent runs.
		s.Acquiring, s.Reclaimed = true, s.Leader.Epoch
		acts = append(acts, Campaign{Reclaim: s.Leader.Epoch})
	}
	switch {
	case s.Role != ha.RoleStandby || !ok:
	case cfg.activeActive():
		// Every eligible node serves; there is no key to take.
		s.Epoch = 0
		s.Failovers++
		s.PromoteSeq++
		s = setRole(s, ha.RolePromoting, now, "eligible (active-active)")
		acts = append(acts, Promote{Epoch: 0, Seq: s.PromoteSeq})
	case !s.Acquiring && s.LeaderKnown && s.Leader.None():
		s.Acquiring = true
		acts = append(acts, Campaign{})
	case s.wantsPreempt(cfg, now):
		s.PreemptAsked = now
		acts = append(acts, RequestSwitchover{Reason: fmt.Sprintf("preemption: %s has priority %d over %s's %d",
			cfg.Node, cfg.Priorities[cfg.Node], s.Leader.Node, cfg.Priorities[s.Leader.Node])})
	}
	if publishWorthy(before, s) {
		acts = append(acts, Publish{})
	}
	return s, acts
}

// demote leaves the active role: first stop acting, then give the key back.
func demote(cfg Config, s State, acts []Action, now time.Time, reason string, fenced bool) (State, []Action) {
	s = setRole(s, ha.RoleDemoting, now, reason)
	d := Demote{Epoch: s.Epoch, Reason: reason, Fenced: fenced}
	if fenced {
		d.Deadline = s.ValidUntil
		s.FencedAt = now
	}
	acts = append(acts, d)
	if !cfg.activeActive() { // active-active nodes hold no key
		acts = append(acts, Resign{Epoch: s.Epoch})
	}
	return s, acts
}

// couldPreempt: preemption is on, another node leads with a lower
// priority, and no switchover is held in the state.
func (s State) couldPreempt(cfg Config) bool {
	return cfg.Preempt && !s.Leader.None() && s.Leader.Node != cfg.Node && s.Switchover.ID == "" &&
		cfg.Priorities[cfg.Node] > cfg.Priorities[s.Leader.Node]
}

// wantsPreempt: a higher-priority standby that has been eligible for
// PreemptDelay asks for a planned switchover to itself (once per delay).
func (s State) wantsPreempt(cfg Config, now time.Time) bool {
	if !s.couldPreempt(cfg) || s.switchoverPending(now) {
		return false
	}
	if now.Sub(s.EligibleSince) < cfg.PreemptDelay {
		return false
	}
	return s.PreemptAsked.IsZero() || now.Sub(s.PreemptAsked) >= cfg.PreemptDelay
}

func setRole(s State, r ha.Role, now time.Time, reason string) State {
	if r != ha.RoleActive && r != ha.RolePromoting {
		s.FailsafeUntil = time.Time{}
	}
	s.Role, s.Since, s.Reason = r, now, reason
	return s
}

// publishWorthy: the step changed something the node's record is made
// of. LeaderKnown is part of it: a standby's record is eligible only with a
// view of the leader key (agent.RecordOf). Without it, a standby whose new
// session's (or restarted watch's) first snapshot showed the same leader as
// before said "view of the store is behind" until the next heartbeat, and
// a switchover to it was refused for up to HeartbeatInterval.
func publishWorthy(a, b State) bool {
	return a.Role != b.Role || a.Healthy != b.Healthy || a.HealthReason != b.HealthReason ||
		a.Epoch != b.Epoch || a.Leader != b.Leader || a.LeaderKnown != b.LeaderKnown ||
		a.BackoffUntil != b.BackoffUntil || a.SessionOK != b.SessionOK ||
		a.Maintenance != b.Maintenance || a.Switchover.ID != b.Switchover.ID
}

func describeLeader(l ha.Leader) string {
	if l.None() {
		return "vacant"
	}
	return fmt.Sprintf("%s at epoch %d", l.Node, l.Epoch)
}
