package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/folders"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/redundancy"
)

// TestFailoversCountOnlyTakeovers: the first election and a switchover are
// elections; only taking over from another active node unplanned is a
// failover.
func TestFailoversCountOnlyTakeovers(t *testing.T) {
	a := testAgent(t)
	m := newMetrics(a)
	count := func() (float64, float64) {
		return gauge(t, m, "haven_elections_total", ""), gauge(t, m, "haven_failovers_total", "")
	}

	m.leader(ha.Leader{}) // a new cluster: nobody active yet
	m.roleChanged(ha.RoleStandby, ha.RolePromoting)
	if e, f := count(); e != 1 || f != 0 {
		t.Fatalf("first election: elections %v failovers %v, want 1 0", e, f)
	}
	m.leader(ha.Leader{Node: "n1", Epoch: 5}) // ourselves: still no other
	m.leader(ha.Leader{Node: "n2", Epoch: 9}) // then n2 took over
	a.state.Store(&machine.State{Switchover: ha.Switchover{ID: "s1", To: "n1"}})
	m.roleChanged(ha.RoleStandby, ha.RolePromoting)
	if e, f := count(); e != 2 || f != 0 {
		t.Fatalf("switchover: elections %v failovers %v, want 2 0", e, f)
	}
	a.state.Store(&machine.State{})
	m.roleChanged(ha.RoleStandby, ha.RolePromoting)
	if e, f := count(); e != 3 || f != 1 {
		t.Fatalf("failover: elections %v failovers %v, want 3 1", e, f)
	}
}

// TestConfirmedRenewalsMetric: each answer to a renewal sent after a pause
// (lease.Renewal.Confirmed) moves haven_lease_renewals_confirmed_total by
// its result; a plain renewal moves none of them.
func TestConfirmedRenewalsMetric(t *testing.T) {
	a := testAgent(t)
	m := newMetrics(a)
	for _, c := range []struct {
		r    lease.Renewal
		want string // the result it counts as; "" for none
	}{
		{lease.Renewal{Took: time.Millisecond}, ""},
		{lease.Renewal{Took: time.Millisecond, Err: errors.New("renew lease: context deadline exceeded")}, ""},
		{lease.Renewal{Took: time.Millisecond, Confirmed: true}, "confirmed"},
		{lease.Renewal{Confirmed: true, Err: fmt.Errorf("renew lease: answered in raft term 2, a linearizable read after it in term 3 (%w)", ha.ErrUnconfirmed)}, "unconfirmed"},
		{lease.Renewal{Confirmed: true, Err: ha.ErrSessionLost}, "lost"},
		{lease.Renewal{Confirmed: true, Err: errors.New("renew lease: context deadline exceeded")}, "error"},
	} {
		before := map[string]float64{}
		for _, r := range confirmResults {
			before[r] = gauge(t, m, "haven_lease_renewals_confirmed_total", r)
		}
		m.answered(c.r)
		for _, r := range confirmResults {
			want := before[r]
			if r == c.want {
				want++
			}
			if got := gauge(t, m, "haven_lease_renewals_confirmed_total", r); got != want {
				t.Errorf("after %+v: haven_lease_renewals_confirmed_total{result=%q} = %v, want %v", c.r, r, got, want)
			}
		}
	}
}

// TestClusterMetrics: the redundancy judgement and the members show up as
// gauges, and haven_build_info is there.
func TestClusterMetrics(t *testing.T) {
	a := testAgent(t)
	m := newMetrics(a)
	m.cluster.set(redundancy.Report{State: redundancy.Degraded, Standbys: 1, WantStandbys: 2, Quorum: 2},
		[]ha.Member{{Name: "n1", Healthy: true, Leader: true, DBBytes: 3 << 20, DBInUseBytes: 1 << 20, DBQuotaBytes: 2 << 30}, {Name: "n2", Healthy: true}, {Name: "n3"}})
	m.renewal(time.Millisecond, nil)
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"haven_cluster_degraded", "", 1}, {"haven_cluster_standbys_ready", "", 1}, {"haven_cluster_standbys_configured", "", 2},
		{"haven_store_quorum", "", 2}, {"haven_cluster_redundancy", "degraded", 1}, {"haven_cluster_redundancy", "ok", 0},
		{"haven_store_member_leader", "n1", 1}, {"haven_store_member_healthy", "n3", 0}, {"haven_store_member_healthy", "n2", 1},
		{"haven_store_member_db_bytes", "n1", 3 << 20}, {"haven_store_member_db_in_use_bytes", "n1", 1 << 20}, {"haven_store_member_db_quota_bytes", "n1", 2 << 30},
		{"haven_store_reachable", "", 1}, {"haven_build_info", "", 1},
	} {
		if got := gauge(t, m, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.label, got, c.want)
		}
	}
	if got := gauge(t, m, "haven_lease_remaining_seconds", ""); got != 0 {
		t.Errorf("haven_lease_remaining_seconds without a session = %v", got)
	}
}

// gauge reads one series of m: the first of name whose labels include
// the value label ("" for any).
func gauge(t *testing.T, m *Metrics, name, label string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			ok := label == ""
			for _, lp := range s.GetLabel() {
				ok = ok || lp.GetValue() == label
			}
			if !ok {
				continue
			}
			switch {
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}

// testAgent is an agent with just enough for its metrics to be gathered.
func testAgent(t *testing.T) *Agent {
	runner, err := check.NewRunner(nil, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{node: config.Node{Name: "n1"}, clk: clock.Real{}, health: runner}
	a.state.Store(&machine.State{})
	return a
}

// TestMonitoringFilesUseRealMetrics: the Grafana dashboard is valid JSON,
// and every haven_ metric it and the alerting rules use is one the agent
// exports.
func TestMonitoringFilesUseRealMetrics(t *testing.T) {
	a := testAgent(t)
	m := newMetrics(a)
	m.cluster.set(redundancy.Report{State: redundancy.OK}, []ha.Member{{Name: "n1", Healthy: true}})
	m.roleChanged(ha.RoleStandby, ha.RolePromoting)
	m.renewal(time.Millisecond, nil)
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{"haven_check_up": true, "haven_check_failures_total": true} // per configured check
	for _, name := range folders.MetricNames() {                                        // per replicated folder
		have[name] = true
	}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	dash, err := os.ReadFile("../../deploy/monitoring/haven-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil || len(d.Panels) == 0 {
		t.Fatalf("haven-dashboard.json: %v (%d panels)", err, len(d.Panels))
	}
	rules, err := os.ReadFile("../../deploy/monitoring/haven-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`haven_[a-z_]+`)
	used := re.FindAllString(string(dash)+string(rules), -1)
	if len(used) < 10 {
		t.Fatalf("only %d metric uses found", len(used))
	}
	for _, name := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !have[name] && !have[base] && name != "haven_ha" {
			t.Errorf("the monitoring files use %s, which the agent does not export", name)
		}
	}
}

// TestDBWarnings: status warns about a member's database at 80 % of its
// quota or more, and about a NOSPACE alarm; not below, nor without a quota
// (not answered).
func TestDBWarnings(t *testing.T) {
	const q = 2 << 30
	got := dbWarnings([]ha.Member{
		{Name: "n1", DBBytes: q * 79 / 100, DBQuotaBytes: q},
		{Name: "n2", DBBytes: q * 81 / 100, DBInUseBytes: 100 << 20, DBQuotaBytes: q},
		{Name: "n3", DBBytes: q, DBQuotaBytes: q, Alarms: []string{"memberID:123 alarm:NOSPACE "}},
		{Name: "n4"},
	})
	if len(got) != 2 || !strings.Contains(got[0], "etcd member n2's database is 1658 MiB, 81% of its 2048 MiB quota (100 MiB in use)") ||
		!strings.Contains(got[1], "etcd member n3 raised the NOSPACE alarm") {
		t.Fatalf("warnings %q", got)
	}
}
