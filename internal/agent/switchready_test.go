package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/operator"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// TestRecordOfNeedsAView: a healthy standby whose session was replaced is
// not eligible in its record until its watch has shown the leader key
// again: until then it would not campaign on a vacancy (machine.Step), and
// a switchover to it is refused before the active steps down.
func TestRecordOfNeedsAView(t *testing.T) {
	mcfg := machine.Config{Node: "n2", FenceMargin: 300 * time.Millisecond, Priorities: map[string]int{"n1": 100, "n2": 100}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	st := machine.State{}
	for _, ev := range []machine.Event{
		machine.Tick{},
		machine.HealthChanged{Healthy: true, Reason: "ok"},
		machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true},
		machine.LeaderSeen{Leader: ha.Leader{Node: "n1", Epoch: 7}},
	} {
		st = Step(mcfg, st, ev, now).New
	}
	if rec := RecordOf(mcfg, st, now); !rec.Eligible {
		t.Fatalf("with a view: %+v, want eligible", rec)
	}
	// Cut off long enough to lose the session; a new one, and no snapshot
	// since (the watch's member cannot serve its first read yet).
	st = Step(mcfg, st, machine.SessionLost{}, now).New
	st = Step(mcfg, st, machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true}, now).New
	if ok, _ := st.Eligible(mcfg, now); !ok || st.Role != ha.RoleStandby || st.LeaderKnown {
		t.Fatalf("setup: %s, eligible %t, leader known %t", st.Role, ok, st.LeaderKnown)
	}
	rec := RecordOf(mcfg, st, now)
	if rec.Eligible || rec.Why != NoViewYet {
		t.Fatalf("new session, no snapshot: eligible %t (%s), want not eligible (%s)", rec.Eligible, rec.Why, NoViewYet)
	}
	// The machine agrees: a vacancy it has not seen is no campaign.
	if _, acts := machine.Step(mcfg, st, machine.Tick{}, now); hasCampaign(acts) {
		t.Fatal("campaigned without a view")
	}
	cfg := &config.Config{Nodes: []config.Node{{Name: "n1"}, {Name: "n2"}}}
	snap := ha.Snapshot{Leader: ha.Leader{Node: "n1", Epoch: 7}, Nodes: map[string]ha.NodeStatus{"n2": rec}}
	if _, err := operator.PickTarget(cfg, snap, "n2", false, false); err == nil || !strings.Contains(err.Error(), "not eligible") {
		t.Fatalf("switchover to a standby without a view: %v, want refused as not eligible", err)
	}
	st = Step(mcfg, st, machine.LeaderSeen{Leader: ha.Leader{Node: "n1", Epoch: 9}}, now).New
	if rec := RecordOf(mcfg, st, now); !rec.Eligible {
		t.Fatalf("view back: %+v, want eligible", rec)
	}
	// Active-active nodes take no key: no view needed to serve.
	aa := mcfg
	aa.Mode = ha.ModeActiveActive
	st2 := machine.State{Role: ha.RoleStandby, Healthy: true, SessionOK: true, ValidUntil: now.Add(3 * time.Second)}
	if rec := RecordOf(aa, st2, now); !rec.Eligible {
		t.Fatalf("active-active without a view: %+v, want eligible", rec)
	}
}

// TestStatusShowsHeldBy: the intent a standby's record names as the only
// thing holding it back reaches the status (haven status, the dashboard).
func TestStatusShowsHeldBy(t *testing.T) {
	v := viewOf(ha.NodeStatus{Name: "n2", Role: ha.RoleStandby, Healthy: true, Why: "switchover to n3 in progress", HeldBy: "sw7"})
	if v.HeldBy != "sw7" {
		t.Fatalf("status entry %+v, want held_by sw7", v)
	}
}

func hasCampaign(acts []machine.Action) bool {
	for _, a := range acts {
		if _, ok := a.(machine.Campaign); ok {
			return true
		}
	}
	return false
}

// TestMemClusterSwitchoverNeedsTargetView is TestChaos's 409 in process: a
// standby cut off until its session expired comes back with a new session
// while its watch still shows nothing (its etcd member served writes but
// not the watch's read). Its record said "healthy and ready to take over";
// the active accepted a switchover to it, stepped down, the target never
// campaigned and another node took the role back after the grace ("n1
// took over instead of n2"). Now the switchover is refused up front, the
// active keeps the role, and once the watch is back the same switchover
// goes through.
func TestMemClusterSwitchoverNeedsTargetView(t *testing.T) {
	c := startMemCluster(t, 3)
	active := c.waitActive("")
	target := c.other(active)
	c.waitSeen(target, active)
	lease := c.cfg.Timing.LeaseTTL

	// Cut the target off until the store has dropped its session (and its
	// record with it), then let its calls through but not its watch.
	c.conns[target].SetFault(memstore.Fault{Partitioned: true, WatchStalled: true})
	waitFor(t, 4*lease, "the target's record to go with its session", func() bool {
		_, ok := c.store.Snapshot().Nodes[target]
		return !ok
	})
	c.conns[target].SetFault(memstore.Fault{WatchStalled: true})
	waitFor(t, 4*lease, "the target's new session and record, seen by the active", func() bool {
		st := c.agents[target].State()
		rec, ok := c.agents[active].Snapshot().Nodes[target]
		// The record written once the machine had the session (the one
		// written as it was created says "no session in the store").
		return st.SessionOK && !st.LeaderKnown && ok && rec.Healthy && rec.Role == ha.RoleStandby &&
			rec.Why != "no session in the store"
	})
	before := c.store.Leader()
	_, err := c.agents[active].Switchover(opCtx(t), api.SwitchoverRequest{To: target, Reason: "test"})
	if err == nil || !strings.Contains(err.Error(), "not eligible") || ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("switchover to %s without a view of the store: %v, want refused (409) as not eligible", target, err)
	}
	if !strings.Contains(err.Error(), "view of the store") {
		t.Fatalf("refusal %q does not say why", err)
	}
	if l := c.store.Leader(); l != before || !c.agents[active].Serving() {
		t.Fatalf("the refused switchover moved the role: %v -> %v (active %s serving: %t)", before, l, active, c.agents[active].Serving())
	}

	// The watch is back: the target sees the key, says so, and takes over.
	c.conns[target].SetFault(memstore.Fault{})
	waitFor(t, 4*lease, "the target's record eligible again", func() bool {
		return c.agents[active].Snapshot().Nodes[target].Eligible
	})
	res, err := c.agents[active].Switchover(opCtx(t), api.SwitchoverRequest{To: target, Reason: "test"})
	if err != nil || res.To != target {
		t.Fatalf("switchover with the view back: %+v, %v", res, err)
	}
}

// TestViewBackIsPublished: a standby whose new session's watch shows the
// same leader as before (the usual case: a cut that outlived its lease,
// not the active's) says eligible again at once, not at the next
// heartbeat. The record's eligibility turns on LeaderKnown (RecordOf), so
// the machine must ask for a publish when it changes (machine's
// publishWorthy), or for up to
// HeartbeatInterval after every new session the record says "view of the
// store is behind": switchovers to it are refused, Settled waits, and
// redundancy counts one standby short.
func TestViewBackIsPublished(t *testing.T) {
	mcfg := machine.Config{Node: "n2", FenceMargin: 300 * time.Millisecond, Priorities: map[string]int{"n1": 100, "n2": 100}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leader := ha.Leader{Node: "n1", Epoch: 7}
	st := machine.State{}
	for _, ev := range []machine.Event{
		machine.Tick{},
		machine.HealthChanged{Healthy: true, Reason: "ok"},
		machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true},
		machine.LeaderSeen{Leader: leader},
		machine.SessionLost{},
		machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true},
	} {
		st = Step(mcfg, st, ev, now).New
	}
	if rec := RecordOf(mcfg, st, now); rec.Eligible {
		t.Fatalf("setup: new session, no view: %+v, want not eligible", rec)
	}
	stepped := Step(mcfg, st, machine.LeaderSeen{Leader: leader}, now)
	if rec := RecordOf(mcfg, stepped.New, now); !rec.Eligible {
		t.Fatalf("view back: %+v, want eligible", rec)
	}
	published := false
	for _, e := range stepped.Effects {
		published = published || e.Kind == DoPublish
	}
	if !published {
		t.Fatalf("the view is back and the record now says eligible, but nothing asks for a publish: %+v", stepped)
	}
}

// TestWatchRestartIsNoView: a standby whose session is alive but whose
// watch is starting over (a member cut off from its quorum cancels the
// WithRequireLeader watch, and the restart's first read waits for a
// leader: chaos409's open point) is not eligible, and publishes that at
// once, until its watch shows the leader key again. Before, the session
// being alive, it went on claiming "healthy and ready to take over" on a
// view that no longer moved: a switchover to it was accepted, the active
// stepped down, and the target never saw the vacancy (TestChaos's 409).
func TestWatchRestartIsNoView(t *testing.T) {
	mcfg := machine.Config{Node: "n2", FenceMargin: 300 * time.Millisecond, Priorities: map[string]int{"n1": 100, "n2": 100}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	snap := ha.Snapshot{Rev: 5, Leader: ha.Leader{Node: "n1", Epoch: 7}, Nodes: map[string]ha.NodeStatus{}}
	st := machine.State{}
	for _, ev := range []machine.Event{
		machine.Tick{},
		machine.HealthChanged{Healthy: true, Reason: "ok"},
		machine.SessionRenewed{SentAt: now, TTL: 3 * time.Second, New: true},
	} {
		st = Step(mcfg, st, ev, now).New
	}
	see := func(s ha.Snapshot) (published bool) {
		for _, ev := range SeenEvents(mcfg.Node, s, now) {
			stepped := Step(mcfg, st, ev, now)
			st = stepped.New
			for _, e := range stepped.Effects {
				published = published || e.Kind == DoPublish
			}
		}
		return published
	}
	see(snap)
	if rec := RecordOf(mcfg, st, now); !rec.Eligible {
		t.Fatalf("with a view: %+v, want eligible", rec)
	}
	behind := snap
	behind.Behind = true
	if !see(behind) {
		t.Error("the view was lost but nothing asks for a publish: the record goes on saying eligible until the next heartbeat")
	}
	rec := RecordOf(mcfg, st, now)
	if rec.Eligible || rec.Why != NoViewYet {
		t.Fatalf("watch starting over, session alive: eligible %t (%s), want not eligible (%s)", rec.Eligible, rec.Why, NoViewYet)
	}
	cfg := &config.Config{Nodes: []config.Node{{Name: "n1"}, {Name: "n2"}}}
	if _, err := operator.PickTarget(cfg, ha.Snapshot{Leader: snap.Leader, Nodes: map[string]ha.NodeStatus{"n2": rec}}, "n2", false, false); err == nil || !strings.Contains(err.Error(), "view of the store is behind") {
		t.Fatalf("switchover to a standby whose watch is starting over: %v, want refused as not eligible", err)
	}
	// A vacancy it saw before the watch went behind is no campaign now.
	vacant := snap
	vacant.Leader = ha.Leader{}
	see(vacant)
	st.Acquiring = false // the campaign's answer: taken
	see(behind)
	if _, acts := machine.Step(mcfg, st, machine.Tick{}, now); hasCampaign(acts) {
		t.Fatal("campaigned on a vacancy seen before the watch started over")
	}
	// The watch reads the store again: the same data, a view again.
	if !see(snap) {
		t.Error("the view is back but nothing asks for a publish")
	}
	if rec := RecordOf(mcfg, st, now); !rec.Eligible {
		t.Fatalf("view back: %+v, want eligible", rec)
	}
}

// TestMemClusterSwitchoverWatchRestarting: TestWatchRestartIsNoView in
// process. The target keeps its session, but its watch starts over and
// cannot read the store (memstore WatchRestarting, as a member cut off
// from its quorum). A switchover to it is refused before the active steps
// down; once the watch reads again, the same switchover goes through.
func TestMemClusterSwitchoverWatchRestarting(t *testing.T) {
	c := startMemCluster(t, 3)
	active := c.waitActive("")
	target := c.other(active)
	c.waitSeen(target, active)
	lease := c.cfg.Timing.LeaseTTL
	waitFor(t, 4*lease, "the target's record eligible", func() bool {
		return c.agents[active].Snapshot().Nodes[target].Eligible
	})

	c.conns[target].SetFault(memstore.Fault{WatchRestarting: true})
	waitFor(t, 4*lease, "the target's record to say its view is behind, seen by the active", func() bool {
		rec := c.agents[active].Snapshot().Nodes[target]
		return rec.Why == NoViewYet && c.agents[target].State().SessionOK
	})
	if st := c.agents[target].Status(); !st.LeaderIsUnknown() || !strings.Contains(st.LeaderUnknown, "starting over") {
		t.Errorf("the target's status while its watch starts over: leader known (%q), want unknown", st.LeaderUnknown)
	}
	before := c.store.Leader()
	_, err := c.agents[active].Switchover(opCtx(t), api.SwitchoverRequest{To: target, Reason: "test"})
	if err == nil || !strings.Contains(err.Error(), "view of the store") || ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("switchover to %s whose watch is starting over: %v, want refused (409) as not eligible", target, err)
	}
	if l := c.store.Leader(); l != before || !c.agents[active].Serving() {
		t.Fatalf("the refused switchover moved the role: %v -> %v (active %s serving: %t)", before, l, active, c.agents[active].Serving())
	}

	c.conns[target].SetFault(memstore.Fault{})
	waitFor(t, 4*lease, "the target's record eligible again", func() bool {
		return c.agents[active].Snapshot().Nodes[target].Eligible
	})
	if st := c.agents[target].Status(); st.LeaderIsUnknown() {
		t.Errorf("the target's status with its watch back: leader unknown (%s)", st.LeaderUnknown)
	}
	res, err := c.agents[active].Switchover(opCtx(t), api.SwitchoverRequest{To: target, Reason: "test"})
	if err != nil || res.To != target {
		t.Fatalf("switchover with the view back: %+v, %v", res, err)
	}
}
