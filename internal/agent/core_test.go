package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/operator"
)

// TestHealthOf: the health the loop feeds the machine, rule by rule, in
// the order the rules win.
func TestHealthOf(t *testing.T) {
	pass := check.Result{Healthy: true, Reason: "all checks pass"}
	for _, tc := range []struct {
		name string
		h    HealthInputs
		ok   bool
		why  string
	}{
		{"checks decide", HealthInputs{Role: ha.RoleStandby, Service: true, Running: true, Checks: check.Result{Reason: "http: 500"}}, false, "http: 500"},
		{"no service: checks", HealthInputs{Role: ha.RoleActive, Checks: pass}, true, "all checks pass"},
		{"vip link first", HealthInputs{Role: ha.RoleActive, VIPDown: "eth0 has no carrier", StoppedBy: "op", Checks: pass}, false, "eth0 has no carrier"},
		{"cold standby failed here", HealthInputs{Role: ha.RoleStandby, Service: true, Cold: true, RecentFailure: 1500 * time.Millisecond}, false, "eligible again in 2s"},
		{"cold standby", HealthInputs{Role: ha.RoleStandby, Service: true, Cold: true}, true, "cold standby"},
		{"cold promoting", HealthInputs{Role: ha.RolePromoting, Service: true, Cold: true, RecentFailure: time.Second}, true, "starting the service"},
		{"cold active: process", HealthInputs{Role: ha.RoleActive, Service: true, Cold: true, Checks: pass}, false, "not running"},
		{"stopped by operator", HealthInputs{Role: ha.RoleStandby, Service: true, StoppedBy: "alice", Checks: pass}, false, "stopped by alice"},
		{"process gone", HealthInputs{Role: ha.RoleStandby, Service: true, Checks: pass}, false, "not running"},
	} {
		ok, why := HealthOf(tc.h)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %t %q, want %t with %q", tc.name, ok, why, tc.ok, tc.why)
		}
	}
}

// TestStepPlansTheLanes: a step that demotes puts the demotion on the
// fencing lane with its Resign behind it, cancels the promotion first, and
// marks promotions up to the new PromoteSeq as never to start.
func TestStepPlansTheLanes(t *testing.T) {
	mcfg := machine.Config{Node: "a", FenceMargin: 300 * time.Millisecond, Priorities: map[string]int{"a": 1}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := machine.State{}
	for _, ev := range []machine.Event{
		machine.Tick{},
		machine.HealthChanged{Healthy: true, Reason: "ok"},
		machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true},
		machine.LeaderSeen{},
	} {
		st = Step(mcfg, st, ev, now).New
	}
	s := Step(mcfg, st, machine.CampaignResult{Epoch: 4}, now)
	if s.New.Role != ha.RolePromoting {
		t.Fatalf("after the win: %s (%s)", s.New.Role, s.New.Reason)
	}
	var promote machine.Promote
	for _, e := range s.Effects {
		if p, ok := e.Act.(machine.Promote); ok && e.Kind == DoWork {
			promote = p
		}
	}
	if promote.Epoch != 4 || PromoteRefused(promote, 0) != nil {
		t.Fatalf("effects %+v: want a Promote at epoch 4 for the worker", s.Effects)
	}
	s = Step(mcfg, s.New, machine.HealthChanged{Healthy: false, Reason: "down"}, now)
	if !s.Demoted || PromoteRefused(promote, s.New.PromoteSeq) == nil {
		t.Fatalf("demoted %t at seq %d: the waiting promotion %+v must not start", s.Demoted, s.New.PromoteSeq, promote)
	}
	var kinds []EffectKind
	for _, e := range s.Effects {
		kinds = append(kinds, e.Kind)
		if e.Kind == DoWork {
			if _, ok := e.Act.(machine.Resign); ok {
				t.Fatalf("the Resign went to the worker beside the demotion: %+v", s.Effects)
			}
		}
		if e.Kind == DoFence && (e.Job.Demote.Epoch != 4 || len(e.Job.Then) != 1 || e.Job.Then[0] != (machine.Resign{Epoch: 4})) {
			t.Fatalf("fence job %+v, want the demotion of epoch 4 with its Resign behind it", e.Job)
		}
	}
	ci, fi := -1, -1
	for i, k := range kinds {
		if k == DoCancelPromote && ci < 0 {
			ci = i
		}
		if k == DoFence {
			fi = i
		}
	}
	if ci < 0 || fi < 0 || ci > fi {
		t.Fatalf("effects %v: want the promotion cancelled, then the demotion fenced", kinds)
	}
}

// TestResignRetries: a Resign stops on success or a key no longer its own,
// and backs off from 20 ms, doubling up to half a second.
func TestResignRetries(t *testing.T) {
	if !ResignDone(nil) || !ResignDone(ha.ErrNotLeader) || ResignDone(errors.New("timeout")) {
		t.Fatal("ResignDone")
	}
	b, waits := FirstResignBackoff, []time.Duration{}
	for range ResignTries - 1 {
		waits = append(waits, b)
		b = NextResignBackoff(b)
	}
	if waits[0] != 20*time.Millisecond || waits[len(waits)-1] != 500*time.Millisecond {
		t.Fatalf("waits %v", waits)
	}
}

// TestRecordOfNamesTheIntentThatHoldsItBack: a standby that would be
// eligible but for another node's switchover names that intent (HeldBy),
// so that a view without it can tell the record lags
// (operator.Available); one also unhealthy, or not held back at all,
// names none.
func TestRecordOfNamesTheIntentThatHoldsItBack(t *testing.T) {
	mcfg := machine.Config{Node: "a", FenceMargin: 300 * time.Millisecond}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := machine.State{Role: ha.RoleStandby, Healthy: true, SessionOK: true, ValidUntil: now.Add(3 * time.Second), LeaderKnown: true, Leader: ha.Leader{Node: "b", Epoch: 4}}
	if rec := RecordOf(mcfg, st, now); !rec.Eligible || rec.HeldBy != "" {
		t.Fatalf("no intent: eligible %t (%s), held by %q; want eligible, held by none", rec.Eligible, rec.Why, rec.HeldBy)
	}
	st.Switchover = ha.Switchover{ID: "sw1", From: "b", To: "c"}
	st.SwitchoverUntil = now.Add(10 * time.Second)
	rec := RecordOf(mcfg, st, now)
	if rec.Eligible || !strings.Contains(rec.Why, "switchover to c in progress") || rec.HeldBy != "sw1" {
		t.Errorf("held back by sw1: eligible %t (%s), held by %q; want not eligible, held by sw1", rec.Eligible, rec.Why, rec.HeldBy)
	}
	st.Switchover.To = "a"
	if rec := RecordOf(mcfg, st, now); !rec.Eligible || rec.HeldBy != "" {
		t.Errorf("the target: eligible %t (%s), held by %q; want eligible, held by none", rec.Eligible, rec.Why, rec.HeldBy)
	}
	st.Switchover.To = "c"
	st.Healthy, st.HealthReason = false, "check failed"
	if rec := RecordOf(mcfg, st, now); rec.Eligible || rec.HeldBy != "" {
		t.Errorf("unhealthy under sw1: eligible %t (%s), held by %q; want not eligible, held by none", rec.Eligible, rec.Why, rec.HeldBy)
	}
}

// TestHeldByNeedsAView: a standby that saw a switchover intent, lost its
// session and has a new one whose watch has shown nothing yet is held back
// by the intent and by having no view. Its record must not name the intent
// alone: once the intent is gone from the asker's view, operator.Available
// would count it as a target, and a switchover to it would fail as
// TestChaos's 409 did (the active steps down, the target never campaigns).
func TestHeldByNeedsAView(t *testing.T) {
	mcfg := machine.Config{Node: "a", FenceMargin: 300 * time.Millisecond}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := machine.State{Role: ha.RoleStandby, Healthy: true, SessionOK: true, ValidUntil: now.Add(3 * time.Second),
		Leader: ha.Leader{Node: "b", Epoch: 4}, LeaderKnown: false,
		Switchover: ha.Switchover{ID: "sw1", From: "b", To: "c"}, SwitchoverUntil: now.Add(10 * time.Second)}
	rec := RecordOf(mcfg, st, now)
	if rec.Eligible || rec.HeldBy != "" {
		t.Fatalf("no view, under sw1: eligible %t (%s), held by %q; want not eligible, held by none", rec.Eligible, rec.Why, rec.HeldBy)
	}
	rec.Name = "a"
	snap := ha.Snapshot{Leader: ha.Leader{Node: "c", Epoch: 5}, Nodes: map[string]ha.NodeStatus{"a": rec}}
	if operator.Available(snap, rec) {
		t.Fatalf("a standby with no view counts as available once sw1 is gone: %+v", rec)
	}
	if operator.Settled(snap, "sw1") {
		t.Fatal("sw1 answered settled while a standby has no view")
	}
}
