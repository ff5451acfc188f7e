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
