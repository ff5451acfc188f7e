package machine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestProperties drives the machine with random events from a sloppy driver
// (results delivered late, out of order, twice or never; snapshots that lie;
// clock jumps as after a pause; operators' intents that come and go) in every
// mode, and checks the invariants the safety argument and the operator rules
// rest on after every step. Seeds are fixed, so a failure reproduces.
func TestProperties(t *testing.T) {
	const seeds, steps = 600, 300
	seen := map[string]int{} // what the runs exercised, to catch a generator gone blind
	for seed := uint64(1); seed <= seeds; seed++ {
		if err := runRandom(seed, steps, seen); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	for _, want := range []string{
		"role active", "role promoting", "role demoting", "role standby", "role stopped",
		"serving", "Campaign", "Promote", "Demote fenced", "Demote unfenced", "Resign", "NewSession", "Publish",
		"stale win refused", "backoff",
		"mode active-active", "mode passive-backup", "serving active-active", "serving backup",
		"campaign as backup", "demoted for maintenance", "demoted for switchover",
		"RequestSwitchover", "ClearSwitchover", "standby resigns again",
		"preemption held back by a pending switchover", "reclaim",
	} {
		if seen[want] == 0 {
			t.Errorf("the random runs never reached %q", want)
		}
	}
}

type sim struct {
	r       *rand.Rand
	cfg     Config
	s       State
	now     time.Time
	epoch   ha.Epoch // last epoch the pretend store handed out
	pending []Event  // results the driver owes
	log     []string

	intents IntentsSeen // the intents the machine was last told of
	store   IntentsSeen // the intents in the pretend store
	ids     int         // switchover IDs handed out

	// The sim's own account of preemption, kept from the states it saw.
	eligibleSince time.Time // eligible standby at every step since then
	lastAsk       time.Time // last RequestSwitchover
}

// nodes are the cluster's members; the machine under test is n1.
var nodes = []string{"n1", "n2", "n3"}

// randomConfig picks a mode, priorities and preemption.
func (sm *sim) randomConfig() {
	switch sm.r.IntN(4) {
	case 0:
		// Empty means active-passive.
	case 1:
		sm.cfg.Mode = ha.ModeActivePassive
	case 2:
		sm.cfg.Mode = ha.ModeActiveActive
	default:
		sm.cfg.Mode = ha.ModePassiveBackup
		sm.cfg.Backup = sm.r.IntN(3) != 0
	}
	sm.cfg.Priorities = map[string]int{}
	for _, n := range nodes {
		sm.cfg.Priorities[n] = []int{50, 100, 200}[sm.r.IntN(3)]
	}
	if sm.r.IntN(2) == 0 {
		sm.cfg.Preempt = true
		// Config validation requires a positive delay.
		sm.cfg.PreemptDelay = time.Duration(1+sm.r.IntN(1500)) * time.Millisecond
	}
}

func runRandom(seed uint64, steps int, seen map[string]int) (err error) {
	sm := &sim{
		r:   rand.New(rand.NewPCG(seed, 0x4841)),
		now: t0,
	}
	sm.cfg = Config{
		Node:           "n1",
		FenceMargin:    time.Duration(sm.r.IntN(500)) * time.Millisecond,
		PromoteBackoff: time.Duration(sm.r.IntN(5000)) * time.Millisecond,
	}
	sm.randomConfig()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		if err != nil {
			err = fmt.Errorf("%w\n%s\nlast events, in testdata syntax:\n%s", err, formatConfig(sm.cfg), sm.tail(20))
		}
	}()
	seen["mode "+modeName(sm.cfg)]++
	for i := 0; i < steps; i++ {
		sm.advance()
		ev := sm.event()
		prev := sm.s
		next, acts := Step(sm.cfg, prev, ev, sm.now)
		again, acts2 := Step(sm.cfg, prev, ev, sm.now)
		sm.log = append(sm.log, fmt.Sprintf("at %s %s\n      -> %s %s", offset(sm.now), formatEvent(ev), next.Role, fmtActions(acts)))
		if !reflect.DeepEqual(next, again) || !reflect.DeepEqual(acts, acts2) {
			return errors.New("Step is not deterministic")
		}
		if err := checkStep(sm.cfg, prev, ev, sm.now, next, acts, seen); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if in, ok := ev.(IntentsSeen); ok {
			sm.intents = in
		}
		if err := sm.checkOps(prev, ev, next, acts, seen); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		sm.s = next
		sm.owe(acts)
	}
	return nil
}

func modeName(cfg Config) string {
	if cfg.Mode == "" {
		return string(ha.ModeActivePassive)
	}
	return string(cfg.Mode)
}

// formatConfig renders cfg as a testdata config command.
func formatConfig(cfg Config) string {
	out := fmt.Sprintf("config node=%s fence=%s backoff=%s", cfg.Node, cfg.FenceMargin, cfg.PromoteBackoff)
	if cfg.Mode != "" {
		out += " mode=" + string(cfg.Mode)
	}
	if cfg.Backup {
		out += " backup=true"
	}
	if len(cfg.Priorities) > 0 {
		var prio []string
		for n, p := range cfg.Priorities {
			prio = append(prio, fmt.Sprintf("%s:%d", n, p))
		}
		sort.Strings(prio)
		out += " prio=" + strings.Join(prio, ",")
	}
	if cfg.Preempt {
		out += " preempt=" + cfg.PreemptDelay.String()
	}
	return out
}

func (sm *sim) tail(n int) string {
	l := sm.log
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return "  " + strings.Join(l, "\n  ")
}

// advance moves the clock forward: mostly a little, sometimes not at all,
// sometimes exactly to or just before the deadline, rarely a long pause.
func (sm *sim) advance() {
	switch p := sm.r.IntN(100); {
	case p < 10:
	case p < 20:
		if d := sm.s.NextDeadline(sm.cfg); d.After(sm.now) {
			if sm.r.IntN(2) == 0 {
				d = d.Add(-1)
			}
			sm.now = d
		}
	case p < 97:
		sm.now = sm.now.Add(time.Duration(sm.r.IntN(300)) * time.Millisecond)
	default:
		sm.now = sm.now.Add(time.Duration(sm.r.IntN(60)) * time.Second)
	}
}

// owe records the results the actions will produce.
func (sm *sim) owe(acts []Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case Campaign:
			switch {
			case sm.r.IntN(3) == 0:
				sm.pending = append(sm.pending, CampaignResult{Err: ha.ErrTaken})
			case a.Reclaim != 0:
				// The key in our name was bound to our session after all.
				sm.pending = append(sm.pending, CampaignResult{Epoch: a.Reclaim})
			default:
				sm.epoch++
				sm.pending = append(sm.pending, CampaignResult{Epoch: sm.epoch})
			}
		case Promote:
			var err error
			if sm.r.IntN(5) == 0 {
				err = errors.New("on_promote failed")
			}
			sm.pending = append(sm.pending, PromoteResult{Epoch: a.Epoch, Seq: a.Seq, Err: err})
		case Demote:
			sm.pending = append(sm.pending, DemoteResult{Epoch: a.Epoch})
		case Resign:
			sm.pending = append(sm.pending, LeaderSeen{})
		case NewSession:
			sm.pending = append(sm.pending, SessionRenewed{SentAt: sm.now, TTL: sm.ttl(), New: true})
		case RequestSwitchover:
			// The store records it unless another one is pending.
			if sm.store.Switchover.ID == "" || !sm.now.Before(sm.store.SwitchoverUntil) {
				sm.ids++
				sm.store.Switchover = ha.Switchover{ID: fmt.Sprintf("sw%d", sm.ids), From: sm.s.Leader.Node,
					Epoch: sm.s.Leader.Epoch, To: sm.cfg.Node, Reason: a.Reason}
				sm.store.SwitchoverUntil = sm.now.Add(time.Duration(sm.r.IntN(5000)) * time.Millisecond)
				sm.pending = append(sm.pending, sm.store)
			}
		case ClearSwitchover:
			if sm.store.Switchover.ID == a.ID {
				sm.store.Switchover, sm.store.SwitchoverUntil = ha.Switchover{}, time.Time{}
				sm.pending = append(sm.pending, sm.store)
			}
		}
	}
}

func (sm *sim) ttl() time.Duration {
	return []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}[sm.r.IntN(4)]
}

func (sm *sim) epochNear() ha.Epoch { return ha.Epoch(sm.r.Int64N(int64(sm.epoch) + 3)) }

// intentsEvent changes the pretend store's intents at random: maintenance
// on or off, a switchover from and to any node (n1 at its own epoch or
// another), pending or already expired, or none.
func (sm *sim) intentsEvent() IntentsSeen {
	in := sm.store
	switch sm.r.IntN(4) {
	case 0:
		in.Maintenance = sm.r.IntN(3) == 0
	case 1:
		in.Switchover, in.SwitchoverUntil = ha.Switchover{}, time.Time{}
	default:
		sm.ids++
		from := []string{"", "n1", "n2", "n3"}[sm.r.IntN(4)]
		epoch := sm.epochNear()
		if from == sm.cfg.Node && sm.r.IntN(2) == 0 {
			epoch = sm.s.Epoch
		}
		if from == "" {
			epoch = 0
		}
		in.Switchover = ha.Switchover{
			ID:      fmt.Sprintf("sw%d", sm.ids),
			From:    from,
			Epoch:   epoch,
			To:      []string{"n1", "n1", "n2", "n3"}[sm.r.IntN(4)],
			Promote: sm.r.IntN(2) == 0,
			Reason:  []string{"", "requested by an operator", `say "hi"`}[sm.r.IntN(3)],
		}
		if in.Switchover.From == in.Switchover.To { // the API refuses these
			in.Switchover.From, in.Switchover.Epoch = "", 0
		}
		in.SwitchoverUntil = sm.now.Add(time.Duration(sm.r.IntN(6000)-1000) * time.Millisecond)
	}
	sm.store = in
	return in
}

func (sm *sim) event() Event {
	if sm.r.IntN(100) < 8 {
		return sm.intentsEvent()
	}
	if len(sm.pending) > 0 && sm.r.IntN(100) < 45 {
		i := sm.r.IntN(len(sm.pending))
		if sm.r.IntN(4) != 0 { // mostly in order
			i = 0
		}
		ev := sm.pending[i]
		if sm.r.IntN(10) != 0 { // sometimes delivered twice
			sm.pending = append(sm.pending[:i], sm.pending[i+1:]...)
		}
		return ev
	}
	if len(sm.pending) > 0 && sm.r.IntN(50) == 0 { // the driver forgets
		sm.pending = sm.pending[1:]
	}
	switch p := sm.r.IntN(100); {
	case p == 24: // the watch starts over (a draw that was a Tick: the seeds explore as before)
		return ViewLost{}
	case p < 25:
		return Tick{}
	case p < 50:
		sent := sm.now.Add(-time.Duration(sm.r.IntN(500)) * time.Millisecond)
		return SessionRenewed{SentAt: sent, TTL: sm.ttl(), New: sm.r.IntN(15) == 0}
	case p < 53:
		return SessionLost{Err: ha.ErrSessionLost}
	case p < 68:
		switch sm.r.IntN(4) {
		case 0:
			return LeaderSeen{}
		case 1:
			return LeaderSeen{Leader: ha.Leader{Node: sm.cfg.Node, Epoch: sm.s.Epoch}}
		case 2:
			return LeaderSeen{Leader: ha.Leader{Node: sm.cfg.Node, Epoch: sm.epochNear()}}
		default:
			// Another node leads; with preemption on, often one that n1
			// may preempt, and for long enough to.
			if sm.cfg.Preempt && !sm.s.Leader.None() && sm.s.Leader.Node != sm.cfg.Node && sm.r.IntN(2) == 0 {
				return LeaderSeen{Leader: sm.s.Leader}
			}
			sm.epoch++
			return LeaderSeen{Leader: ha.Leader{Node: nodes[1+sm.r.IntN(2)], Epoch: sm.epoch}}
		}
	case p < 83:
		reasons := []string{"all checks pass", "disk full", "http :8080/health: 503"}
		return HealthChanged{Healthy: sm.r.IntN(3) != 0, Reason: reasons[sm.r.IntN(len(reasons))]}
	case p < 88 && sm.cfg.activeActive():
		// No campaign, so no campaign result, in active-active mode.
		return Tick{}
	case p < 88:
		switch sm.r.IntN(3) {
		case 0:
			return CampaignResult{Epoch: sm.epochNear()}
		case 1:
			return CampaignResult{Err: ha.ErrTaken}
		default:
			return CampaignResult{Err: errors.New("context deadline exceeded")}
		}
	case p < 93:
		var err error
		if sm.r.IntN(2) == 0 {
			err = errors.New("hook failed")
		}
		return PromoteResult{Epoch: sm.epochNear(), Seq: uint64(sm.r.IntN(4)), Err: err}
	case p < 99:
		return DemoteResult{Epoch: sm.epochNear()}
	default:
		return Shutdown{}
	}
}

// legal lists the role changes one step may make.
var legal = map[[2]ha.Role]bool{
	{ha.RoleStarting, ha.RoleStandby}:   true,
	{ha.RoleStarting, ha.RoleStopped}:   true,
	{ha.RoleStandby, ha.RolePromoting}:  true,
	{ha.RoleStandby, ha.RoleStopped}:    true,
	{ha.RolePromoting, ha.RoleActive}:   true,
	{ha.RolePromoting, ha.RoleDemoting}: true, // also via active in one step
	{ha.RoleActive, ha.RoleDemoting}:    true,
	{ha.RoleDemoting, ha.RoleStandby}:   true,
	{ha.RoleDemoting, ha.RoleStopped}:   true,
}

func isViewLost(ev Event) bool { _, ok := ev.(ViewLost); return ok }

func checkStep(cfg Config, prev State, ev Event, now time.Time, s State, acts []Action, seen map[string]int) error {
	if prev.Role == "" {
		prev.Role, prev.Since, prev.Reason = ha.RoleStarting, now, "agent started"
	}
	fence := s.ValidUntil.Add(-cfg.FenceMargin)
	self := ha.Leader{Node: cfg.Node, Epoch: s.Epoch}
	seen["role "+string(s.Role)]++

	// Serving, now and at later instants with no further event (a pause).
	for _, probe := range []time.Time{now, now.Add(time.Millisecond), fence.Add(-1), fence, now.Add(time.Minute)} {
		if probe.Before(now) || !s.Serving(cfg, probe) {
			continue
		}
		seen["serving"]++
		switch {
		case s.Role != ha.RoleActive:
			return fmt.Errorf("serving at %s in role %s", offset(probe), s.Role)
		case !probe.Before(fence):
			return fmt.Errorf("serving at %s, at or past the fence %s", offset(probe), offset(fence))
		case !s.Healthy:
			return fmt.Errorf("serving at %s while unhealthy", offset(probe))
		}
	}

	// A holder is fit to hold, and believes the store says so.
	if s.Holding() {
		switch {
		case !s.SessionOK || !s.Healthy || s.Stopping:
			return fmt.Errorf("%s with session=%t healthy=%t stopping=%t", s.Role, s.SessionOK, s.Healthy, s.Stopping)
		case !now.Before(fence):
			return fmt.Errorf("%s at %s, at or past the fence %s", s.Role, offset(now), offset(fence))
		case cfg.activeActive() && s.Epoch != 0:
			return fmt.Errorf("%s at epoch %d in active-active mode", s.Role, s.Epoch)
		case !cfg.activeActive() && s.Leader != self:
			return fmt.Errorf("%s at epoch %d but the last leader seen is %+v (known=%t)", s.Role, s.Epoch, s.Leader, s.LeaderKnown)
		case !cfg.activeActive() && !s.LeaderKnown && !isViewLost(ev) && !(prev.Holding() && !prev.LeaderKnown):
			// Unknown only since its watch started over (ViewLost), until
			// the next snapshot.
			return fmt.Errorf("%s at epoch %d with no view of the store, and its watch did not start over", s.Role, s.Epoch)
		}
	}

	// An eligible active-active standby promotes in the step that made it
	// standby, so it may pass through standby within one step.
	viaStandby := cfg.activeActive() && legal[[2]ha.Role{prev.Role, ha.RoleStandby}] && s.Role == ha.RolePromoting
	if prev.Role != s.Role && !legal[[2]ha.Role{prev.Role, s.Role}] && !viaStandby {
		return fmt.Errorf("role %s -> %s", prev.Role, s.Role)
	}
	if prev.Role == ha.RoleStopped && s.Role != ha.RoleStopped {
		return fmt.Errorf("left the stopped role for %s", s.Role)
	}

	// The epoch changes only on a won campaign, to the epoch won.
	cr, won := ev.(CampaignResult)
	won = won && cr.Err == nil
	if s.Epoch != prev.Epoch && (!won || s.Epoch != cr.Epoch) {
		return fmt.Errorf("epoch %d -> %d on %T%+v", prev.Epoch, s.Epoch, ev, ev)
	}
	// A won key is either promoted on or handed straight back.
	if won && !hasAction(acts, Promote{Epoch: cr.Epoch}) {
		if len(acts) == 0 || acts[0] != (Resign{Epoch: cr.Epoch}) {
			return fmt.Errorf("won epoch %d, stayed %s without resigning it: %v", cr.Epoch, s.Role, fmtActions(acts))
		}
		if prev.LeaderKnown && prev.Leader.Epoch > cr.Epoch {
			seen["stale win refused"]++
		}
	}
	if won && prev.LeaderKnown && prev.Leader.Epoch > cr.Epoch && hasAction(acts, Promote{Epoch: cr.Epoch}) {
		return fmt.Errorf("promoted at epoch %d though the store showed %+v", cr.Epoch, prev.Leader)
	}
	if s.ValidUntil.Before(prev.ValidUntil) {
		if r, ok := ev.(SessionRenewed); !ok || !r.New {
			return fmt.Errorf("ValidUntil moved back from %s to %s on %T", offset(prev.ValidUntil), offset(s.ValidUntil), ev)
		}
	}
	if !s.BackoffUntil.IsZero() {
		seen["backoff"]++
	}

	demoted := false
	for i, a := range acts {
		seen[strings.Fields(formatAction(a))[0]]++
		switch a := a.(type) {
		case Campaign:
			ok, why := s.Eligible(cfg, now)
			switch {
			case s.Holding():
				return fmt.Errorf("Campaign while %s", s.Role)
			case s.Role != ha.RoleStandby:
				return fmt.Errorf("Campaign while %s", s.Role)
			case prev.Acquiring && !isCampaignResult(ev):
				return errors.New("Campaign while a campaign is in flight")
			case a.Reclaim != 0 && (s.Leader != ha.Leader{Node: cfg.Node, Epoch: a.Reclaim} || !s.LeaderKnown):
				return fmt.Errorf("reclaim of epoch %d while the last leader seen is %+v", a.Reclaim, s.Leader)
			case a.Reclaim != 0 && a.Reclaim <= prev.Reclaimed && !unanswered(ev):
				// Asked again only when the last question got no answer.
				return fmt.Errorf("reclaim of epoch %d asked twice", a.Reclaim)
			case a.Reclaim != 0:
				// Asks whether a key in our name is ours: allowed unfit
				// too (a win is handed straight back).
				seen["reclaim"]++
			case !ok:
				return fmt.Errorf("Campaign while not eligible: %s", why)
			case !s.Acquiring:
				return errors.New("Campaign without Acquiring")
			}
		case Promote:
			if a.Epoch != s.Epoch || s.Role != ha.RolePromoting {
				return fmt.Errorf("Promote epoch %d while %s at epoch %d", a.Epoch, s.Role, s.Epoch)
			}
		case Demote:
			if demoted {
				return errors.New("two Demote actions in one step")
			}
			demoted = true
			if a.Fenced {
				seen["Demote fenced"]++
				if r, ok := ev.(SessionRenewed); s.SessionOK && now.Before(fence) && !(ok && (r.New || !now.Before(prev.ValidUntil.Add(-cfg.FenceMargin)))) {
					return fmt.Errorf("fenced Demote at %s with the fence at %s", offset(now), offset(fence))
				}
			} else {
				seen["Demote unfenced"]++
			}
			if a.Epoch != s.Epoch || s.Role != ha.RoleDemoting {
				return fmt.Errorf("Demote epoch %d while %s at epoch %d", a.Epoch, s.Role, s.Epoch)
			}
			// Active-active nodes hold no key (no Resign at all is checked
			// in checkOps).
			if !cfg.activeActive() && (i+1 >= len(acts) || acts[i+1] != (Resign{Epoch: a.Epoch})) {
				return fmt.Errorf("Demote epoch %d not followed by its Resign: %v", a.Epoch, fmtActions(acts))
			}
		}
	}
	// Leaving the key always goes through a demotion, and only a holder demotes.
	if prev.Holding() && !s.Holding() && !demoted {
		return fmt.Errorf("%s -> %s without a Demote", prev.Role, s.Role)
	}
	if demoted && !prev.Holding() {
		return fmt.Errorf("Demote from %s", prev.Role)
	}

	published := hasAction(acts, Publish{})
	changed := prev.Role != s.Role || prev.Healthy != s.Healthy || prev.Epoch != s.Epoch || prev.Leader != s.Leader
	if changed && !published {
		return fmt.Errorf("no Publish after %s/%t -> %s/%t", prev.Role, prev.Healthy, s.Role, s.Healthy)
	}
	if prev == s && published {
		return fmt.Errorf("Publish with nothing changed on %T", ev)
	}

	// A tick consumes the deadlines it was sent for.
	if _, ok := ev.(Tick); ok {
		if d := s.NextDeadline(cfg); !d.IsZero() && !d.After(now) {
			return fmt.Errorf("after a tick at %s, NextDeadline is %s", offset(now), offset(d))
		}
	}
	return nil
}

// checkOps checks the operator rules after a step: maintenance, switchover,
// passive-backup, active-active and preemption. It judges by the intents
// the driver delivered and by its own account of eligibility, not by what
// the machine made of them.
func (sm *sim) checkOps(prev State, ev Event, s State, acts []Action, seen map[string]int) error {
	cfg, now, in := sm.cfg, sm.now, sm.intents
	sw := in.Switchover
	pending := sw.ID != "" && now.Before(in.SwitchoverUntil)
	backup := cfg.Mode == ha.ModePassiveBackup && cfg.Backup

	// Serving implies active, healthy, and before the fence, in every mode
	// (checkStep probes later instants as well).
	if s.Serving(cfg, now) {
		seen["serving "+modeName(cfg)]++
		if backup {
			seen["serving backup"]++
		}
		if s.Role != ha.RoleActive || !s.Healthy || !now.Before(s.ValidUntil.Add(-cfg.FenceMargin)) {
			return fmt.Errorf("serving in role %s, healthy=%t, fence %s", s.Role, s.Healthy, offset(s.ValidUntil.Add(-cfg.FenceMargin)))
		}
	}

	// A holder is never in maintenance, nor the source of a pending
	// switchover at its epoch: either one demotes it in the same step.
	if s.Holding() {
		switch {
		case in.Maintenance:
			return fmt.Errorf("%s in maintenance", s.Role)
		case pending && sw.From == cfg.Node && sw.Epoch == s.Epoch && !cfg.activeActive():
			// (Active-active has no role to hand over: intents are ignored.)
			return fmt.Errorf("%s at epoch %d though switchover %s from it at that epoch is pending", s.Role, s.Epoch, sw.ID)
		}
	}
	// ... and nothing else demotes a holder: not a switchover naming another
	// epoch or another node, nor, in active-active mode, the leader key.
	if prev.Holding() && s.Role == ha.RoleDemoting {
		fence := s.ValidUntil.Add(-cfg.FenceMargin)
		l, leaderEv := ev.(LeaderSeen)
		pr, promoteEv := ev.(PromoteResult)
		r, renewEv := ev.(SessionRenewed)
		switch {
		case in.Maintenance:
			seen["demoted for maintenance"]++
		case pending && sw.From == cfg.Node && sw.Epoch == prev.Epoch:
			seen["demoted for switchover"]++
		case !s.SessionOK || !now.Before(fence) || !s.Healthy || s.Stopping:
		case leaderEv && !cfg.activeActive() && l.Leader != (ha.Leader{Node: cfg.Node, Epoch: prev.Epoch}):
		case promoteEv && pr.Err != nil && pr.Epoch == prev.Epoch && prev.Role == ha.RolePromoting:
		case renewEv && r.New:
		case renewEv && !now.Before(prev.servingUntil(cfg)): // a late answer does not revive a holder past its fence
		default:
			return fmt.Errorf("%s demoted for no reason on %s: %q", prev.Role, formatEvent(ev), s.Reason)
		}
	}

	for _, a := range acts {
		switch a := a.(type) {
		case Campaign:
			switch {
			case a.Reclaim != 0 && cfg.activeActive():
				return errors.New("reclaim in active-active mode")
			case a.Reclaim != 0:
			case cfg.activeActive():
				return errors.New("Campaign in active-active mode")
			case in.Maintenance:
				return errors.New("Campaign in maintenance")
			case pending && sw.To != cfg.Node && !(s.LeaderKnown && s.Leader.None() && !s.VacantSince.IsZero() && !now.Before(s.VacantSince.Add(SwitchoverGrace))):
				// Allowed only once the target has had the vacant key for the grace.
				return fmt.Errorf("Campaign while switchover %s to %s is pending", sw.ID, sw.To)
			case backup && !(pending && sw.To == cfg.Node):
				return errors.New("Campaign as a backup without a pending switchover to it")
			}
			if backup {
				seen["campaign as backup"]++
			}
		case Promote:
			switch {
			case cfg.activeActive() && a.Epoch != 0:
				return fmt.Errorf("Promote epoch %d in active-active mode", a.Epoch)
			case backup && !(pending && sw.To == cfg.Node):
				return errors.New("Promote as a backup without a pending switchover to it")
			}
		case Resign:
			if cfg.activeActive() {
				return errors.New("Resign in active-active mode")
			}
			if prev.Role == ha.RoleStandby && s.Role == ha.RoleStandby && !isCampaignResult(ev) {
				seen["standby resigns again"]++
				if l, ok := ev.(LeaderSeen); !ok || l.Leader != (ha.Leader{Node: cfg.Node, Epoch: a.Epoch}) || a.Epoch != s.Epoch {
					return fmt.Errorf("standby Resign epoch %d on %s", a.Epoch, formatEvent(ev))
				}
			}
		case ClearSwitchover:
			if s.Role != ha.RoleActive || !pending || sw.To != cfg.Node || a.ID != sw.ID {
				return fmt.Errorf("ClearSwitchover %s while %s, intents %s", a.ID, s.Role, formatEvent(in))
			}
		case RequestSwitchover:
			leader := s.Leader
			switch {
			case !cfg.Preempt:
				return errors.New("RequestSwitchover without preemption configured")
			case s.Role != ha.RoleStandby:
				return fmt.Errorf("RequestSwitchover while %s", s.Role)
			case leader.None() || leader.Node == cfg.Node:
				return fmt.Errorf("RequestSwitchover with leader %+v", leader)
			case cfg.Priorities[cfg.Node] <= cfg.Priorities[leader.Node]:
				return fmt.Errorf("RequestSwitchover at priority %d over %s's %d", cfg.Priorities[cfg.Node], leader.Node, cfg.Priorities[leader.Node])
			case pending:
				return fmt.Errorf("RequestSwitchover while switchover %s is pending", sw.ID)
			case sm.eligibleSince.IsZero() || now.Sub(sm.eligibleSince) < cfg.PreemptDelay:
				return fmt.Errorf("RequestSwitchover eligible since %s only, delay %s", offset(sm.eligibleSince), cfg.PreemptDelay)
			case !sm.lastAsk.IsZero() && now.Sub(sm.lastAsk) < cfg.PreemptDelay:
				return fmt.Errorf("RequestSwitchover again %s after the last one, delay %s", now.Sub(sm.lastAsk), cfg.PreemptDelay)
			}
			sm.lastAsk = now
		}
	}

	ok, _ := s.Eligible(cfg, now)
	leader := s.Leader
	if ok && s.Role == ha.RoleStandby && cfg.Preempt && pending && !leader.None() && leader.Node != cfg.Node &&
		cfg.Priorities[cfg.Node] > cfg.Priorities[leader.Node] &&
		!sm.eligibleSince.IsZero() && now.Sub(sm.eligibleSince) >= cfg.PreemptDelay &&
		(sm.lastAsk.IsZero() || now.Sub(sm.lastAsk) >= cfg.PreemptDelay) {
		seen["preemption held back by a pending switchover"]++
	}
	if ok && s.Role == ha.RoleStandby {
		if sm.eligibleSince.IsZero() {
			sm.eligibleSince = now
		}
	} else {
		sm.eligibleSince = time.Time{}
	}
	return nil
}

func hasAction(acts []Action, want Action) bool {
	for _, a := range acts {
		// A Promote matches on its epoch; its sequence number is the machine's.
		if p, ok := a.(Promote); ok {
			if w, ok := want.(Promote); ok && p.Epoch == w.Epoch {
				return true
			}
			continue
		}
		if a == want {
			return true
		}
	}
	return false
}

func isCampaignResult(ev Event) bool { _, ok := ev.(CampaignResult); return ok }

func fmtActions(acts []Action) string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = formatAction(a)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// The log of a failing run is printed in script syntax, so it must parse back.
func TestEventSyntaxRoundTrip(t *testing.T) {
	sm := &sim{r: rand.New(rand.NewPCG(1, 2)), cfg: Config{Node: "n1"}, now: t0.Add(time.Hour)}
	for i := 0; i < 2000; i++ {
		ev := sm.event()
		text := formatEvent(ev)
		args, err := splitArgs(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		back, err := parseEvent(args)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		if again := formatEvent(back); again != text {
			t.Fatalf("%s parsed back as %s", text, again)
		}
	}
}

// unanswered: a campaign whose outcome is unknown (neither won nor taken).
func unanswered(ev Event) bool {
	r, ok := ev.(CampaignResult)
	return ok && r.Err != nil && !errors.Is(r.Err, ha.ErrTaken)
}
