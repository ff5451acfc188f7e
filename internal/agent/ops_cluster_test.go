package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// The operator scenarios that were e2e tests (internal/e2e/ops_test.go,
// status_test.go) run here on in-process agents over their real HTTP API
// on memstore: the same calls the CLI makes (api.Client), the same
// assertions, a fraction of the time. The CLI's own part (flags, output)
// is tested against a recorded agent in internal/cli.

// memService is a supervised service for the operator tests: a process
// whose pid the test can kill, restarted like the e2e sample service.
const memService = "service: {command: [sleep, '3600'], stop_grace: 1s, restart: always, restart_delay: 100ms}\n"

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// other is a node of c that is not name.
func (c *memCluster) other(name string) string {
	for _, n := range c.cfg.Nodes {
		if n.Name != name && !n.Witness {
			return n.Name
		}
	}
	c.t.Fatalf("no node other than %s", name)
	return ""
}

func (c *memCluster) killService(name string) {
	c.t.Helper()
	pid := c.agents[name].ServicePID()
	if pid == 0 {
		c.t.Fatalf("%s runs no service", name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
}

// TestMemClusterMaintenance (moved down from e2e
// TestMaintenanceMovesAndExcludes): maintenance on the active switches over
// first; a node in maintenance is shown so and never takes over, not even
// when the new active's service dies; off brings it back as a standby.
func TestMemClusterMaintenance(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: memService})
	ctx := opCtx(t)
	active := c.waitActive("")
	c.waitHealthy(active)
	res, err := c.api.client.Maintenance(ctx, c.addr("n1"), api.MaintenanceRequest{Node: active, On: true})
	if err != nil {
		t.Fatalf("maintenance on the active: %v", err)
	}
	if res.Switchover == nil || res.Switchover.From != active {
		t.Fatalf("maintenance on the active did not switch over first: %+v", res)
	}
	next := c.waitActive(active)
	waitFor(t, 10*time.Second, active+" shown in maintenance", func() bool {
		v := c.view(next, active)
		return v.Role == ha.RoleMaintenance && !v.Eligible && strings.Contains(v.Why, "maintenance")
	})
	// The new active's service dies: the node in maintenance must not take over.
	c.killService(next)
	if third := c.waitActive(next); third == active {
		t.Fatalf("%s took over while in maintenance", active)
	}
	if _, err := c.api.client.Maintenance(ctx, c.addr("n1"), api.MaintenanceRequest{Node: active, On: false}); err != nil {
		t.Fatalf("maintenance off: %v", err)
	}
	waitFor(t, 10*time.Second, active+" back to standby", func() bool { return c.view(active, active).Role == ha.RoleStandby })
}

// TestMemClusterServiceControl (moved down from e2e TestServiceControl):
// a standby's service stops and starts on request; the active's is not
// stopped without force, and restarted with force only after a switchover.
func TestMemClusterServiceControl(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: memService})
	ctx := opCtx(t)
	active := c.waitActive("")
	c.waitHealthy(active)
	standby := c.other(active)
	if _, err := c.api.client.Service(ctx, c.addr(standby), api.ServiceRequest{Action: "stop"}); err != nil {
		t.Fatalf("service stop %s: %v", standby, err)
	}
	waitFor(t, 5*time.Second, standby+" stopped and ineligible", func() bool {
		v := c.view(active, standby)
		return v.ServicePID == 0 && !v.Eligible && strings.Contains(v.Health, "stopped by")
	})
	_, err := c.api.client.Service(ctx, c.addr(active), api.ServiceRequest{Action: "stop"})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("service stop on the active: %v; want a refusal naming --force", err)
	}
	if ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("service stop on the active: kind %v, want conflict (409)", ha.KindOf(err))
	}
	if _, err := c.api.client.Service(ctx, c.addr(standby), api.ServiceRequest{Action: "start"}); err != nil {
		t.Fatalf("service start: %v", err)
	}
	waitFor(t, 10*time.Second, standby+" healthy again", func() bool {
		v := c.view(active, standby)
		return v.Healthy && v.Eligible && v.ServicePID != 0
	})
	res, err := c.api.client.Service(ctx, c.addr(active), api.ServiceRequest{Action: "restart", Force: true})
	if err != nil {
		t.Fatalf("service restart --force on the active: %v", err)
	}
	if now := c.waitActive(active); now == active || res.Switchover == nil {
		t.Fatalf("the active was restarted without switching over first: %+v", res)
	}
}

// TestMemClusterPassiveBackup (moved down from e2e
// TestPassiveBackupPromotesOnlyOnRequest): backups never promote on their
// own, not even when the primary is gone for longer than its lease;
// promote does, refused while the primary is healthy, and --force moves
// the role from one backup to another.
func TestMemClusterPassiveBackup(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: "mode: passive-backup\n" + memService, backs: []string{"n2", "n3"}})
	ctx := opCtx(t)
	if primary := c.waitActive(""); primary != "n1" {
		t.Fatalf("%s became active; only the primary n1 may promote on its own", primary)
	}
	c.waitHealthy("n1")
	if v := c.view("n1", "n2"); v.Role != ha.RoleBackup {
		t.Fatalf("n2 shown as %q, want backup", v.Role)
	}
	_, err := c.api.client.Promote(ctx, c.addr("n1"), api.PromoteRequest{Node: "n2"})
	if err == nil || !strings.Contains(err.Error(), "healthy") {
		t.Fatalf("promote while the primary is healthy: %v; want a refusal", err)
	}
	c.kill("n1")
	// Longer than the lease plus its expiry: nobody may promote.
	lease := c.cfg.Timing.LeaseTTL
	for deadline := time.Now().Add(2*lease + time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, n := range []string{"n2", "n3"} {
			if c.agents[n].Serving() {
				t.Fatalf("backup %s promoted itself", n)
			}
		}
	}
	if c.store.Leader().Node != "" {
		t.Fatalf("the store still has a leader %v after the primary's lease", c.store.Leader())
	}
	if _, err := c.api.client.Promote(ctx, c.addr("n2"), api.PromoteRequest{Node: "n3"}); err != nil {
		t.Fatalf("promote n3: %v", err)
	}
	if now := c.waitActive("n1"); now != "n3" {
		t.Fatalf("active is %s after promote n3", now)
	}
	if _, err := c.api.client.Promote(ctx, c.addr("n2"), api.PromoteRequest{Node: "n2", Force: true}); err != nil {
		t.Fatalf("promote --force n2: %v", err)
	}
	if now := c.waitActive("n1"); now != "n2" {
		t.Fatalf("active is %s after promote --force n2", now)
	}
}

// TestMemClusterActiveActive (moved down from e2e
// TestActiveActiveEveryHealthyNodeServes): every healthy node answers 200;
// a node whose service dies leaves the rotation, the others stay in it,
// and it comes back when its service is restarted.
func TestMemClusterActiveActive(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: "mode: active-active\n" + memService})
	all := func() bool { return c.lbCheck("n1") && c.lbCheck("n2") && c.lbCheck("n3") }
	waitFor(t, 20*time.Second, "every node serving", all)
	c.killService("n2")
	waitFor(t, 5*time.Second, "n2 out of rotation", func() bool { return !c.lbCheck("n2") })
	for _, n := range []string{"n1", "n3"} {
		if !c.lbCheck(n) {
			t.Fatalf("%s stopped serving when n2's service died", n)
		}
	}
	waitFor(t, 20*time.Second, "n2 back in rotation", all)
}

// TestMemClusterGracefulStop (moved down from e2e
// TestGracefulStopHandsOverWithoutLeaseWait): a stopping active resigns,
// so a standby takes over well before its lease could have run out, and
// the others show it down.
func TestMemClusterGracefulStop(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: memService})
	old := c.waitActive("")
	epoch := c.store.Leader().Epoch
	waitFor(t, 20*time.Second, "a healthy standby", func() bool {
		for _, n := range c.cfg.Nodes {
			if n.Name != old && c.view(old, n.Name).Eligible {
				return true
			}
		}
		return false
	})
	start := time.Now()
	c.api.close(old)
	c.stop[old]()
	next := c.waitActive(old)
	took := time.Since(start)
	if l := c.store.Leader(); l.Epoch <= epoch {
		t.Fatalf("epoch did not grow: %d -> %v", epoch, l)
	}
	// Without the resign the key goes with the session, lease_ttl after
	// the last renewal: at least lease_ttl − renew_interval from now.
	if lease := c.cfg.Timing.LeaseTTL; took >= lease/2 {
		t.Fatalf("takeover took %s (lease %s): the stopping active did not resign", took, lease)
	}
	select {
	case <-c.done[old]:
	case <-time.After(15 * time.Second):
		t.Fatal("the stopped agent did not return")
	}
	waitFor(t, 10*time.Second, old+" shown down", func() bool {
		v := c.view(next, old)
		return v.Role == ha.RoleDown || v.Role == ha.RoleStopped
	})
}

// TestMemClusterOperatorCallsNeedToken (moved down from e2e
// TestOperatorCallsNeedToken): no or a wrong token gets 401, a malformed
// body 400, neither changes the active, and the refusals are audited.
func TestMemClusterOperatorCallsNeedToken(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true})
	active := c.waitActive("")
	url := c.api.client.BaseURL(c.addr(active)) + "/v1/switchover"
	post := func(tok, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tok := range []string{"", "Bearer wrong-token-xxxxxxxxxxxxx", "Basic abc"} {
		if code := post(tok, `{}`); code != http.StatusUnauthorized {
			t.Errorf("token %q: HTTP %d, want 401", tok, code)
		}
	}
	if code := post("Bearer "+memToken, `{"to": 3`); code != http.StatusBadRequest {
		t.Errorf("malformed body: HTTP %d, want 400", code)
	}
	if now := c.waitActive(""); now != active {
		t.Fatalf("a refused call moved the active role to %s", now)
	}
	audit, err := os.ReadFile(filepath.Join(c.cfg.DataDir, active, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var n401 int
	for _, line := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var e api.AuditEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.Status == http.StatusUnauthorized {
			n401++
		}
	}
	if n401 != 3 {
		t.Errorf("audit log has %d 401 entries, want 3:\n%s", n401, audit)
	}
}

// TestMemClusterRedirect (moved down from e2e TestRedirectToActive): a
// user who reaches any agent at a redirect path is sent (307) to the
// active node's backend, path and query kept; after a failover, to the new
// active's.
func TestMemClusterRedirect(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: "redirect: {paths: [/app/]}\n" + memService})
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	redirectsTo := func(active string) func() bool {
		n, _ := c.cfg.NodeByName(active)
		want := "http://" + n.Backend + "/app/page?x=1"
		return func() bool {
			for _, m := range c.cfg.Nodes {
				resp, err := noFollow.Get(c.api.client.BaseURL(m.API) + "/app/page?x=1")
				if err != nil {
					return false
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
					return false
				}
			}
			return true
		}
	}
	active := c.waitActive("")
	waitFor(t, 5*time.Second, "every agent to redirect /app/ to "+active, redirectsTo(active))
	c.killService(active)
	next := c.waitActive(active)
	waitFor(t, 5*time.Second, "every agent to redirect /app/ to "+next, redirectsTo(next))
}
