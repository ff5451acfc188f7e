package machine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestProperties drives the machine with random events from a sloppy driver
// (results delivered late, out of order, twice or never; snapshots that lie;
// clock jumps as after a pause) and checks the invariants the safety argument
// rests on after every step. Seeds are fixed, so a failure reproduces.
func TestProperties(t *testing.T) {
	const seeds, steps = 200, 300
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
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		if err != nil {
			err = fmt.Errorf("%w\nconfig node=%s fence=%s backoff=%s\nlast events, in testdata syntax:\n%s",
				err, sm.cfg.Node, sm.cfg.FenceMargin, sm.cfg.PromoteBackoff, sm.tail(20))
		}
	}()
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
		sm.s = next
		sm.owe(acts)
	}
	return nil
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
			if sm.r.IntN(3) == 0 {
				sm.pending = append(sm.pending, CampaignResult{Err: ha.ErrTaken})
			} else {
				sm.epoch++
				sm.pending = append(sm.pending, CampaignResult{Epoch: sm.epoch})
			}
		case Promote:
			var err error
			if sm.r.IntN(5) == 0 {
				err = errors.New("on_promote failed")
			}
			sm.pending = append(sm.pending, PromoteResult{Epoch: a.Epoch, Err: err})
		case Demote:
			sm.pending = append(sm.pending, DemoteResult{Epoch: a.Epoch})
		case Resign:
			sm.pending = append(sm.pending, LeaderSeen{})
		case NewSession:
			sm.pending = append(sm.pending, SessionRenewed{SentAt: sm.now, TTL: sm.ttl(), New: true})
		}
	}
}

func (sm *sim) ttl() time.Duration {
	return []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second}[sm.r.IntN(4)]
}

func (sm *sim) epochNear() ha.Epoch { return ha.Epoch(sm.r.Int64N(int64(sm.epoch) + 3)) }

func (sm *sim) event() Event {
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
			sm.epoch++
			return LeaderSeen{Leader: ha.Leader{Node: "n2", Epoch: sm.epoch}}
		}
	case p < 83:
		reasons := []string{"all checks pass", "disk full", "http :8080/health: 503"}
		return HealthChanged{Healthy: sm.r.IntN(3) != 0, Reason: reasons[sm.r.IntN(len(reasons))]}
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
		return PromoteResult{Epoch: sm.epochNear(), Err: err}
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
		case s.Leader != self || !s.LeaderKnown:
			return fmt.Errorf("%s at epoch %d but the last leader seen is %+v (known=%t)", s.Role, s.Epoch, s.Leader, s.LeaderKnown)
		}
	}

	if prev.Role != s.Role && !legal[[2]ha.Role{prev.Role, s.Role}] {
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
				if r, ok := ev.(SessionRenewed); s.SessionOK && now.Before(fence) && !(ok && r.New) {
					return fmt.Errorf("fenced Demote at %s with the fence at %s", offset(now), offset(fence))
				}
			} else {
				seen["Demote unfenced"]++
			}
			if a.Epoch != s.Epoch || s.Role != ha.RoleDemoting {
				return fmt.Errorf("Demote epoch %d while %s at epoch %d", a.Epoch, s.Role, s.Epoch)
			}
			if i+1 >= len(acts) || acts[i+1] != (Resign{Epoch: a.Epoch}) {
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

func hasAction(acts []Action, want Action) bool {
	for _, a := range acts {
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
