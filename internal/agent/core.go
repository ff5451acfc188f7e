package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// The agent's core: what its goroutines decide, apart from how they wait
// and do I/O. The agent carries a core's answers out with goroutines,
// channels and the real clock; the simulation (internal/sim) carries the
// same answers out as events of its seeded scheduler on a fake clock, so it
// checks this code and not a copy of it.

// Stepped is one event applied to the machine by the loop: the state before
// and after, and what the drivers must do about it, in order.
type Stepped struct {
	Old, New machine.State
	// Demoted: the step demoted; promotions numbered up to New.PromoteSeq
	// must never start (a Promote that waited behind store calls would act
	// after the demotion).
	Demoted bool
	Effects []Effect
}

// EffectKind says which driver an Effect is for.
type EffectKind int

const (
	// DoPublish: write this node's status record (the publisher).
	DoPublish EffectKind = iota
	// DoNewSession: the renewer may create a new session.
	DoNewSession
	// DoCancelPromote: cancel the promotion at Epoch, if it runs.
	DoCancelPromote
	// DoFence: a demotion for the fencing lane (fence.go).
	DoFence
	// DoWork: an action for the worker, in order.
	DoWork
)

// Effect is one thing a step asks of the drivers.
type Effect struct {
	Kind  EffectKind
	Epoch ha.Epoch       // DoCancelPromote
	Job   FenceJob       // DoFence
	Act   machine.Action // DoWork
}

// Step applies ev to old at now (the node's clock) and plans the actions.
func Step(mcfg machine.Config, old machine.State, ev machine.Event, now time.Time) Stepped {
	st, acts := machine.Step(mcfg, old, ev, now)
	s := Stepped{Old: old, New: st}
	for _, act := range acts {
		if _, ok := act.(machine.Demote); ok {
			s.Demoted = true // the promotion being demoted is the latest
		}
	}
	s.Effects = Plan(acts)
	return s
}

// Plan hands the actions of one step to the drivers: demotions to the
// fencing lane, each with the Resign of its epoch behind it (the key must
// not be released while this node still acts), the rest to the worker in
// the machine's order.
func Plan(acts []machine.Action) []Effect {
	var effs []Effect
	var job *FenceJob
	for _, act := range acts {
		switch act := act.(type) {
		case machine.Publish:
			effs = append(effs, Effect{Kind: DoPublish})
		case machine.NewSession:
			effs = append(effs, Effect{Kind: DoNewSession})
		case machine.Demote:
			effs = append(effs, Effect{Kind: DoCancelPromote, Epoch: act.Epoch})
			if job != nil {
				effs = append(effs, Effect{Kind: DoFence, Job: *job})
			}
			job = &FenceJob{Demote: act}
		case machine.Resign:
			if job != nil && job.Demote.Epoch == act.Epoch {
				job.Then = append(job.Then, act) // not before the demotion is over
				continue
			}
			effs = append(effs, Effect{Kind: DoWork, Act: act})
		default:
			effs = append(effs, Effect{Kind: DoWork, Act: act})
		}
	}
	if job != nil {
		effs = append(effs, Effect{Kind: DoFence, Job: *job})
	}
	return effs
}

// SeenEvents is what the watcher feeds the loop for one snapshot at now
// (node's clock): intents first, then the leader. A snapshot may carry both
// a new switchover and the vacant key it causes, and a standby that saw the
// vacancy first would campaign against the switchover's target.
//
// A snapshot marked Behind (the watch is starting over) is only that: the
// view is lost until the next current snapshot (machine.ViewLost), and the
// data it repeats is not news.
func SeenEvents(node string, s ha.Snapshot, now time.Time) []machine.Event {
	if s.Behind {
		return []machine.Event{machine.ViewLost{}}
	}
	return []machine.Event{IntentsFor(node, s, now), machine.LeaderSeen{Leader: s.Leader}}
}

// WinSeen reports whether the watched leader l reflects node's win at
// epoch: the key held by node at epoch, or already at a later epoch.
func WinSeen(l ha.Leader, node string, epoch ha.Epoch) bool {
	return l.Epoch > epoch || l.Node == node && l.Epoch == epoch
}

// WinUnconfirmed is the campaign's error when the watch did not show its
// win within lease_ttl (the worker has handed the key back).
func WinUnconfirmed(epoch ha.Epoch) error {
	return fmt.Errorf("the store's watch did not confirm the win at epoch %d", epoch)
}

// CampaignPace is how long the worker waits before reporting a campaign
// that failed other than by a taken key: the store is failing, and the
// machine asks again at once.
func CampaignPace(err error) time.Duration {
	if err != nil && !errors.Is(err, ha.ErrTaken) {
		return 100 * time.Millisecond
	}
	return 0
}

// PromoteRefused is the result of a Promote that must not start because a
// demotion came while it waited behind store calls (promotions up to
// demotedSeq were demoted): starting the service or on_promote now would
// act after the demotion. Nil: start it.
func PromoteRefused(act machine.Promote, demotedSeq uint64) error {
	if act.Seq <= demotedSeq {
		return errors.New("demoted before the promotion started")
	}
	return nil
}

// SelfSwitchover is the intent a RequestSwitchover action records: from the
// leader the node's watch shows, at that leader's epoch, to node.
func SelfSwitchover(id string, leader ha.Leader, node, reason string, now time.Time) ha.Switchover {
	return ha.Switchover{ID: id, From: leader.Node, Epoch: leader.Epoch, To: node,
		Reason: reason, Requested: now, Deadline: now.Add(switchoverWindow)}
}

// A Resign action tries up to ResignTries times, FirstResignBackoff apart
// at first, then doubling up to half a second (NextResignBackoff).
const (
	ResignTries        = 10
	FirstResignBackoff = 20 * time.Millisecond
)

// ResignDone reports whether a resign that ended with err needs no retry:
// it went through, or the key is someone else's now, or expired.
func ResignDone(err error) bool { return err == nil || errors.Is(err, ha.ErrNotLeader) }

// NextResignBackoff is the wait after backoff before the next try.
func NextResignBackoff(backoff time.Duration) time.Duration {
	return min(2*backoff, 500*time.Millisecond)
}

// RecordOf is the part of a node's status record that its machine decides:
// role (backup and maintenance shown as such), health, eligibility and why,
// epoch while it holds the role or demotes, failovers seen, at now.
//
// Eligible is what the record promises: that this node takes the key once
// it is vacant. A standby campaigns only on a vacancy its watch showed since
// its session began and since the watch last started over (machine.Step:
// LeaderKnown), so until then it is not eligible, whatever its health. A node cut off from its etcd member's
// quorum came back with a new session while its member still could not
// serve the watch's first read; its record said "healthy and ready to take
// over", the active accepted a switchover to it and stepped down, and the
// node never campaigned: another took the role back after the grace and the
// switchover answered 409 (TestChaos). With this, the active refuses such
// a switchover before it steps down, with the reason (operator.PickTarget),
// as Patroni refuses a candidate that is not ready. Active-active nodes
// take no key and need no such view.
func RecordOf(mcfg machine.Config, st machine.State, now time.Time) ha.NodeStatus {
	eligible, why := recordEligible(mcfg, st, now)
	if st.Role != ha.RoleStandby {
		eligible, why = false, "role is "+string(st.Role)
	}
	if st.Holding() {
		why = "holds the active role"
	}
	role := st.Role
	if role == ha.RoleStandby {
		switch {
		case st.Maintenance:
			role = ha.RoleMaintenance
		case mcfg.Mode == ha.ModePassiveBackup && mcfg.Backup:
			role = ha.RoleBackup
		}
	}
	rec := ha.NodeStatus{
		Name:      mcfg.Node,
		Role:      role,
		Healthy:   st.Healthy,
		Health:    st.HealthReason,
		Eligible:  eligible,
		Why:       why,
		Reason:    st.Reason,
		Heartbeat: now,
		Failovers: st.Failovers,
	}
	if st.Holding() || st.Role == ha.RoleDemoting {
		rec.Epoch = st.Epoch
	}
	if !eligible && st.Role == ha.RoleStandby && st.Switchover.ID != "" {
		// Eligible but for the intent: the record names it, so that a
		// view in which it is gone can tell the record lags.
		// Judged by the record's own rule (the view too): a standby that
		// saw the intent, lost its session and has a new one with no
		// snapshot yet would otherwise name the intent, and once it is
		// gone from the asker's view count as available (operator.Available)
		// while it would not campaign: the switchover to it fails as
		// TestChaos's 409 did.
		free := st
		free.Switchover = ha.Switchover{}
		if ok, _ := recordEligible(mcfg, free, now); ok {
			rec.HeldBy = st.Switchover.ID
		}
	}
	return rec
}

// recordEligible is the machine's eligibility, and a view of the leader
// key since the session began unless active-active (RecordOf).
func recordEligible(mcfg machine.Config, st machine.State, now time.Time) (bool, string) {
	eligible, why := st.Eligible(mcfg, now)
	if eligible && !st.LeaderKnown && mcfg.Mode != ha.ModeActiveActive {
		return false, NoViewYet
	}
	return eligible, why
}

// NoViewYet is why a healthy standby's record says it is not eligible
// while its watch has not shown the leader key since its session began or
// since the watch started over (ha.Snapshot.Behind); the chaos test retries
// a switchover refused with its words "view of the store is behind": the
// refusal is transient.
const NoViewYet = "has not seen the leader key in the store since its session began or its watch of the store started over (its view of the store is behind); it cannot take over until it does"

// Deadlines are an agent's store deadlines under timings t, for drivers
// outside this package (the simulation): one coordination call, the
// creation of a session, one store write of an operator action.
func Deadlines(t config.Timing) (call, session, op time.Duration) {
	return callTimeout(t), sessionTimeout(t), opTimeout(t)
}

// HealthInputs are what a node's health is made of, as its drivers see it.
type HealthInputs struct {
	Role          ha.Role
	VIPDown       string // why the VIP cannot reach its clients from here; "" when it can (or there is none)
	Service       bool   // the agent supervises the service
	Cold          bool   // ... as a cold standby (service.standby: cold)
	Running       bool   // the service's process runs
	StoppedBy     string // the operator who stopped the service; "" if none
	RecentFailure time.Duration
	Checks        check.Result // the health checks' verdict
}

// HealthOf combines the checks with the state of the process: the health
// the loop feeds the machine (HealthChanged).
func HealthOf(h HealthInputs) (bool, string) {
	activeOrPromoting := h.Role == ha.RoleActive || h.Role == ha.RolePromoting
	switch {
	case h.VIPDown != "":
		// The VIP cannot reach its clients from here (vip.go).
		return false, h.VIPDown
	case h.Cold && !activeOrPromoting && h.RecentFailure > 0:
		// A cold standby has no running service to check, so the node whose
		// service just failed would look healthy and win straight back.
		return false, fmt.Sprintf("the service failed here while active; eligible again in %s", h.RecentFailure.Round(time.Second))
	case h.Cold && !activeOrPromoting:
		return true, "cold standby: the service starts on promotion"
	case h.Cold && h.Role == ha.RolePromoting:
		return true, "starting the service"
	case h.StoppedBy != "":
		return false, "service stopped by " + h.StoppedBy + " (haven service start to bring it back)"
	case h.Service && !h.Running:
		return false, "service process not running"
	}
	return h.Checks.Healthy, h.Checks.Reason
}

// HeartbeatInterval is how often the publisher writes this node's record
// even when nothing changed. Besides saying the agent is alive, each write
// changes the store, so every watcher gets a fresh snapshot: a machine
// that forgot the leader with a new session learns it again within one.
const HeartbeatInterval = 2 * time.Second
