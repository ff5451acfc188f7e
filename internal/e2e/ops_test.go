package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// waitHealthy waits until every non-witness node is up and healthy.
func (c *Cluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, "every node healthy", func() bool {
		st, err := waitStatus(c)
		if err != nil {
			return false
		}
		for _, n := range st.Nodes {
			if !n.Witness && (!n.Healthy || n.Role == ha.RoleDown || n.Role == ha.RoleStarting) {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) role(name string) ha.Role {
	v, _ := c.NodeView(name, name)
	return v.Role
}

// TestSwitchoverIsPlannedAndRecorded switches over while clients read the
// active's service through /lb-check routing: the command reports the new
// active, the held traffic, and the history records it.
func TestSwitchoverIsPlannedAndRecorded(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	old, epoch := c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	var target string
	for _, n := range c.Nodes {
		if n.Name != old {
			target = n.Name
			break
		}
	}
	code, out, errOut := runHaven(t, "switchover", "--config", c.Config, "--to", target, "--reason", "test")
	if code != 0 {
		t.Fatalf("switchover: exit %d: %s", code, errOut)
	}
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "from "+old+" to "+target) || !strings.Contains(out, "traffic held") {
		t.Fatalf("switchover output: %s", out)
	}
	now, nowEpoch := c.WaitActive(5 * time.Second)
	if now != target || nowEpoch <= epoch {
		t.Fatalf("after switchover: %s@%d, want %s above epoch %d", now, nowEpoch, target, epoch)
	}
	waitFor(t, 10*time.Second, old+" back as a healthy standby", func() bool { return c.role(old) == ha.RoleStandby })

	// The history is written asynchronously: wait for the entry.
	waitFor(t, 10*time.Second, "the switchover in `haven events`", func() bool {
		code, out, _ = runHaven(t, "events", "--config", c.Config)
		return code == 0 && strings.Contains(out, "switchover") && strings.Contains(out, old+" -> "+target)
	})

	// Refusals, each with the reason and no change of the active.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "nope"}, "no node \"nope\""},
		{[]string{"--to", target}, "already active"},
	} {
		code, _, errOut := runHaven(t, append([]string{"switchover", "--config", c.Config}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("switchover %v: exit %d, stderr %q; want a refusal with %q", tc.args, code, errOut, tc.want)
		}
	}
	if now, _ := c.WaitActive(5 * time.Second); now != target {
		t.Fatalf("a refused switchover moved the active role to %s", now)
	}
}

// TestOperatorCallsNeedToken: no or a wrong token gets 401 and changes
// nothing; calls are written to the audit log.
func TestOperatorCallsNeedToken(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	active, _ := c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	for _, tok := range []string{"", "Bearer wrong-token-xxxxxxxxxxxxx", "Basic abc"} {
		req, _ := http.NewRequest(http.MethodPost, c.URL(active)+"/v1/switchover", strings.NewReader(`{}`))
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: HTTP %d, want 401", tok, resp.StatusCode)
		}
	}
	// Malformed body with a good token: 400, no side effect.
	req, _ := http.NewRequest(http.MethodPost, c.URL(active)+"/v1/switchover", strings.NewReader(`{"to": 3`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed body: HTTP %d, want 400", resp.StatusCode)
	}
	if now, _ := c.WaitActive(5 * time.Second); now != active {
		t.Fatalf("a refused call moved the active role to %s", now)
	}
	audit, err := os.ReadFile(filepath.Join(c.Dir, "data", active, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(audit), `"status":401`); n != 3 {
		t.Errorf("audit log has %d 401 entries, want 3:\n%s", n, audit)
	}
}

func TestMaintenanceMovesAndExcludes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	active, _ := c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	code, out, errOut := runHaven(t, "maintenance", "--config", c.Config, "on", active)
	if code != 0 {
		t.Fatalf("maintenance on the active: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "switched over from "+active) {
		t.Fatalf("maintenance on the active did not switch over first: %s", out)
	}
	next, _ := c.WaitActive(5*time.Second, active)
	waitFor(t, 10*time.Second, active+" shown in maintenance", func() bool {
		v, ok := c.NodeView(next, active)
		return ok && v.Role == ha.RoleMaintenance && !v.Eligible && strings.Contains(v.Why, "maintenance")
	})
	// Kill the new active's service: the node in maintenance must not take over.
	v, _ := c.NodeView(next, next)
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	third, _ := c.WaitActive(10*time.Second, next)
	if third == active {
		t.Fatalf("%s took over while in maintenance", active)
	}
	code, _, errOut = runHaven(t, "maintenance", "--config", c.Config, "off", active)
	if code != 0 {
		t.Fatalf("maintenance off: exit %d: %s", code, errOut)
	}
	waitFor(t, 10*time.Second, active+" back to standby", func() bool { return c.role(active) == ha.RoleStandby })
}

// TestPassiveBackupPromotesOnlyOnRequest: backups never promote on their
// own; `haven promote` does, refused while the primary is healthy.
func TestPassiveBackupPromotesOnlyOnRequest(t *testing.T) {
	t.Parallel()
	extra := fmt.Sprintf(`service:
  command: [%q, "sample-service"]
checks:
  - name: sample
    http: {url: "http://${SERVICE_ADDR}/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
`, havenBin)
	c := newCluster(t, clusterOpts{extra: extra, mode: "passive-backup", backups: []string{"n2", "n3"}})
	primary, _ := c.WaitActive(startTimeout)
	if primary != "n1" {
		t.Fatalf("%s became active; only the primary n1 may promote on its own", primary)
	}
	c.waitHealthy(30 * time.Second)
	if v, _ := c.NodeView("n1", "n2"); v.Role != ha.RoleBackup {
		t.Fatalf("n2 shown as %q, want backup", v.Role)
	}
	code, _, errOut := runHaven(t, "promote", "--config", c.Config, "n2")
	if code == 0 || !strings.Contains(errOut, "healthy") {
		t.Fatalf("promote while the primary is healthy: exit %d, %q; want a refusal", code, errOut)
	}
	c.KillAgent("n1")
	// Longer than the lease (3s) plus revocation: nobody may promote.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range []string{"n2", "n3"} {
			if c.LBCheck(n) == http.StatusOK {
				t.Fatalf("backup %s promoted itself", n)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, out, errOut := runHaven(t, "promote", "--config", c.Config, "n3")
	if code != 0 {
		t.Fatalf("promote n3: exit %d: %s", code, errOut)
	}
	t.Log(strings.TrimSpace(out))
	if now, _ := c.WaitActive(5*time.Second, "n1"); now != "n3" {
		t.Fatalf("active is %s after promote n3", now)
	}
	code, _, errOut = runHaven(t, "promote", "--config", c.Config, "--force", "n2")
	if code != 0 {
		t.Fatalf("promote --force n2: exit %d: %s", code, errOut)
	}
	if now, _ := c.WaitActive(5*time.Second, "n1"); now != "n2" {
		t.Fatalf("active is %s after promote --force n2", now)
	}
}

// TestActiveActiveEveryHealthyNodeServes: each healthy node answers 200;
// a node whose service dies stops, the others keep serving.
func TestActiveActiveEveryHealthyNodeServes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{mode: "active-active"})
	waitFor(t, startTimeout, "every node serving", func() bool {
		for _, n := range c.Nodes {
			if c.LBCheck(n.Name) != http.StatusOK {
				return false
			}
		}
		return true
	})
	v, _ := c.NodeView("n2", "n2")
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n2 out of rotation", func() bool { return c.LBCheck("n2") != http.StatusOK })
	for _, n := range []string{"n1", "n3"} {
		if c.LBCheck(n) != http.StatusOK {
			t.Fatalf("%s stopped serving when n2's service died", n)
		}
	}
	waitFor(t, 20*time.Second, "n2 back in rotation", func() bool { return c.LBCheck("n2") == http.StatusOK })
}

// TestServiceControl stops and starts a standby's service, and refuses to
// stop the active's without --force.
func TestServiceControl(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	active, _ := c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	var standby string
	for _, n := range c.Nodes {
		if n.Name != active {
			standby = n.Name
			break
		}
	}
	code, _, errOut := runHaven(t, "service", "stop", "--config", c.Config, standby)
	if code != 0 {
		t.Fatalf("service stop %s: exit %d: %s", standby, code, errOut)
	}
	v, _ := c.NodeView(active, standby)
	waitFor(t, 5*time.Second, standby+" stopped and ineligible", func() bool {
		v, _ = c.NodeView(active, standby)
		return v.ServicePID == 0 && !v.Eligible && strings.Contains(v.Health, "stopped by")
	})
	code, _, errOut = runHaven(t, "service", "stop", "--config", c.Config, active)
	if code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("service stop on the active: exit %d, %q; want a refusal naming --force", code, errOut)
	}
	code, _, errOut = runHaven(t, "service", "start", "--config", c.Config, standby)
	if code != 0 {
		t.Fatalf("service start: exit %d: %s", code, errOut)
	}
	waitFor(t, 10*time.Second, standby+" healthy again", func() bool {
		v, _ := c.NodeView(active, standby)
		return v.Healthy && v.Eligible && v.ServicePID != 0
	})
	code, out, errOut := runHaven(t, "service", "restart", "--config", c.Config, "--force", active)
	if code != 0 {
		t.Fatalf("service restart --force on the active: exit %d: %s", code, errOut)
	}
	if now, _ := c.WaitActive(5*time.Second, active); now == active {
		t.Fatalf("the active was restarted without switching over first: %s", out)
	}
}

// TestSwitchoverUnderLoadNoFailedReads reads from whichever node /lb-check
// names active, from 8 goroutines, across a switchover; a read fails only if
// no node served it within the hold window. Zero failures expected.
func TestSwitchoverUnderLoadNoFailedReads(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A client with a tiny load balancer: try the nodes until one
				// serves, holding for at most 2s.
				served := false
				for deadline := time.Now().Add(2 * time.Second); !served && time.Now().Before(deadline); {
					for _, n := range c.Nodes {
						resp, err := client.Get("http://" + n.Service + "/")
						if err != nil {
							continue
						}
						var buf bytes.Buffer
						_, _ = buf.ReadFrom(resp.Body)
						resp.Body.Close()
						var r struct{ Role ha.Role }
						if resp.StatusCode == http.StatusOK && json.Unmarshal(buf.Bytes(), &r) == nil && r.Role == ha.RoleActive {
							served = true
							break
						}
					}
				}
				if served {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	waitFor(t, 5*time.Second, "some reads", func() bool { return ok.Load() > 50 })
	code, out, errOut := runHaven(t, "switchover", "--config", c.Config)
	before := ok.Load()
	waitFor(t, 5*time.Second, "reads after the switchover", func() bool { return ok.Load() > before+50 })
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("switchover: exit %d: %s", code, errOut)
	}
	t.Logf("%s; reads ok %d, failed %d", strings.TrimSpace(out), ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d reads failed across the switchover", failed.Load())
	}
}

// TestRedirectToActive: a user who reaches any agent at a redirect path is
// sent (307) to the active node's backend, path and query kept; after a
// failover, to the new active.
func TestRedirectToActive(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{top: "redirect: {paths: [/app/]}"})
	active, _ := c.WaitActive(startTimeout)
	noFollow := &http.Client{Timeout: time.Second, Transport: c.HTTP.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	check := func(want string) {
		t.Helper()
		waitFor(t, 5*time.Second, "every agent to redirect /app/ to "+want, func() bool {
			for _, n := range c.Nodes {
				resp, err := noFollow.Get(c.URL(n.Name) + "/app/page?x=1")
				if err != nil {
					return false
				}
				resp.Body.Close()
				loc := resp.Header.Get("Location")
				if resp.StatusCode != http.StatusTemporaryRedirect || loc != "http://"+c.Node(want).Service+"/app/page?x=1" {
					return false
				}
			}
			return true
		})
	}
	check(active)
	v, _ := c.NodeView(active, active)
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next, _ := c.WaitActive(10*time.Second, active)
	check(next)
}
