package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
)

// TestStatusJSONTableAndMetrics checks the shapes scripts and Prometheus
// rely on: `haven status --json`, the table, and /metrics on the active.
func TestStatusJSONTableAndMetrics(t *testing.T) {
	t.Parallel()
	sites := map[string]string{"n1": "dc1", "n2": "dc2"} // n3 has none
	c := newCluster(t, clusterOpts{sites: sites})
	active, epoch := c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)

	// status exits 0 once redundancy is intact too (every standby
	// eligible, every etcd member answering), which may follow health by
	// a moment.
	code, out, errOut := runHaven(t, "status", "--config", c.Config, "--json")
	for end := time.Now().Add(30 * time.Second); code != 0 && time.Now().Before(end); {
		time.Sleep(200 * time.Millisecond)
		code, out, errOut = runHaven(t, "status", "--config", c.Config, "--json")
	}
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s%s", code, out, errOut)
	}
	var doc struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if len(doc.Nodes) != 3 {
		t.Fatalf("want 3 nodes, got %d", len(doc.Nodes))
	}
	actives := 0
	for _, n := range doc.Nodes {
		for _, k := range []string{"name", "role", "healthy", "epoch", "agent_pid", "service_pid", "api"} {
			if _, ok := n[k]; !ok {
				t.Errorf("node entry lacks %q: %v", k, n)
			}
		}
		if site, _ := n["site"].(string); site != sites[n["name"].(string)] {
			t.Errorf("%v has site %q, want %q", n["name"], site, sites[n["name"].(string)])
		}
		if n["role"] == "active" {
			actives++
			if n["name"] != active || int64(n["epoch"].(float64)) != int64(epoch) {
				t.Errorf("active entry %v, want %s at epoch %d", n, active, epoch)
			}
		} else if n["role"] != "standby" {
			t.Errorf("unexpected role %v", n["role"])
		}
		if api, _ := n["api"].(string); !strings.HasPrefix(api, "https://127.0.0.1:") {
			t.Errorf("api %q is not a base URL", api)
		}
	}
	if actives != 1 {
		t.Fatalf("%d active nodes in status", actives)
	}

	code, out, _ = runHaven(t, "status", "--config", c.Config)
	if code != 0 || !strings.Contains(out, "NODE") || !strings.Contains(out, active) || !strings.Contains(out, "healthy and ready to take over") {
		t.Fatalf("status table (exit %d):\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		want, ok := map[string]string{"NODE": "SITE", "n1": "dc1", "n2": "dc2", "n3": "-"}[f[0]]
		if ok && f[1] != want {
			t.Errorf("status table: %s's second column is %q, want %q:\n%s", f[0], f[1], want, out)
		}
	}

	body, err := c.API.Metrics(context.Background(), c.Node(active).API)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`haven_role{role="active"} 1`, `haven_serving 1`, "haven_epoch ", "haven_lease_renewal_seconds_bucket", `haven_check_up{check="sample"} 1`, "haven_failovers_total ", "haven_elections_total ", "haven_build_info{", "haven_lease_remaining_seconds ", "haven_store_reachable 1", "haven_cluster_degraded "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestGracefulStopHandsOverWithoutLeaseWait stops the active with SIGTERM:
// it resigns, so a standby takes over well before the lease (3s) could
// have expired.
func TestGracefulStopHandsOverWithoutLeaseWait(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	old, epoch := c.WaitActive(startTimeout)
	e2etest.WaitFor(t, 20*time.Second, "a healthy standby", func() bool {
		st, err := c.Status(old)
		if err != nil {
			return false
		}
		for _, n := range st.Nodes {
			if n.Name != old && n.Eligible {
				return true
			}
		}
		return false
	})
	start := time.Now()
	c.Signal(old, syscall.SIGTERM)
	next, nextEpoch := c.WaitActive(10*time.Second, old)
	took := time.Since(start)
	t.Logf("graceful stop of %s: %s active at epoch %d after %s", old, next, nextEpoch, took)
	if nextEpoch <= epoch {
		t.Fatalf("epoch did not grow: %d -> %d", epoch, nextEpoch)
	}
	// The lease is 3s; takeover by lease expiry cannot happen before that.
	if took >= 3*time.Second {
		t.Fatalf("takeover took %s: the stopping active did not resign", took)
	}
	select {
	case <-c.Node(old).done:
	case <-time.After(15 * time.Second):
		t.Fatal("the stopped agent did not exit")
	}
	v, ok := c.NodeView(next, old)
	if !ok || (v.Role != ha.RoleDown && v.Role != ha.RoleStopped) {
		t.Fatalf("stopped node shown as %+v", v)
	}
}
