package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// TestStatusShowsSessions: nodes that run the session store get a line
// each with their keys and bytes; without one, status says nothing of it.
func TestStatusShowsSessions(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Reporter: "n1", Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6379", Keys: 12, Bytes: 3400, Writable: true}},
		{Name: "n2", Role: ha.RoleStandby, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6380", Keys: 11, Bytes: 3300}},
	}})
	for _, want := range []string{"sessions (Redis protocol):", "n1 on 127.0.0.1:6379: 12 keys, 3400 bytes, takes writes", "n2 on 127.0.0.1:6380: 11 keys, 3300 bytes, read-only copy"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
	out.Reset()
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Nodes: []api.NodeView{{Name: "n1", Role: ha.RoleActive}}})
	if strings.Contains(out.String(), "sessions") {
		t.Fatalf("sessions shown without a session store:\n%s", out.String())
	}
}
