package presence

import (
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func rec(name string, role ha.Role, pid int, started time.Time) ha.NodeStatus {
	return ha.NodeStatus{Name: name, Role: role, AgentPID: pid, StartedAt: started, Heartbeat: t0}
}

func snap(leader ha.Leader, recs ...ha.NodeStatus) ha.Snapshot {
	s := ha.Snapshot{Leader: leader, Nodes: map[string]ha.NodeStatus{}}
	for _, r := range recs {
		s.Nodes[r.Name] = r
	}
	return s
}

// TestTracker walks one history: n1 (active) is lost, n2 takes over, n1
// comes back with a new agent; n3 is paused and found again with the same
// agent; n2's agent restarts before its session expires; n3 stops
// gracefully (no loss).
func TestTracker(t *testing.T) {
	ttl := 2 * time.Second
	tr := New(Options{LeaseTTL: ttl})
	l1 := ha.Leader{Node: "n1", Epoch: 5}
	l2 := ha.Leader{Node: "n2", Epoch: 9}
	n1 := rec("n1", ha.RoleActive, 100, t0)
	n2 := rec("n2", ha.RoleStandby, 200, t0)
	n3 := rec("n3", ha.RoleStandby, 300, t0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	steps := []struct {
		snap ha.Snapshot
		now  time.Time
		want []string // kind, to, node, duration of each event
	}{
		{snap(l1, n1, n2, n3), at(0), nil},
		{snap(l1, n1, n2, n3), at(100), nil},
		// n1's agent is killed at 1000; its session expires at 3000.
		{snap(ha.Leader{}, n2, n3), at(3000), []string{"node lost n1 0s"}},
		{snap(l2, rec("n2", ha.RoleActive, 200, t0), n3), at(3020), []string{"failover n2 n2 2.02s"}},
		// n1 back with a new agent.
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleActive, 200, t0), n3), at(4500), []string{"node found n1 1.5s"}},
		// n3 paused past its lease, then resumes.
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleActive, 200, t0)), at(6000), []string{"node lost n3 0s"}},
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleActive, 200, t0), n3), at(7000), []string{"node found n3 1s"}},
		// n2's agent restarts quickly: a new record before the old session expired.
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleStandby, 201, at(8000)), n3), at(8100), []string{"node restarted n2 0s"}},
		// n3 stops gracefully: it publishes stopped, then its record goes.
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleStandby, 201, at(8000)), rec("n3", ha.RoleStopped, 300, t0)), at(9000), nil},
		{snap(l2, rec("n1", ha.RoleStandby, 101, at(4000)), rec("n2", ha.RoleStandby, 201, at(8000))), at(9100), nil},
	}
	var all []ha.Event
	for i, s := range steps {
		evs := tr.Observe(s.snap, s.now)
		all = append(all, evs...)
		var got []string
		for _, e := range evs {
			got = append(got, strings.Join([]string{e.Kind, e.To, e.Node, e.Duration.String()}, " "))
		}
		if strings.Join(got, "; ") != strings.Join(s.want, "; ") {
			t.Fatalf("step %d: events %q, want %q", i, got, s.want)
		}
	}
	for _, want := range []string{
		"its session expired: its agent (pid 100) stopped renewing at about 12:00:01.000",
		"n1 lost; n2 active 2.02s after n1's agent stopped renewing (lease 2s, then 20ms after the session expired)",
		"its agent restarted (pid 100 -> 101)",
		"same agent (pid 300): it was paused or cut off",
		"its agent restarted (pid 200 -> 201) before its old session expired",
	} {
		found := false
		for _, e := range all {
			found = found || strings.Contains(e.Reason, want)
		}
		if !found {
			t.Errorf("no event says %q", want)
		}
	}
	if f := tr.LastFailover(); f == nil || f.From != "n1" || f.To != "n2" || f.Epoch != 9 || f.Duration != 2020*time.Millisecond {
		t.Errorf("last failover %+v", f)
	}
	if _, lost := tr.Lost("n3"); lost {
		t.Error("n3 still lost after it was found")
	}
}

// A switchover is no failover after a loss: no event.
func TestTrackerSwitchoverIsNoLoss(t *testing.T) {
	tr := New(Options{LeaseTTL: 2 * time.Second})
	n1, n2 := rec("n1", ha.RoleActive, 1, t0), rec("n2", ha.RoleStandby, 2, t0)
	tr.Observe(snap(ha.Leader{Node: "n1", Epoch: 1}, n1, n2), t0)
	if evs := tr.Observe(snap(ha.Leader{Node: "n2", Epoch: 2}, n1, n2), t0.Add(time.Second)); len(evs) != 0 {
		t.Fatalf("events %+v", evs)
	}
}

func TestReporter(t *testing.T) {
	s := snap(ha.Leader{}, rec("a0", ha.RoleWitness, 1, t0), rec("n2", ha.RoleStandby, 2, t0), rec("n1", ha.RoleStopped, 3, t0), rec("n3", ha.RoleActive, 4, t0))
	for node, want := range map[string]bool{"n2": true, "n3": false, "a0": false, "n1": false} {
		if got := Reporter(s, node, "n9"); got != want {
			t.Errorf("Reporter(%s) = %v, want %v", node, got, want)
		}
	}
	if !Reporter(snap(ha.Leader{}), "n1", "n9") {
		t.Error("with no live record, the asking agent reports")
	}
	// n2 came back with a new agent: it has not seen its own loss, so the
	// next live node records its return.
	if Reporter(s, "n2", "n2") || !Reporter(s, "n3", "n2") {
		t.Error("the subject of an event must not be its reporter while another live node can be")
	}
}

// TestRemember: a tracker seeded from history reports the newest failover
// in it, and keeps a newer one it saw itself.
func TestRemember(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	hist := []ha.Event{
		{Time: t0, Kind: KindFailover, From: "n1", To: "n2", Epoch: 5},
		{Time: t0.Add(time.Minute), Kind: KindFailover, From: "n2", To: "n3", Epoch: 9},
		{Time: t0.Add(2 * time.Minute), Kind: KindNode, Node: "n2", To: Found},
	}
	tr := New(Options{LeaseTTL: 2 * time.Second})
	if tr.LastFailover() != nil {
		t.Fatal("a new tracker reports a failover")
	}
	tr.Remember(hist)
	if f := tr.LastFailover(); f == nil || f.To != "n3" || f.Epoch != 9 {
		t.Fatalf("after Remember: %+v, want the n2 -> n3 failover at epoch 9", f)
	}
	tr.Remember(hist[:1])
	if f := tr.LastFailover(); f.To != "n3" {
		t.Fatalf("an older failover in history replaced a newer one: %+v", f)
	}
	tr2 := New(Options{LeaseTTL: 2 * time.Second})
	tr2.Remember(hist[2:])
	if tr2.LastFailover() != nil {
		t.Fatal("a history without failovers gave one")
	}
}
