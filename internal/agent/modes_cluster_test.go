package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMemClusterHooksAndPromoteBackoff (moved down from e2e
// TestHooksSeeEpochAndFailedPromoteBacksOff): a service managed by hooks
// only. Hooks see HAVEN_NODE/ROLE/EPOCH; while on_promote fails nobody
// serves and a failed promotion is demoted (on_demote runs) and explained;
// a node's promotions are at least promote_backoff apart; once the hook
// succeeds a node becomes active, and its hook saw its epoch.
func TestMemClusterHooksAndPromoteBackoff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hookLog := filepath.Join(dir, "hooks.log")
	failFlag := filepath.Join(dir, "fail")
	if err := os.WriteFile(failFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const backoff = 2 * time.Second
	extra := fmt.Sprintf(`hooks:
  on_promote:
    command: ["/bin/sh", "-c", "echo $(date +%%s.%%N) promote $HAVEN_NODE $HAVEN_ROLE $HAVEN_EPOCH >> %[1]s; if [ -e %[2]s ]; then echo boom >&2; exit 3; fi"]
    timeout: 5s
  on_demote:
    command: ["/bin/sh", "-c", "echo $(date +%%s.%%N) demote $HAVEN_NODE $HAVEN_ROLE $HAVEN_EPOCH >> %[1]s"]
    timeout: 200ms
  promote_backoff: %[3]s
`, hookLog, failFlag, backoff)
	c := startMemCluster(t, 3, memOpts{api: true, extra: extra})
	lines := func() []string {
		b, _ := os.ReadFile(hookLog)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	count := func(what string) int {
		n := 0
		for _, l := range lines() {
			if f := strings.Fields(l); len(f) > 1 && f[1] == what {
				n++
			}
		}
		return n
	}
	waitFor(t, 20*time.Second, "three failed promotions", func() bool { return count("promote") >= 3 })
	waitFor(t, 10*time.Second, "a node to explain its failed promotion", func() bool {
		for _, n := range c.cfg.Nodes {
			if strings.Contains(c.view(n.Name, n.Name).Why, "promotion failed") {
				return true
			}
		}
		return false
	})
	for name, a := range c.agents {
		if a.Serving() {
			t.Fatalf("%s serves although every promotion fails", name)
		}
	}
	if err := os.Remove(failFlag); err != nil {
		t.Fatal(err)
	}
	active := c.waitActive("")
	epoch := c.store.Leader().Epoch
	if want := fmt.Sprintf(" promote %s active %d", active, epoch); !strings.Contains(strings.Join(lines(), "\n")+"\n", want+"\n") {
		t.Fatalf("hook log lacks %q:\n%s", want, strings.Join(lines(), "\n"))
	}
	if count("demote") == 0 {
		t.Fatalf("no on_demote after a failed promotion:\n%s", strings.Join(lines(), "\n"))
	}
	last := map[string]float64{}
	for _, l := range lines() {
		var ts float64
		var what, node, role string
		var ep int64
		if _, err := fmt.Sscanf(l, "%f %s %s %s %d", &ts, &what, &node, &role, &ep); err != nil || what != "promote" {
			continue
		}
		if prev, ok := last[node]; ok && ts-prev < backoff.Seconds()-0.05 {
			t.Fatalf("%s promoted again %.2fs after a failed promotion; back-off is %s:\n%s", node, ts-prev, backoff, strings.Join(lines(), "\n"))
		}
		last[node] = ts
	}
}

// TestMemClusterColdStandby (moved down from e2e
// TestColdStandbyRunsServiceOnlyOnActive): with standby: cold only the
// active runs the service; when it dies, the new active starts its own
// and the old one's stays stopped.
func TestMemClusterColdStandby(t *testing.T) {
	t.Parallel()
	c := startMemCluster(t, 3, memOpts{api: true, extra: "service: {command: [sleep, '3600'], standby: cold, stop_grace: 1s}\n"})
	onlyActiveRuns := func(active string) func() bool {
		return func() bool {
			for _, n := range c.cfg.Nodes {
				if (n.Name == active) != (c.view(active, n.Name).ServicePID != 0) {
					return false
				}
			}
			return true
		}
	}
	old := c.waitActive("")
	waitFor(t, 10*time.Second, "only the active to run a service", onlyActiveRuns(old))
	c.killService(old)
	next := c.waitActive(old)
	waitFor(t, 10*time.Second, "the old active's service stopped and the new one's running", onlyActiveRuns(next))
}
