package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
)

// waitHealthy waits until every non-witness node is up and healthy.
func (c *Cluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	e2etest.WaitFor(c.t, d, "every node healthy", func() bool {
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
	e2etest.WaitFor(t, 10*time.Second, old+" back as a healthy standby", func() bool { return c.role(old) == ha.RoleStandby })

	// The history is written asynchronously: wait for the entry.
	e2etest.WaitFor(t, 10*time.Second, "the switchover in `haven events`", func() bool {
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
	e2etest.WaitFor(t, 5*time.Second, "some reads", func() bool { return ok.Load() > 50 })
	code, out, errOut := runHaven(t, "switchover", "--config", c.Config)
	before := ok.Load()
	e2etest.WaitFor(t, 5*time.Second, "reads after the switchover", func() bool { return ok.Load() > before+50 })
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
