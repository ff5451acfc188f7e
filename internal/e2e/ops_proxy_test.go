package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

// TestSwitchoverThroughProxyZeroErrors runs planned switchovers while 8
// clients GET through a real haven proxy: no client may see an error, and
// each switchover reports how long traffic was held.
func TestSwitchoverThroughProxyZeroErrors(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	c.WaitActive(startTimeout)
	c.waitHealthy(30 * time.Second)
	p := c.startProxy(t, "proxy", "")
	e2etest.WaitFor(t, 20*time.Second, "the proxy to serve", func() bool { code, _, err := getNode(p.Addr); return err == nil && code == 200 })
	l := startLoad(p.Addr, 8)
	defer func() { close(l.stop); l.wg.Wait() }()
	for i := range 3 {
		before, _ := c.WaitActive(10 * time.Second)
		c.waitHealthy(30 * time.Second)
		code, out, errOut := runHaven(t, "switchover", "--config", c.Config)
		if code != 0 {
			t.Fatalf("switchover %d: exit %d: %s", i+1, code, errOut)
		}
		t.Logf("switchover %d: %s", i+1, strings.TrimSpace(out))
		after, _ := c.WaitActive(10 * time.Second)
		if after == before {
			t.Fatalf("switchover %d left %s active", i+1, before)
		}
		n := l.count(after)
		e2etest.WaitFor(t, 10*time.Second, "clients served by "+after, func() bool { return l.count(after) > n+20 })
	}
	if errs := l.errors(); len(errs) > 0 {
		t.Fatalf("%d client errors across the switchovers, first: %s", len(errs), errs[0])
	}
}

// TestActiveActiveThroughProxy balances 8 clients over every node; a node
// whose service crashes drops out with no client-visible error, and comes
// back into rotation.
func TestActiveActiveThroughProxy(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{mode: "active-active"})
	c.waitHealthy(startTimeout)
	p := c.startProxy(t, "proxy", "")
	e2etest.WaitFor(t, 20*time.Second, "the proxy to serve", func() bool { code, _, err := getNode(p.Addr); return err == nil && code == 200 })
	l := startLoad(p.Addr, 8)
	defer func() { close(l.stop); l.wg.Wait() }()
	e2etest.WaitFor(t, 20*time.Second, "every node serving clients", func() bool {
		return l.count("n1") > 20 && l.count("n2") > 20 && l.count("n3") > 20
	})
	v, _ := c.NodeView("n2", "n2")
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	base := l.count("n2") // at most the 8 requests in flight land after this
	e2etest.WaitFor(t, 20*time.Second, "n2 back in rotation", func() bool { return l.count("n2") > base+20 })
	if errs := l.errors(); len(errs) > 0 {
		t.Fatalf("%d client errors with a node of three leaving and returning, first: %s", len(errs), errs[0])
	}
}
