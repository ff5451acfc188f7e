package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// TestStatusShowsSite: the table has a SITE column, "-" for a node
// without one, and the site may hold spaces.
func TestStatusShowsSite(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Reporter: "n1", Leader: ha.Leader{Node: "n1", Epoch: 5}, Nodes: []api.NodeView{
		{Name: "n1", Site: "Paris 2", Role: ha.RoleActive, Healthy: true, Epoch: 5},
		{Name: "n2", Role: ha.RoleDown, Why: "no agent seen in the store"},
	}})
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 5 {
		t.Fatalf("status:\n%s", out.String())
	}
	head, n1, n2 := lines[2], lines[3], lines[4]
	col := strings.Index(head, "SITE")
	if !strings.HasPrefix(head, "NODE") || col < 0 || !strings.HasPrefix(n1[col:], "Paris 2 ") || !strings.HasPrefix(n2[col:], "- ") {
		t.Fatalf("no SITE column with Paris 2 for n1 and - for n2:\n%s", out.String())
	}
}

// TestStatusShowsContainment: each node's containment is listed under the
// table; a node without a supervised service is left out.
func TestStatusShowsContainment(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Reporter: "n1", Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Containment: "cgroup /sys/fs/cgroup/haven-c-n1-0123abcd.service"},
		{Name: "n2", Role: ha.RoleStandby, Containment: "process-group (no cgroup: permission denied)"},
		{Name: "n3", Role: ha.RoleStandby},
	}})
	s := out.String()
	for _, want := range []string{"service containment", "  n1: cgroup /sys/fs/cgroup/haven-c-n1-0123abcd.service\n", "  n2: process-group (no cgroup: permission denied)\n"} {
		if !strings.Contains(s, want) {
			t.Fatalf("status lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "  n3:") {
		t.Fatalf("n3 has no service but is listed:\n%s", s)
	}
}

// TestStatusShowsHeldBy: a standby held back only by a switchover intent
// says which one, and that it is available once the intent is over
// (operator.Available counts it so, before its record catches up).
func TestStatusShowsHeldBy(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Reporter: "n1", Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Healthy: true, Epoch: 5},
		{Name: "n2", Role: ha.RoleStandby, Healthy: true, Why: "switchover to n3 in progress", HeldBy: "sw7"},
		{Name: "n3", Role: ha.RoleStandby, Healthy: true, Eligible: true, Why: "healthy and ready to take over"},
	}})
	s := out.String()
	if !strings.Contains(s, "switchover to n3 in progress (held back only by switchover sw7: available once it is over)") {
		t.Fatalf("n2's line does not name the intent that holds it back:\n%s", s)
	}
	if strings.Count(s, "held back") != 1 {
		t.Fatalf("a node not held back says it is:\n%s", s)
	}
}
