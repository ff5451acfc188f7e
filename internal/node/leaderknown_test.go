package node

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// leaderAnswer is what /status or /v1/role says of the leader, read as a
// script reads it (raw JSON keys), with the Known-Leader header.
type leaderAnswer struct {
	header  string
	known   any // leader_known: true, false, or nil when absent
	why     string
	leader  string // the leader's name
	decoded bool
}

func (c *handlerCluster) leaderOf(node, path string) leaderAnswer {
	c.t.Helper()
	w := c.do(node, "GET", path, httpToken)
	if w.Code != http.StatusOK {
		c.t.Fatalf("%s %s: %d %s", node, path, w.Code, w.Body)
	}
	var raw map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		c.t.Fatalf("%s %s: %v", node, path, err)
	}
	why, _ := raw["leader_unknown"].(string)
	leader, _ := raw["leader"].(string) // /v1/role: a name
	if l, ok := raw["leader"].(map[string]any); ok {
		leader, _ = l["node"].(string) // /status: {node, epoch}
	}
	a := leaderAnswer{header: w.Header().Get(api.KnownLeaderHeader), known: raw["leader_known"], why: why, leader: leader}
	// The one client reads the same answer the same way.
	if path == "/status" {
		var st api.Status
		a.decoded = json.Unmarshal(w.Body.Bytes(), &st) == nil && st.LeaderKnown == (a.known == true) && st.LeaderIsUnknown() == (a.known == false) && st.LeaderUnknown == why
	} else {
		var v api.RoleView
		a.decoded = json.Unmarshal(w.Body.Bytes(), &v) == nil && v.LeaderKnown == (a.known == true) && v.LeaderIsUnknown() == (a.known == false) && v.LeaderUnknown == why
	}
	return a
}

// TestHTTPHandlerLeaderUnknown: an agent that has not seen the store yet
// (it starts its service before it connects), or that has not reached it
// for longer than the lease, says on /status and /v1/role that it does not
// know the leader (leader_known false, the leader empty, why, and the
// X-Haven-Known-Leader header), not that nobody is active: a script took
// that "none" for "nobody is active" and started an empty master (data
// loss in the Redis recipe).
func TestHTTPHandlerLeaderUnknown(t *testing.T) {
	t.Parallel()
	c := newHandlerCluster(t, "timings: {lease_ttl: 2s, fence_margin: 500ms}\n")
	for _, path := range []string{"/status", "/v1/role"} {
		a := c.leaderOf("n2", path)
		if a.known != false || a.leader != "" || a.header != "false" || !strings.Contains(a.why, "not seen the store") || !a.decoded {
			t.Fatalf("%s before the agent has seen the store: %+v, want leader_known false, no leader, why, header false", path, a)
		}
	}

	c.run()
	var active string
	waitFor(t, 30*time.Second, "an active that n1 and n2 both know", func() bool {
		for _, n := range []string{"n1", "n2"} {
			a := c.leaderOf(n, "/status")
			if a.known != true || a.leader == "" {
				return false
			}
			active = a.leader
		}
		return true
	})
	standby := map[string]string{"n1": "n2", "n2": "n1"}[active]
	if m := c.do(standby, "GET", "/metrics", httpToken).Body.String(); !strings.Contains(m, "\nhaven_leader_known 1\n") {
		t.Fatalf("/metrics of standby %s lacks haven_leader_known 1", standby)
	}
	for _, path := range []string{"/status", "/v1/role"} {
		a := c.leaderOf(standby, path)
		if a.known != true || a.leader != active || a.header != "true" || a.why != "" || !a.decoded {
			t.Fatalf("%s of standby %s with a view of the store: %+v, want leader_known true, the leader, header true", path, standby, a)
		}
	}

	// The standby is cut off from the store: beyond the lease (2 s) it can
	// no longer tell; the store may have elected another active since.
	c.conns[standby].SetFault(memstore.Fault{Partitioned: true, WatchStalled: true})
	waitFor(t, 30*time.Second, "the cut-off standby to say it does not know the leader", func() bool {
		a := c.leaderOf(standby, "/status")
		return a.known == false && a.leader == "" && strings.Contains(a.why, "not reached the store")
	})
	if a := c.leaderOf(standby, "/v1/role"); a.known != false || a.leader != "" || a.header != "false" {
		t.Fatalf("/v1/role of the cut-off standby: %+v, want leader_known false, no leader", a)
	}
	if m := c.do(standby, "GET", "/metrics", httpToken).Body.String(); !strings.Contains(m, "\nhaven_leader_known 0\n") {
		t.Fatalf("/metrics of the cut-off standby lacks haven_leader_known 0")
	}
	c.conns[standby].SetFault(memstore.Fault{})
	waitFor(t, 30*time.Second, "the standby to know the leader again once it reaches the store", func() bool {
		return c.leaderOf(standby, "/status").known == true
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
