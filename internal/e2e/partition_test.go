package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/netlab"
)

// netLab puts each node in its own network namespace with two links: a
// cluster network (etcd peers and clients) and a client network (agent API
// and service). Cutting a node's cluster link partitions it from the
// quorum while the test can still watch what it answers to clients. The
// namespaces, bridges and links are a netlab.Lab.
type netLab struct {
	t       testing.TB
	net     *netlab.Lab
	nodes   int
	nsNames []string
	cutEnd  []string // host end of each node's cluster link
	subnet  int
}

func newNetLab(t testing.TB, nodes int) *netLab {
	t.Helper()
	n, err := netlab.New("hv")
	if err != nil {
		t.Fatalf("the partition test needs root to create network namespaces; run ./scripts/test as root (CI does): %v", err)
	}
	t.Cleanup(n.Close)
	l := &netLab{t: t, net: n, nodes: nodes, subnet: n.Octet("10.214")}
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	clusterB := must(n.Bridge(""))
	// The test itself talks to the client network only.
	clientB := must(n.Bridge(fmt.Sprintf("10.214.%d.254/24", l.subnet)))
	for i := 1; i <= nodes; i++ {
		ns := must(n.Namespace())
		l.nsNames = append(l.nsNames, ns)
		l.cutEnd = append(l.cutEnd, must(n.Attach(ns, clusterB, "eth0", l.clusterIP(i)+"/24")))
		must(n.Attach(ns, clientB, "eth1", l.clientIP(i)+"/24"))
	}
	return l
}

func (l *netLab) clusterIP(i int) string { return fmt.Sprintf("10.213.%d.%d", l.subnet, i) }
func (l *netLab) clientIP(i int) string  { return fmt.Sprintf("10.214.%d.%d", l.subnet, i) }

// cut takes node i's cluster link down (both directions); heal brings it up.
func (l *netLab) cut(i int) {
	if err := l.net.SetLink(l.cutEnd[i-1], false); err != nil {
		l.t.Fatal(err)
	}
}

func (l *netLab) heal(i int) {
	if err := l.net.SetLink(l.cutEnd[i-1], true); err != nil {
		l.t.Fatal(err)
	}
}

// newLabCluster is newCluster with every node in its own namespace; top is
// extra top-level YAML.
func newLabCluster(t *testing.T, l *netLab, top ...string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{t: t, Dir: dir, Config: filepath.Join(dir, "haven.yaml")}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: e2e\ndata_dir: %s\n%s\napi: {token: %s}\nlog: {level: debug}\n%s%s\nnodes:\n", filepath.Join(dir, "data"), e2eTimings(), testToken, tlsSection(dir), strings.Join(top, "\n"))
	for i := 1; i <= l.nodes; i++ {
		n := &Node{Name: fmt.Sprintf("n%d", i), API: l.clientIP(i) + ":7400", Service: l.clientIP(i) + ":8080", NS: l.nsNames[i-1]}
		fmt.Fprintf(&b, "  - name: %s\n    api: %s\n    peer: %s:7401\n    client: %s:7402\n    env: {SERVICE_ADDR: %q}\n",
			n.Name, n.API, l.clusterIP(i), l.clusterIP(i), n.Service)
		c.Nodes = append(c.Nodes, n)
	}
	fmt.Fprintf(&b, `service:
  command: [%q, "sample-service"]
  stop_grace: 2s
checks:
  - name: sample
    http: {url: "http://${SERVICE_ADDR}/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 1
`, havenBin)
	if err := os.WriteFile(c.Config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.API, c.HTTP = makeCerts(t, c.Config)
	t.Cleanup(c.stopAll)
	for _, n := range c.Nodes {
		c.Start(n.Name)
	}
	return c
}

// TestPartitionedActiveStopsBeforeMajorityPromotes cuts the active off from
// the etcd quorum (both directions) while a client samples every node's
// /lb-check every 10 ms over the client network: the isolated active must
// stop answering 200 before any other node starts, the majority must
// promote, and after the link heals the old active rejoins as a standby.
func TestPartitionedActiveStopsBeforeMajorityPromotes(t *testing.T) {
	t.Parallel()
	lab := newNetLab(t, 3)
	c := newLabCluster(t, lab)
	old, epoch := c.WaitActive(startTimeout)
	oldIdx := int(old[1] - '0')

	lb := startLBSampler(c)
	defer lb.finish()
	count := lb.count
	e2etest.WaitFor(t, 20*time.Second, "samples of the active", func() bool { return count(old) >= 5 })

	lab.cut(oldIdx)
	next, nextEpoch := c.WaitActive(20*time.Second, old)
	if nextEpoch <= epoch {
		t.Fatalf("epoch did not grow: %d -> %d", epoch, nextEpoch)
	}
	e2etest.WaitFor(t, 20*time.Second, "samples of the new active", func() bool { return count(next) >= 5 })
	// The isolated node is reachable by clients but must not serve.
	if code := c.LBCheck(old); code == http.StatusOK {
		t.Fatalf("isolated %s still answers 200 while %s is active", old, next)
	}
	lab.heal(oldIdx)
	e2etest.WaitFor(t, 30*time.Second, old+" back as a healthy standby", func() bool {
		v, ok := c.NodeView(next, old)
		return ok && v.Role == ha.RoleStandby && v.Healthy
	})
	oks := lb.finish()

	if a, b, found := overlapping(oks); found {
		t.Fatalf("split brain: %s and %s both answered 200 at overlapping moments", a.node, b.node)
	}
	var oldLast, newFirst time.Time
	for _, s := range oks {
		if s.node == old && s.recv.After(oldLast) {
			oldLast = s.recv
		}
		if s.node == next && (newFirst.IsZero() || s.sent.Before(newFirst)) {
			newFirst = s.sent
		}
	}
	t.Logf("isolated %s last served %s before %s first served (epoch %d -> %d)", old, newFirst.Sub(oldLast), next, epoch, nextEpoch)
	if !oldLast.Before(newFirst) {
		t.Fatalf("isolated %s answered 200 after %s started serving", old, next)
	}
}

// TestStoreOutagePolicies loses the whole coordination store (every node's
// cluster link cut: no etcd quorum anywhere) while the agents still reach
// each other over the client network. Default policy: the active stops
// when its lease runs out and nobody promotes. Failsafe: the active keeps
// serving because every peer confirms it is not active. In both, never two
// nodes serve, and the cluster recovers by itself when the store is back.
func TestStoreOutagePolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"demote", "failsafe"} {
		t.Run(policy, func(t *testing.T) {
			lab := newNetLab(t, 3)
			c := newLabCluster(t, lab, "outage_policy: "+policy)
			active, _ := c.WaitActive(startTimeout)
			c.waitHealthy(30 * time.Second)
			for i := 1; i <= 3; i++ {
				lab.cut(i)
			}
			cut := time.Now()
			// Watch for 3 leases (3s each); the demote policy must have
			// stopped the active by lease_ttl − fence_margin = 2.5s.
			servedLate := false
			for time.Since(cut) < 9*time.Second {
				serving := 0
				for _, n := range c.Nodes {
					if c.LBCheck(n.Name) == http.StatusOK {
						serving++
						if n.Name != active {
							t.Fatalf("%s serves during the store outage; only %s was active", n.Name, active)
						}
						if time.Since(cut) > 4*time.Second {
							servedLate = true
						}
					}
				}
				if serving > 1 {
					t.Fatal("two nodes serve during the store outage")
				}
				time.Sleep(20 * time.Millisecond)
			}
			switch policy {
			case "demote":
				if servedLate {
					t.Fatalf("%s still serves 4s into the outage with the demote policy (lease 3s, fence after 2.5s)", active)
				}
			case "failsafe":
				if !servedLate || c.LBCheck(active) != http.StatusOK {
					t.Fatalf("%s stopped serving during the outage although every peer confirmed failsafe", active)
				}
			}
			for i := 1; i <= 3; i++ {
				lab.heal(i)
			}
			c.WaitActive(30 * time.Second)
			c.waitHealthy(30 * time.Second)
		})
	}
}
