package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// TestWitnessKeepsQuorum runs two service nodes and a witness: killing the
// active agent leaves two of three etcd votes, and the other node takes over.
func TestWitnessKeepsQuorum(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{nodes: 3, witness: "n3"})
	old, epoch := c.WaitActive(startTimeout)
	if old == "n3" {
		t.Fatal("the witness became active")
	}
	waitFor(t, 10*time.Second, "the witness shown as up", func() bool {
		v, ok := c.NodeView(old, "n3")
		return ok && v.Role == "witness" && v.Witness
	})
	c.KillAgent(old)
	next, nextEpoch := c.WaitActive(20*time.Second, old, "n3")
	if nextEpoch <= epoch {
		t.Fatalf("epoch did not grow: %d -> %d", epoch, nextEpoch)
	}
	t.Logf("with a witness: %s@%d -> %s@%d", old, epoch, next, nextEpoch)
}

// TestHooksSeeEpochAndFailedPromoteBacksOff drives an externally managed
// service through hooks. Hooks see HAVEN_ROLE/EPOCH/NODE; while on_promote
// fails nobody serves, a node whose on_promote failed stays ineligible for
// promote_backoff, and once the hook succeeds a node becomes active.
func TestHooksSeeEpochAndFailedPromoteBacksOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hookLog := filepath.Join(dir, "hooks.log")
	failFlag := filepath.Join(dir, "fail")
	if err := os.WriteFile(failFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const backoff = 3 * time.Second
	extra := fmt.Sprintf(`hooks:
  on_promote:
    command: ["/bin/sh", "-c", "echo $(date +%%s.%%N) promote $HAVEN_NODE $HAVEN_ROLE $HAVEN_EPOCH >> %[1]s; if [ -e %[2]s ]; then echo boom >&2; exit 3; fi"]
    timeout: 5s
  on_demote:
    command: ["/bin/sh", "-c", "echo $(date +%%s.%%N) demote $HAVEN_NODE $HAVEN_ROLE $HAVEN_EPOCH >> %[1]s"]
    timeout: 200ms
  promote_backoff: %[3]s
`, hookLog, failFlag, backoff)
	c := newCluster(t, clusterOpts{extra: extra})
	waitFor(t, startTimeout, "three failed promotions", func() bool {
		return countPrefix(readLinesIfAny(hookLog), "promote") >= 3
	})
	waitFor(t, 10*time.Second, "a node to explain its failed promotion", func() bool {
		st, err := waitStatus(c)
		if err != nil {
			return false
		}
		for _, n := range st.Nodes {
			if strings.Contains(n.Why, "promotion failed") {
				return true
			}
		}
		return false
	})
	for _, n := range c.Nodes {
		if code := c.LBCheck(n.Name); code == 200 {
			t.Fatalf("%s serves although every promotion fails", n.Name)
		}
	}
	if err := os.Remove(failFlag); err != nil {
		t.Fatal(err)
	}
	active, epoch := waitActiveByStatus(t, c, 30*time.Second)
	lines := readLines(t, hookLog)
	if want := fmt.Sprintf(" promote %s active %d", active, epoch); !anyHasSuffix(lines, want) {
		t.Fatalf("hook log lacks %q:\n%s", want, strings.Join(lines, "\n"))
	}
	if countPrefix(lines, "demote") == 0 {
		t.Fatalf("no on_demote after a failed promotion:\n%s", strings.Join(lines, "\n"))
	}
	// Back-off: a node's promotions are at least promote_backoff apart.
	last := map[string]float64{}
	for _, l := range lines {
		var ts float64
		var what, node, role string
		var ep int64
		if _, err := fmt.Sscanf(l, "%f %s %s %s %d", &ts, &what, &node, &role, &ep); err != nil || what != "promote" {
			continue
		}
		if prev, ok := last[node]; ok && ts-prev < backoff.Seconds()-0.05 {
			t.Fatalf("%s promoted again %.2fs after a failed promotion; back-off is %s:\n%s", node, ts-prev, backoff, strings.Join(lines, "\n"))
		}
		last[node] = ts
	}
}

func waitStatus(c *Cluster) (api.Status, error) {
	var err error
	for _, n := range c.Nodes {
		var st api.Status
		if st, err = c.Status(n.Name); err == nil {
			return st, nil
		}
	}
	return api.Status{}, err
}

func readLinesIfAny(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// countPrefix counts hook log lines whose second field is what.
func countPrefix(lines []string, what string) int {
	n := 0
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 1 && f[1] == what {
			n++
		}
	}
	return n
}

func anyHasSuffix(lines []string, s string) bool {
	for _, l := range lines {
		if strings.HasSuffix(l, s) {
			return true
		}
	}
	return false
}

// TestColdStandbyRunsServiceOnlyOnActive checks that a cold standby starts
// its service on promotion and stops it on demotion.
func TestColdStandbyRunsServiceOnlyOnActive(t *testing.T) {
	t.Parallel()
	extra := fmt.Sprintf(`service:
  command: [%q, "sample-service"]
  standby: cold
  stop_grace: 2s
checks:
  - name: sample
    http: {url: "http://${SERVICE_ADDR}/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
`, havenBin)
	c := newCluster(t, clusterOpts{extra: extra})
	old, _ := c.WaitActive(startTimeout)
	waitFor(t, 10*time.Second, "only the active to run a service", func() bool {
		st, err := c.Status(old)
		if err != nil {
			return false
		}
		for _, n := range st.Nodes {
			if (n.Name == old) != (n.ServicePID != 0) {
				return false
			}
		}
		return true
	})
	v, _ := c.NodeView(old, old)
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next, _ := c.WaitActive(20*time.Second, old)
	waitFor(t, 10*time.Second, "the old active's service stopped and the new one's running", func() bool {
		st, err := c.Status(next)
		if err != nil {
			return false
		}
		for _, n := range st.Nodes {
			if (n.Name == next) != (n.ServicePID != 0) {
				return false
			}
		}
		return true
	})
}

// TestDemoStartsAndStopsCleanly runs `haven demo`, waits for it to report a
// running cluster, stops it with SIGTERM and checks no process is left.
func TestDemoStartsAndStopsCleanly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := freeDemoBase(t)
	cmd := exec.Command(havenBin, "demo", "--dir", dir, "--port", fmt.Sprint(base))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, ended := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen strings.Builder
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			seen.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "Role changes appear below") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-ended:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("demo exited before the cluster came up:\n%s", seen.String())
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("demo did not come up:\n%s", seen.String())
	}
	// The demo runs with TLS, its certificates in its folder; the curl
	// lines it prints work as printed.
	demoAPI, _ := operatorClients(t, config.TLSFiles{CA: filepath.Join(dir, "certs", "ca.crt"), Cert: filepath.Join(dir, "certs", "operator.crt"), Key: filepath.Join(dir, "certs", "operator.key")})
	st, err := demoAPI.Status(context.Background(), fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	printed := seen.String()
	mu.Unlock()
	curls := 0
	for _, line := range strings.Split(printed, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		line, _, _ = strings.Cut(line, "#")
		curls++
		out, err := exec.Command("sh", "-c", line+" --silent --show-error --max-time 10 -o /dev/null -w '%{http_code}'").CombinedOutput()
		if code := strings.TrimSpace(string(out)); err != nil || (code != "200" && code != "503") {
			t.Errorf("the demo's line %q fails: %v\n%s", line, err, out)
		}
	}
	if curls < 4 {
		t.Errorf("the demo printed %d curl lines, want at least 4:\n%s", curls, printed)
	}
	var pids []int
	for _, n := range st.Nodes {
		pids = append(pids, n.AgentPID, n.ServicePID)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("demo did not stop within 30s of SIGTERM")
	}
	waitFor(t, 10*time.Second, "every demo process gone", func() bool {
		for _, p := range pids {
			if pidAlive(p) && !isZombie(p) {
				return false
			}
		}
		return true
	})
	if _, err := os.Stat(filepath.Join(dir, "haven.yaml")); err != nil {
		t.Fatalf("demo did not leave its config in --dir: %v", err)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitActiveByStatus(t *testing.T, c *Cluster, d time.Duration) (string, ha.Epoch) {
	t.Helper()
	var name string
	var epoch ha.Epoch
	waitFor(t, d, "an active node in status", func() bool {
		for _, n := range c.Nodes {
			st, err := c.Status(n.Name)
			if err != nil {
				continue
			}
			for _, v := range st.Nodes {
				if v.Role == ha.RoleActive {
					name, epoch = v.Name, v.Epoch
					return true
				}
			}
		}
		return false
	})
	return name, epoch
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// freeDemoBase finds a base port whose demo block (base+1..3, +101..103,
// +201..203, +301..303, +400) is free right now.
func freeDemoBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + ((os.Getpid()+try*37)%400)*100
		free := true
		for _, off := range []int{1, 2, 3, 101, 102, 103, 201, 202, 203, 301, 302, 303, 400} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free block of ports for the demo")
	return 0
}
