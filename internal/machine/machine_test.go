package machine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

var tableCfg = Config{Node: "n1", FenceMargin: 300 * time.Millisecond, PromoteBackoff: 10 * time.Second}

// at returns t0 plus d; the tables below read as offsets from t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

// serving is an active node with a healthy service whose lease is valid
// until 1s, so its fence is at 700ms.
func serving() State {
	return State{
		Role: ha.RoleActive, Epoch: 4, Healthy: true, SessionOK: true, ValidUntil: at(time.Second),
		Leader: ha.Leader{Node: "n1", Epoch: 4}, LeaderKnown: true,
	}
}

// ready is a standby that may campaign until its fence at 700ms.
func ready() State {
	return State{Role: ha.RoleStandby, Healthy: true, SessionOK: true, ValidUntil: at(time.Second), LeaderKnown: true}
}

func with(s State, f func(*State)) State { f(&s); return s }

func TestServing(t *testing.T) {
	zeroFence := tableCfg
	zeroFence.FenceMargin = 0
	wideFence := tableCfg
	wideFence.FenceMargin = 2 * time.Second
	tests := []struct {
		name string
		cfg  Config
		s    State
		now  time.Duration
		want bool
	}{
		{"zero state", tableCfg, State{}, 0, false},
		{"active, well before the fence", tableCfg, serving(), 0, true},
		{"active, 1ns before the fence", tableCfg, serving(), 700*time.Millisecond - 1, true},
		{"active, at the fence", tableCfg, serving(), 700 * time.Millisecond, false},
		{"active, between the fence and expiry", tableCfg, serving(), 900 * time.Millisecond, false},
		{"active, after expiry", tableCfg, serving(), time.Minute, false},
		{"no fence margin: 1ns before expiry", zeroFence, serving(), time.Second - 1, true},
		{"no fence margin: at expiry", zeroFence, serving(), time.Second, false},
		{"fence margin longer than the lease", wideFence, serving(), 0, false},
		{"unhealthy", tableCfg, with(serving(), func(s *State) { s.Healthy = false }), 0, false},
		{"session lost", tableCfg, with(serving(), func(s *State) { s.SessionOK = false }), 0, false},
		{"promoting", tableCfg, with(serving(), func(s *State) { s.Role = ha.RolePromoting }), 0, false},
		{"demoting", tableCfg, with(serving(), func(s *State) { s.Role = ha.RoleDemoting }), 0, false},
		{"standby", tableCfg, with(serving(), func(s *State) { s.Role = ha.RoleStandby }), 0, false},
		{"stopped", tableCfg, with(serving(), func(s *State) { s.Role = ha.RoleStopped }), 0, false},
	}
	for _, tt := range tests {
		if got := tt.s.Serving(tt.cfg, at(tt.now)); got != tt.want {
			t.Errorf("%s: Serving at %s = %t, want %t", tt.name, tt.now, got, tt.want)
		}
	}
}

func TestEligible(t *testing.T) {
	backoff := func(until time.Duration) func(*State) {
		return func(s *State) { s.BackoffUntil = at(until) }
	}
	tests := []struct {
		name string
		s    State
		now  time.Duration
		ok   bool
		why  string
	}{
		{"ready", ready(), 0, true, "healthy and ready to take over"},
		{"ready, 1ns before the fence", ready(), 700*time.Millisecond - 1, true, "healthy and ready to take over"},
		{"at the fence", ready(), 700 * time.Millisecond, false, "lease not renewed recently enough"},
		{"zero state", State{}, 0, false, "no session in the store"},
		{"no session", with(ready(), func(s *State) { s.SessionOK = false }), 0, false, "no session in the store"},
		{"unhealthy", with(ready(), func(s *State) { s.Healthy, s.HealthReason = false, "disk full" }), 0, false, "service unhealthy: disk full"},
		{"in backoff", with(ready(), backoff(500*time.Millisecond)), 0, false, "promotion failed recently; eligible again in 500ms"},
		{"backoff rounded to the millisecond", with(ready(), backoff(1234567*time.Microsecond)), 0, false, "promotion failed recently; eligible again in 1.235s"},
		{"1ns before the backoff ends", with(ready(), backoff(500*time.Millisecond)), 500*time.Millisecond - 1, false, "promotion failed recently; eligible again in 0s"},
		{"at the end of the backoff", with(ready(), backoff(500*time.Millisecond)), 500 * time.Millisecond, true, "healthy and ready to take over"},
		{"backoff that ended", with(ready(), backoff(100*time.Millisecond)), 200 * time.Millisecond, true, "healthy and ready to take over"},
		// When several reasons hold, the most fundamental one is given.
		{"stopping beats everything", with(ready(), func(s *State) {
			s.Stopping, s.SessionOK, s.Healthy, s.BackoffUntil = true, false, false, at(time.Hour)
		}), time.Minute, false, "agent is stopping"},
		{"no session beats a stale lease", with(ready(), func(s *State) { s.SessionOK = false }), time.Minute, false, "no session in the store"},
		{"stale lease beats unhealthy", with(ready(), func(s *State) { s.Healthy = false }), time.Minute, false, "lease not renewed recently enough"},
		{"unhealthy beats backoff", with(ready(), func(s *State) { s.Healthy, s.HealthReason, s.BackoffUntil = false, "x", at(time.Hour) }), 0, false, "service unhealthy: x"},
		// Eligibility is about the node, not its role: the active answers too.
		{"active", serving(), 0, true, "healthy and ready to take over"},
	}
	for _, tt := range tests {
		ok, why := tt.s.Eligible(tableCfg, at(tt.now))
		if ok != tt.ok || why != tt.why {
			t.Errorf("%s: Eligible at %s = %t, %q; want %t, %q", tt.name, tt.now, ok, why, tt.ok, tt.why)
		}
	}
}

func TestNextDeadline(t *testing.T) {
	fence := 700 * time.Millisecond
	tests := []struct {
		name string
		s    State
		want time.Duration // -1: the zero time
	}{
		{"zero state", State{}, -1},
		{"active: the fence", serving(), fence},
		{"promoting: the fence", with(serving(), func(s *State) { s.Role = ha.RolePromoting }), fence},
		{"active without a session: nothing to wait for", with(serving(), func(s *State) { s.SessionOK = false }), -1},
		{"active, backoff first", with(serving(), func(s *State) { s.BackoffUntil = at(200 * time.Millisecond) }), 200 * time.Millisecond},
		{"active, fence first", with(serving(), func(s *State) { s.BackoffUntil = at(time.Hour) }), fence},
		// The fence matters only to a holder; a standby's deadline would go
		// stale when renewals stop and make the driver tick in a loop.
		{"standby: no deadline", ready(), -1},
		{"demoting: no deadline", with(serving(), func(s *State) { s.Role = ha.RoleDemoting }), -1},
		{"standby in backoff", with(ready(), func(s *State) { s.BackoffUntil = at(10 * time.Second) }), 10 * time.Second},
		{"standby, backoff without a session", with(ready(), func(s *State) { s.SessionOK, s.BackoffUntil = false, at(3*time.Second) }), 3 * time.Second},
	}
	for _, tt := range tests {
		got := tt.s.NextDeadline(tableCfg)
		want := time.Time{}
		if tt.want >= 0 {
			want = at(tt.want)
		}
		if !got.Equal(want) {
			t.Errorf("%s: NextDeadline = %s, want %s", tt.name, offset(got), offset(want))
		}
	}
}

// A tick at the deadline NextDeadline reported must consume it: otherwise a
// driver that waits for NextDeadline would tick in a busy loop.
func TestTickConsumesDeadline(t *testing.T) {
	states := map[string]State{
		"active":           serving(),
		"standby":          ready(),
		"standby, backoff": with(ready(), func(s *State) { s.BackoffUntil = at(200 * time.Millisecond) }),
		"demoting":         with(serving(), func(s *State) { s.Role = ha.RoleDemoting }),
	}
	for name, s := range states {
		for i := 0; i < 4; i++ {
			d := s.NextDeadline(tableCfg)
			if d.IsZero() {
				break
			}
			next, _ := Step(tableCfg, s, Tick{}, d)
			if nd := next.NextDeadline(tableCfg); !nd.IsZero() && !nd.After(d) {
				t.Fatalf("%s: after a tick at %s, NextDeadline is still %s", name, offset(d), offset(nd))
			}
			s = next
		}
	}
}

// opsCfg turns on every operator rule that depends on configuration:
// priorities and preemption after 1s.
var opsCfg = Config{
	Node: "n1", FenceMargin: 300 * time.Millisecond, PromoteBackoff: 10 * time.Second,
	Priorities: map[string]int{"n1": 200, "n2": 100, "n3": 300},
	Preempt:    true, PreemptDelay: time.Second,
}

// longReady is a standby that may campaign for a minute: the fence is out
// of the way of the operator rules.
func longReady() State {
	return with(ready(), func(s *State) { s.ValidUntil = at(time.Hour) })
}

// switchover returns a state modifier for a pending switchover.
func switchover(from string, epoch ha.Epoch, to string, until time.Duration) func(*State) {
	return func(s *State) {
		s.Switchover = ha.Switchover{ID: "sw", From: from, Epoch: epoch, To: to}
		s.SwitchoverUntil = at(until)
	}
}

func TestEligibleOperatorRules(t *testing.T) {
	pb := func(backup bool) Config {
		c := tableCfg
		c.Mode, c.Backup = ha.ModePassiveBackup, backup
		return c
	}
	aa := tableCfg
	aa.Mode = ha.ModeActiveActive
	maint := func(s *State) { s.Maintenance = true }
	tests := []struct {
		name string
		cfg  Config
		s    State
		now  time.Duration
		ok   bool
		why  string
	}{
		{"maintenance", tableCfg, with(longReady(), maint), 0, false, "in maintenance (haven maintenance off n1 to end it)"},
		{"maintenance, active-active", aa, with(longReady(), maint), 0, false, "in maintenance (haven maintenance off n1 to end it)"},
		{"switchover to another node", tableCfg, with(longReady(), switchover("n2", 3, "n3", 5*time.Second)), 0, false, "switchover to n3 in progress"},
		{"switchover to another node, 1ns before its deadline", tableCfg, with(longReady(), switchover("n2", 3, "n3", 5*time.Second)), 5*time.Second - 1, false, "switchover to n3 in progress"},
		{"switchover to another node, at its deadline", tableCfg, with(longReady(), switchover("n2", 3, "n3", 5*time.Second)), 5 * time.Second, true, "healthy and ready to take over"},
		{"switchover to this node", tableCfg, with(longReady(), switchover("n2", 3, "n1", 5*time.Second)), 0, true, "healthy and ready to take over"},
		{"switchover away from this node", tableCfg, with(longReady(), switchover("n1", 3, "n2", 5*time.Second)), 0, false, "switchover to n2 in progress"},
		{"switchover with no ID is none", tableCfg, with(longReady(), func(s *State) {
			switchover("n2", 3, "n3", 5*time.Second)(s)
			s.Switchover.ID = ""
		}), 0, true, "healthy and ready to take over"},
		{"maintenance beats a switchover to this node", tableCfg, with(longReady(), func(s *State) {
			maint(s)
			switchover("n2", 3, "n1", 5*time.Second)(s)
		}), 0, false, "in maintenance (haven maintenance off n1 to end it)"},
		{"unhealthy beats maintenance", tableCfg, with(longReady(), func(s *State) { maint(s); s.Healthy, s.HealthReason = false, "x" }), 0, false, "service unhealthy: x"},
		{"backoff beats maintenance", tableCfg, with(longReady(), func(s *State) { maint(s); s.BackoffUntil = at(time.Second) }), 0, false, "promotion failed recently; eligible again in 1s"},
		{"backup", pb(true), longReady(), 0, false, "backup: promoted only by an operator (haven promote n1)"},
		{"backup, switchover to it", pb(true), with(longReady(), switchover("", 0, "n1", 5*time.Second)), 0, true, "healthy and ready to take over"},
		{"backup, switchover to it expired", pb(true), with(longReady(), switchover("", 0, "n1", 5*time.Second)), 5 * time.Second, false, "backup: promoted only by an operator (haven promote n1)"},
		{"backup, switchover to another", pb(true), with(longReady(), switchover("", 0, "n2", 5*time.Second)), 0, false, "switchover to n2 in progress"},
		{"passive-backup, not a backup", pb(false), longReady(), 0, true, "healthy and ready to take over"},
		{"backup flag outside passive-backup", withCfg(tableCfg, func(c *Config) { c.Backup = true }), longReady(), 0, true, "healthy and ready to take over"},
	}
	for _, tt := range tests {
		ok, why := tt.s.Eligible(tt.cfg, at(tt.now))
		if ok != tt.ok || why != tt.why {
			t.Errorf("%s: Eligible at %s = %t, %q; want %t, %q", tt.name, tt.now, ok, why, tt.ok, tt.why)
		}
	}
}

func withCfg(c Config, f func(*Config)) Config { f(&c); return c }

func TestNextDeadlineOperatorRules(t *testing.T) {
	leaderN2 := func(s *State) { s.Leader = ha.Leader{Node: "n2", Epoch: 3} }
	tests := []struct {
		name string
		cfg  Config
		s    State
		want time.Duration // -1: the zero time
	}{
		{"switchover pending: its deadline", tableCfg, with(longReady(), switchover("n2", 3, "n3", 5*time.Second)), 5 * time.Second},
		{"switchover and backoff: the earlier", tableCfg, with(longReady(), func(s *State) {
			switchover("n2", 3, "n3", 5*time.Second)(s)
			s.BackoffUntil = at(2 * time.Second)
		}), 2 * time.Second},
		{"active with a switchover: the earlier of it and the fence", tableCfg, with(serving(), switchover("n2", 3, "n3", 5*time.Second)), 700 * time.Millisecond},
		{"preempt: eligible since 0, delay 1s", opsCfg, with(longReady(), func(s *State) { leaderN2(s); s.EligibleSince = at(0) }), time.Second},
		{"preempt off: no deadline", tableCfg, with(longReady(), func(s *State) { leaderN2(s); s.EligibleSince = at(0) }), -1},
		{"preempt, not eligible: no deadline", opsCfg, with(longReady(), leaderN2), -1},
		{"preempt, not standby: no deadline", opsCfg, with(serving(), func(s *State) { s.EligibleSince = at(0) }), 700 * time.Millisecond},
	}
	for _, tt := range tests {
		got := tt.s.NextDeadline(tt.cfg)
		want := time.Time{}
		if tt.want >= 0 {
			want = at(tt.want)
		}
		if !got.Equal(want) {
			t.Errorf("%s: NextDeadline = %s, want %s", tt.name, offset(got), offset(want))
		}
	}
}

// The operator rules' deadlines must be consumed by the tick sent for them,
// like the others (TestTickConsumesDeadline): a driver that waits for
// NextDeadline would otherwise tick in a busy loop.
//
// (It found that NextDeadline kept reporting an expired switchover and
// passed preemption deadlines, which made the agent's loop spin.)
func TestTickConsumesOperatorDeadlines(t *testing.T) {
	leaderN2 := func(s *State) { s.Leader = ha.Leader{Node: "n2", Epoch: 3} }
	leaderN3 := func(s *State) { s.Leader = ha.Leader{Node: "n3", Epoch: 3} }
	states := []struct {
		name string
		s    State
	}{
		{"standby, switchover to another node", with(longReady(), func(s *State) { leaderN2(s); switchover("n2", 3, "n3", 2*time.Second)(s) })},
		{"active, switchover naming an old epoch", with(serving(), func(s *State) {
			s.ValidUntil = at(time.Hour)
			switchover("n1", 2, "n3", 2*time.Second)(s)
		})},
		{"standby, preemption due", with(longReady(), func(s *State) { leaderN2(s); s.EligibleSince = at(0) })},
		{"standby, asked at 1s", with(longReady(), func(s *State) {
			leaderN2(s)
			s.EligibleSince, s.PreemptAsked = at(0), at(time.Second)
		})},
		{"standby, leader of higher priority", with(longReady(), func(s *State) { leaderN3(s); s.EligibleSince = at(0) })},
	}
	var failures []string
	for _, st := range states {
		s := st.s
		for i := 0; i < 4; i++ {
			d := s.NextDeadline(opsCfg)
			if d.IsZero() {
				break
			}
			next, _ := Step(opsCfg, s, Tick{}, d)
			if nd := next.NextDeadline(opsCfg); !nd.IsZero() && !nd.After(d) {
				failures = append(failures, fmt.Sprintf("%s: after a tick at %s, NextDeadline is still %s", st.name, offset(d), offset(nd)))
				break
			}
			s = next
		}
	}
	if len(failures) > 0 {
		t.Fatalf("NextDeadline reports deadlines a tick has passed:\n%s", strings.Join(failures, "\n"))
	}
}

// A renewal answered after the holder's fence deadline does not revive it:
// by its own rule it has given up, and a standby may already act on that.
// The answer may be late (a frozen process) or come from an etcd member that
// woke from a freeze still believing it leads and renewed a lease the
// cluster had revoked (etcd #15247). A renewal seen before the fence
// extends it as always.
func TestLateRenewalDoesNotReviveAHolder(t *testing.T) {
	renewal := SessionRenewed{SentAt: at(750 * time.Millisecond), TTL: time.Second}
	s, acts := Step(tableCfg, serving(), renewal, at(800*time.Millisecond)) // fence at 700ms
	if s.Role != ha.RoleDemoting {
		t.Fatalf("role after a renewal past the fence = %s, want demoting", s.Role)
	}
	var fenced bool
	for _, a := range acts {
		if d, ok := a.(Demote); ok && d.Fenced {
			fenced = true
		}
	}
	if !fenced {
		t.Fatalf("actions %v: want a fenced Demote", acts)
	}
	s, _ = Step(tableCfg, serving(), renewal, at(699*time.Millisecond))
	if s.Role != ha.RoleActive || !s.ValidUntil.Equal(at(1750*time.Millisecond)) {
		t.Fatalf("renewal before the fence: role %s valid until %s, want active until 1.75s", s.Role, s.ValidUntil.Sub(t0))
	}
}

// Nor does such an answer count once the holder has fenced itself, in
// whatever role it is by then: a woken etcd member's stale lessor answers
// the renewals it held without renewing anything, so the bound they give
// may lie past the lease's expiry in the store, and a node that counted
// one could win the key again and serve on it after the store dropped its
// lease (found by internal/sim, lockdelay.go). A renewal sent after the
// fencing counts.
func TestRenewalSentBeforeFencingDoesNotCount(t *testing.T) {
	s, _ := Step(tableCfg, serving(), Tick{}, at(700*time.Millisecond)) // fence at 700ms
	if s.Role != ha.RoleDemoting {
		t.Fatalf("role at the fence = %s, want demoting", s.Role)
	}
	before := s.ValidUntil
	for _, sent := range []time.Duration{650 * time.Millisecond, 700 * time.Millisecond} {
		s2, _ := Step(tableCfg, s, SessionRenewed{SentAt: at(sent), TTL: time.Second}, at(720*time.Millisecond))
		if !s2.ValidUntil.Equal(before) {
			t.Fatalf("renewal sent at %s, before the fencing, answered after: valid until %s, want %s", sent, s2.ValidUntil.Sub(t0), before.Sub(t0))
		}
	}
	s, _ = Step(tableCfg, s, SessionRenewed{SentAt: at(710 * time.Millisecond), TTL: time.Second}, at(720*time.Millisecond))
	if want := at(1710 * time.Millisecond); !s.ValidUntil.Equal(want) {
		t.Fatalf("renewal sent after the fencing: valid until %s, want 1.71s", s.ValidUntil.Sub(t0))
	}
}

// TestLaterLeaderRefusesAWinAfterViewLost: a campaign's answer (a win at
// epoch 5) is processed after the watch showed a later leader (n2 at epoch
// 9: the key had gone) and then started over (ViewLost). The leader last
// seen is out of date only in that it may have moved on further; it still
// proves that the key won at 5 is gone. Before ViewLost existed the
// restart went unnoticed and the win was refused; it must still be.
func TestLaterLeaderRefusesAWinAfterViewLost(t *testing.T) {
	s, _ := Step(tableCfg, ready(), LeaderSeen{}, at(0))
	if !s.Acquiring {
		t.Fatal("a ready standby on a vacancy did not campaign")
	}
	s, _ = Step(tableCfg, s, LeaderSeen{Leader: ha.Leader{Node: "n2", Epoch: 9}}, at(10*time.Millisecond))
	for _, lost := range []bool{false, true} {
		s2 := s
		if lost {
			s2, _ = Step(tableCfg, s2, ViewLost{}, at(20*time.Millisecond))
		}
		s2, acts := Step(tableCfg, s2, CampaignResult{Epoch: 5}, at(30*time.Millisecond))
		if s2.Role != ha.RoleStandby {
			t.Fatalf("view lost %v: won at 5 after n2@9 was seen: role %s (%v), want standby and the key handed back", lost, s2.Role, acts)
		}
	}
}
