package agent

import (
	"reflect"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestLongestRunning: etcd leadership is offered to witnesses first, then to
// healthy nodes, longest-running first; a node whose agent has just
// restarted (its etcd member still catching up) comes last among equals;
// a stopped one is left out.
func TestLongestRunning(t *testing.T) {
	t0 := time.Unix(1000, 0)
	snap := ha.Snapshot{Nodes: map[string]ha.NodeStatus{
		"n1": {Name: "n1", Role: ha.RoleActive, Healthy: true, StartedAt: t0},
		"n2": {Name: "n2", Role: ha.RoleStandby, Healthy: true, StartedAt: t0.Add(time.Hour)}, // restarted
		"n3": {Name: "n3", Role: ha.RoleStandby, Healthy: true, StartedAt: t0.Add(time.Minute)},
		"n4": {Name: "n4", Role: ha.RoleStandby, Healthy: false, StartedAt: t0},
		"w1": {Name: "w1", Role: ha.RoleWitness, Healthy: true, StartedAt: t0.Add(2 * time.Hour)},
		"n5": {Name: "n5", Role: ha.RoleStopped, StartedAt: t0},
	}}
	want := []string{"w1", "n1", "n3", "n2", "n4"}
	if got := longestRunning(snap); !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}
