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
	"github.com/haven-ha/haven/internal/e2e/e2etest"
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
	e2etest.WaitFor(t, 10*time.Second, "the witness shown as up", func() bool {
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
	e2etest.WaitFor(t, 10*time.Second, "every demo process gone", func() bool {
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
