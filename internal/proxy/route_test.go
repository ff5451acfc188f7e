package proxy

import (
	"reflect"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	snap := func(leader string, recs ...ha.NodeStatus) ha.Snapshot {
		s := ha.Snapshot{Leader: ha.Leader{Node: leader, Epoch: 7}, Nodes: map[string]ha.NodeStatus{}}
		for _, r := range recs {
			s.Nodes[r.Name] = r
		}
		return s
	}
	ok := func(at time.Duration) Probe { return Probe{OK: true, At: t0.Add(at)} }
	base := func() Input {
		return Input{
			Mode: ha.ModeActivePassive, Nodes: []string{"n1", "n2", "n3"}, Seen: true,
			Snapshot: snap("n1"), Fresh: t0, LeaseTTL: time.Second, ProbeValid: 400 * ms,
			Probes: map[string]Probe{"n1": ok(0), "n2": ok(0)},
		}
	}
	tests := []struct {
		name    string
		edit    func(*Input)
		now     time.Duration
		want    []string
		recheck time.Duration // 0: not checked
	}{
		{"leader confirmed by its probe", nil, 10 * ms, []string{"n1"}, 400 * ms},
		{"no snapshot yet", func(in *Input) { in.Seen = false }, 0, nil, 0},
		{"no leader in the store", func(in *Input) { in.Snapshot = snap("") }, 0, nil, 0},
		{"leader without a backend", func(in *Input) { in.Snapshot = snap("w1") }, 0, nil, 0},
		{"leader not yet confirmed", func(in *Input) { in.Snapshot = snap("n3") }, 0, nil, 1000 * ms},
		{"leader's probe says 503", func(in *Input) { in.Probes["n1"] = Probe{OK: false, At: t0} }, 0, nil, 0},
		{"leader's 200 too old", nil, 401 * ms, nil, 0},
		{"a standby's 200 does not count", func(in *Input) { in.Probes["n1"] = Probe{} }, 0, nil, 0},
		{"store view still within a lease", func(in *Input) { in.Probes["n1"] = ok(900 * ms) }, 999 * ms, []string{"n1"}, 1000 * ms},
		{"store view older than a lease: hold", func(in *Input) { in.Probes["n1"] = ok(900 * ms) }, 1000 * ms, nil, 0},
		{"active-active: active and healthy standbys", func(in *Input) {
			in.Mode = ha.ModeActiveActive
			in.Snapshot = snap("n2", ha.NodeStatus{Name: "n1", Role: ha.RoleStandby, Healthy: true},
				ha.NodeStatus{Name: "n2", Role: ha.RoleActive}, ha.NodeStatus{Name: "n3", Role: ha.RoleStandby, Healthy: true})
			in.Probes["n3"] = ok(0)
		}, 0, []string{"n1", "n2", "n3"}, 0},
		{"active-active: unhealthy or unconfirmed left out", func(in *Input) {
			in.Mode = ha.ModeActiveActive
			in.Snapshot = snap("n2", ha.NodeStatus{Name: "n1", Role: ha.RoleStandby, Healthy: false},
				ha.NodeStatus{Name: "n2", Role: ha.RoleActive}, ha.NodeStatus{Name: "n3", Role: ha.RoleStandby, Healthy: true})
		}, 0, []string{"n2"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			if tt.edit != nil {
				tt.edit(&in)
			}
			d := Decide(in, t0.Add(tt.now))
			if !reflect.DeepEqual(d.Targets, tt.want) {
				t.Fatalf("targets %v, want %v (why: %s)", d.Targets, tt.want, d.Why)
			}
			if len(d.Targets) == 0 && d.Why == "" {
				t.Fatalf("no target and no reason")
			}
			if tt.recheck != 0 && !d.Recheck.Equal(t0.Add(tt.recheck)) {
				t.Fatalf("recheck at %v, want %v", d.Recheck.Sub(t0), tt.recheck)
			}
		})
	}
}
