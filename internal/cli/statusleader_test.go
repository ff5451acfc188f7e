package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
)

// TestPrintStatusLeaderUnknown: status from an agent that has not seen the
// store says the active is unknown and why, not "none".
func TestPrintStatusLeaderUnknown(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, api.Status{Cluster: "c", Mode: "active-passive", Reporter: "n1", LeaderUnknown: "this node has not seen the store yet"})
	if !strings.Contains(b.String(), "active unknown (this node has not seen the store yet); as seen by n1") {
		t.Fatalf("status:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, api.Status{Cluster: "c", Mode: "active-passive", Reporter: "n1", LeaderKnown: true})
	if !strings.Contains(b.String(), "active none; as seen by n1") {
		t.Fatalf("status:\n%s", b.String())
	}
}

// TestStatusExitLeaderUnknown: an agent that does not know the leader says
// nothing of whether clients are served: exit 1 (as when no agent
// answers), not 3 (no active), and --active-pid prints no pid.
func TestStatusExitLeaderUnknown(t *testing.T) {
	st := api.Status{LeaderUnknown: "this node has not seen the store yet"}
	if code := statusExit(st, clusterHealth(st)); code != exitFailure {
		t.Fatalf("exit %d with the leader unknown, want %d", code, exitFailure)
	}
	st.LeaderUnknown, st.LeaderKnown = "", true
	if code := statusExit(st, clusterHealth(st)); code != exitNoActive {
		t.Fatalf("exit %d with no leader, want %d", code, exitNoActive)
	}
	var out, errw bytes.Buffer
	if code := activePID(&out, &errw, api.Status{LeaderUnknown: "why"}, "service"); code != exitFailure || out.Len() != 0 || !strings.Contains(errw.String(), "unknown (why)") {
		t.Fatalf("--active-pid with the leader unknown: exit %d, out %q, err %q", code, out.String(), errw.String())
	}
}
