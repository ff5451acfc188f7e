package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// memCluster is real agents (every goroutine, the real clock) in this
// process on one in-memory store: what the e2e tests do with processes and
// etcd, in a fraction of the time, for what needs neither.
type memCluster struct {
	t      *testing.T
	cfg    *config.Config
	store  *memstore.Server
	agents map[string]*Agent
	conns  map[string]*memstore.Client
	stop   map[string]context.CancelFunc
	wg     sync.WaitGroup
	api    *memAPI                  // the agents' HTTP APIs, when memOpts.api (memapi_test.go)
	done   map[string]chan struct{} // closed when the node's Run returns
	logs   *syncbuf.Buffer          // the agents' logs, printed if the test fails
	// leadsEtcd stands in for each node's etcd member (memOpts.leadsEtcd).
	leadsEtcd func(node string) bool
}

// memOpts shape a memCluster: extra YAML, node priorities, and which nodes
// start at once (all when empty; the others with start).
type memOpts struct {
	extra string
	prio  map[string]int
	start []string
	api   bool     // serve each agent's HTTP API on a loopback port (memapi_test.go)
	backs []string // nodes with backup: true
	// leadsEtcd, when set, says whether node's (pretend) etcd member leads
	// raft (Agent.SetEtcdLeader).
	leadsEtcd func(node string) bool
}

func startMemCluster(t *testing.T, nodes int, o ...memOpts) *memCluster {
	t.Helper()
	var opt memOpts
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.api {
		opt.extra = memAPIYAML + opt.extra
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: mem\ndata_dir: %s\n%snodes:\n", t.TempDir(), opt.extra)
	apiPort := apiPorts(t, nodes, opt.api)
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		prio := 100
		if p, ok := opt.prio[name]; ok {
			prio = p
		}
		fmt.Fprintf(&b, "  - {name: %s, api: '127.0.0.1:%d', peer: '127.0.0.1:%d', client: '127.0.0.1:%d', backend: '127.0.0.1:%d', priority: %d, backup: %t}\n",
			name, apiPort(i), 2+3*i, 3+3*i, 9000+i, prio, slices.Contains(opt.backs, name))
	}
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "haven.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	c := &memCluster{t: t, cfg: cfg, store: memstore.New(clock.Real{}), agents: map[string]*Agent{},
		conns: map[string]*memstore.Client{}, stop: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}, logs: &syncbuf.Buffer{},
		leadsEtcd: opt.leadsEtcd}
	if opt.api {
		c.api = newMemAPI(c)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agents' logs:\n%s", c.logs.String())
		}
	})
	t.Cleanup(func() {
		for _, cancel := range c.stop {
			cancel()
		}
		c.wg.Wait()
	})
	for _, n := range cfg.Nodes {
		if len(opt.start) == 0 || slices.Contains(opt.start, n.Name) {
			c.start(n.Name)
		}
	}
	return c
}

// start runs node name's agent.
func (c *memCluster) start(name string) {
	c.t.Helper()
	n, _ := c.cfg.NodeByName(name)
	conn := c.store.Client()
	a, err := New(c.cfg, n, conn, clock.Real{}, slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.leadsEtcd != nil {
		a.SetEtcdLeader(func() bool { return c.leadsEtcd(name) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.agents[n.Name], c.conns[n.Name], c.stop[n.Name] = a, conn, cancel
	c.wg.Add(1)
	done := make(chan struct{})
	c.done[n.Name] = done
	go func() { defer c.wg.Done(); defer close(done); _ = a.Run(ctx) }()
	if c.api != nil {
		c.api.serve(n.Name, a)
	}
}

// waitActive waits until exactly one agent serves and the store agrees.
func (c *memCluster) waitActive(not string) string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var serving []string
		for name, a := range c.agents {
			if a.Serving() {
				serving = append(serving, name)
			}
		}
		if len(serving) == 1 && serving[0] != not && c.store.Leader().Node == serving[0] {
			return serving[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	var states []string
	for _, n := range c.cfg.Nodes {
		if a := c.agents[n.Name]; a != nil {
			st := a.State()
			states = append(states, fmt.Sprintf("%s: %s at %d (%s)", n.Name, st.Role, st.Epoch, st.Reason))
		}
	}
	c.t.Fatalf("no single active (other than %q) within 20s; store leader %v; %s", not, c.store.Leader(), strings.Join(states, "; "))
	return ""
}

// waitSeen waits until name's view shows leader as the active.
func (c *memCluster) waitSeen(name, leader string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.agents[name].Snapshot().Leader.Node != leader {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not see %s active within 20s", name, leader)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMemClusterSwitchover: in-process agents elect one active, hand it over
// on request, and a view that a failover made stale gets "stale view,
// retry" instead of an answer about another hand-over.
func TestMemClusterSwitchover(t *testing.T) {
	c := startMemCluster(t, 3)
	first := c.waitActive("")
	var via string
	for name := range c.agents {
		if name != first {
			via = name
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.waitSeen(via, first)
	res, err := c.agents[via].Switchover(ctx, api.SwitchoverRequest{Reason: "test"})
	if err != nil {
		t.Fatalf("switchover through %s: %v", via, err)
	}
	if res.From != first || res.To == first || res.Epoch <= 0 {
		t.Fatalf("switchover result %+v (first active %s)", res, first)
	}
	if l := c.store.Leader(); l != (ha.Leader{Node: res.To, Epoch: res.Epoch}) {
		t.Fatalf("the answer says %s at %d, the store has %v", res.To, res.Epoch, l)
	}
	second := c.waitActive(first)

	// Freeze one standby's view, then fail the active over: that view is
	// stale, and a switchover decided on it must be refused.
	stale := first
	c.waitSeen(stale, second)
	c.conns[stale].SetFault(memstore.Fault{WatchStalled: true})
	old := c.agents[stale].Snapshot().Leader
	c.stop[second]()
	third := c.waitActive(second)
	if c.agents[stale].Snapshot().Leader != old {
		t.Fatal("the stalled watch moved")
	}
	_, err = c.agents[stale].Switchover(ctx, api.SwitchoverRequest{Reason: "stale"})
	if err == nil || !strings.Contains(err.Error(), "stale view, retry") {
		t.Fatalf("switchover on a stale view (%v; active now %s): %v, want \"stale view, retry\"", old, third, err)
	}
	if ha.KindOf(err) != ha.KindConflict {
		t.Fatalf("stale view: kind %v, want conflict (409)", ha.KindOf(err))
	}
}

// TestMemClusterPartitionNeverOverlaps: the active cut off from the store
// stops serving before another node can take over (sampled every ms).
func TestMemClusterPartitionNeverOverlaps(t *testing.T) {
	c := startMemCluster(t, 3)
	first := c.waitActive("")
	c.conns[first].SetFault(memstore.Fault{Partitioned: true})
	defer c.conns[first].SetFault(memstore.Fault{}) // a cut-off agent takes its resign retries to stop
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var serving []string
		for name, a := range c.agents {
			if a.Serving() {
				serving = append(serving, name)
			}
		}
		if len(serving) > 1 {
			t.Fatalf("two nodes serve at once: %v", serving)
		}
		if len(serving) == 1 && serving[0] != first {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no takeover within 20s of cutting %s off", first)
}

// TestMemClusterPreemption (moved down from e2e TestPreemptionAfterDelay):
// with preemption on, a higher-priority node that comes back takes the role
// back through a switchover, not before the delay, and the history says so.
func TestMemClusterPreemption(t *testing.T) {
	const delay = time.Second
	c := startMemCluster(t, 3, memOpts{extra: "preempt: {enabled: true, delay: 1s}\n", prio: map[string]int{"n1": 200}, start: []string{"n2", "n3"}})
	first := c.waitActive("")
	c.start("n1")
	var eligible time.Time
	deadline := time.Now().Add(20 * time.Second)
	for !c.agents["n1"].Serving() {
		if ok, _ := c.agents["n1"].State().Eligible(c.agents["n1"].mcfg, c.agents["n1"].clk.Now()); ok && eligible.IsZero() {
			eligible = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 did not take the role back from %s within 20s", first)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(eligible)
	if eligible.IsZero() || took < delay-50*time.Millisecond {
		t.Fatalf("n1 took the role back %s after becoming eligible; preempt.delay is %s", took, delay)
	}
	if now := c.waitActive(first); now != "n1" {
		t.Fatalf("active is %s", now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var found bool
	for !found && ctx.Err() == nil {
		evs, err := c.agents["n1"].Events(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			found = found || ev.Kind == "switchover" && strings.Contains(ev.Reason, "preemption")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !found {
		t.Fatal("the history lacks the preemption")
	}
}
