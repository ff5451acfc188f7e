package redundancy

import (
	"reflect"
	"testing"

	"github.com/haven-ha/haven/internal/ha"
)

func TestAssess(t *testing.T) {
	standby := func(name string) Node { return Node{Name: name, Role: ha.RoleStandby, Eligible: true} }
	active := Node{Name: "n1", Role: ha.RoleActive}
	members := func(healthy ...bool) []ha.Member {
		var ms []ha.Member
		for _, h := range healthy {
			ms = append(ms, ha.Member{Healthy: h})
		}
		return ms
	}
	for _, tc := range []struct {
		name    string
		in      Input
		state   State
		reasons int
	}{
		{"three nodes all ready", Input{Active: "n1", Nodes: []Node{active, standby("n2"), standby("n3")}, Members: members(true, true, true)}, OK, 0},
		{"one node alone is intact", Input{Active: "n1", Nodes: []Node{active}, Members: members(true)}, OK, 0},
		{"a standby down", Input{Active: "n1", Nodes: []Node{active, standby("n2"), {Name: "n3", Role: ha.RoleDown}}}, Degraded, 1},
		{"a standby not eligible", Input{Active: "n1", Nodes: []Node{active, standby("n2"), {Name: "n3", Role: ha.RoleStandby, Why: "unhealthy"}}}, Degraded, 1},
		{"in maintenance", Input{Active: "n1", Nodes: []Node{active, {Name: "n2", Role: ha.RoleMaintenance}}}, Degraded, 1},
		{"witness is no standby", Input{Active: "n1", Nodes: []Node{active, standby("n2"), {Name: "w", Role: ha.RoleWitness, Witness: true}}, Members: members(true, true, true)}, OK, 0},
		{"quorum at its minimum", Input{Active: "n1", Nodes: []Node{active, standby("n2"), standby("n3")}, Members: members(true, true, false)}, Degraded, 1},
		{"quorum lost", Input{Active: "n1", Nodes: []Node{active, standby("n2"), standby("n3")}, Members: members(true, false, false)}, Degraded, 1},
		{"five members, one down", Input{Active: "n1", Nodes: []Node{active, standby("n2"), standby("n3")}, Members: members(true, true, true, true, false)}, OK, 0},
		{"no active", Input{Nodes: []Node{standby("n1"), standby("n2")}}, NoActive, 1},
		{"leader not yet active", Input{Active: "n1", Nodes: []Node{{Name: "n1", Role: ha.RolePromoting}, standby("n2")}}, NoActive, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Assess(tc.in)
			if r.State != tc.state || len(r.Reasons) != tc.reasons {
				t.Fatalf("Assess = %s %q, want %s with %d reasons", r.State, r.Reasons, tc.state, tc.reasons)
			}
		})
	}
	r := Assess(Input{Active: "n1", Nodes: []Node{active, standby("n2"), {Name: "n3", Role: ha.RoleDown}}, Members: members(true, true, false)})
	want := Report{State: Degraded, Standbys: 1, WantStandbys: 2, Members: 3, HealthyMembers: 2, Quorum: 2,
		Reasons: []string{"n3 cannot take over: it is down", "store quorum at its minimum: 2 of 3 members answer; one more loss stops elections"}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("Assess = %+v, want %+v", r, want)
	}
}
