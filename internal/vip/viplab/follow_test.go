package viplab

import (
	"net/http"

	"github.com/haven-ha/haven/internal/netlab"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// standbyAgain waits until n is a healthy standby without the VIP.
func (c *cluster) standbyAgain(n *node, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, n.name+" back as a healthy standby without the VIP", func() bool {
		st, err := c.status(n)
		if err != nil {
			return false
		}
		for _, v := range st.Nodes {
			if v.Name == n.name {
				return v.Role == "standby" && v.Healthy && v.VIP == "" && !c.holds(n)
			}
		}
		return false
	})
}

// checkMoved checks what the client saw after a fault: it reached the new
// active through the VIP, its neighbour entry points at it, and no GET was
// answered by another node after the new one first answered.
func (c *cluster) checkMoved(cl *client, what string, fault time.Time, to *node) outage {
	c.t.Helper()
	o := c.waitRecovered(cl, fault, to, 20*time.Second)
	if mac := c.neighbour(); mac != to.mac {
		c.t.Fatalf("%s: the client's neighbour entry for the VIP is %q, want %s's %s", what, mac, to.name, to.mac)
	}
	c.t.Logf("%s: the client reached %s through the VIP %s after the fault; longest time without an answered GET %s; failed pings %d, failed GETs %d",
		what, to.name, o.rto.Round(time.Millisecond), o.gap.Round(time.Millisecond), o.failedPings, o.failedGets)
	return o
}

// TestVIPFollowsActive moves the active role by a service crash, a
// switchover, an agent kill -9 and a cut of the active's client link
// (no carrier on the VIP's interface) while a client in its own namespace
// pings and GETs the VIP; the VIP must follow each time, the client's
// neighbour entry must point at the new active, and a restarted agent must
// remove the copy its killed predecessor left.
func TestVIPFollowsActive(t *testing.T) {
	c := newCluster(t, timings, "")
	a := c.waitActive(60 * time.Second)
	// status exits 1 while redundancy is not yet intact (a standby not yet
	// eligible), and 0 once it is; either way it shows the VIP. On a
	// loaded machine the active may move meanwhile (a check timing out):
	// status and metrics must agree with whichever node serves.
	var out string
	waitFor(t, 30*time.Second, "haven status and /metrics to show the VIP on the active", func() bool {
		cur := c.lookServing(false, nil)
		if cur == nil {
			return false
		}
		a = cur
		out, _ = runHaven(t, "status", "--config", c.config)
		if !strings.Contains(out, "virtual IP "+c.vip.String()+" is on "+a.name) {
			return false
		}
		for _, n := range c.nodes {
			want := map[bool]string{true: "haven_vip_held 1", false: "haven_vip_held 0"}[n == a]
			if m := c.metrics(n); !strings.Contains(m, want) {
				return false
			}
		}
		return c.lookServing(false, nil) == a
	})
	waitFor(t, 10*time.Second, "the VIP's add in `haven events`", func() bool {
		out, err := runHaven(t, "events", "--config", c.config)
		return err == nil && strings.Contains(out, "added") && strings.Contains(out, c.vip.String()+" on eth1")
	})
	cl := c.startClient()
	c.checkMoved(cl, "start", time.Now(), a)

	// 1. The service crashes on the active.
	st, err := c.status(a)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, v := range st.Nodes {
		if v.Name == a.name {
			pid = v.ServicePID
		}
	}
	if pid == 0 {
		t.Fatalf("no service pid for %s", a.name)
	}
	fault := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b := c.waitActive(20*time.Second, a)
	c.checkMoved(cl, "service crash", fault, b)

	// 2. Switchover to the third node.
	var third *node
	for _, n := range c.nodes {
		if n != a && n != b {
			third = n
		}
	}
	c.standbyAgain(third, 20*time.Second)
	fault = time.Now()
	if out, err := runHaven(t, "switchover", "--config", c.config, "--to", third.name, "--reason", "viplab"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	if got := c.waitActive(20 * time.Second); got != third {
		t.Fatalf("switchover made %s active, want %s", got.name, third.name)
	}
	c.checkMoved(cl, "switchover", fault, third)

	// 3. kill -9 of the active agent: nobody is left to remove the address,
	// but its lifetime in the kernel runs out by the fence deadline, its
	// service died with it, and the new active's announcement moves the
	// client.
	c.standbyAgain(b, 20*time.Second)
	fault = time.Now()
	third.signal(t, syscall.SIGKILL)
	<-third.done
	next := c.waitServing(20*time.Second, true, third)
	c.checkMoved(cl, "agent kill -9", fault, next)
	if c.holds(third) {
		t.Fatalf("the killed agent's VIP is still on %s after %s took over", third.name, next.name)
	}
	// A copy left without a lifetime (by hand, or by a crash of an older
	// version) is removed by the agent when it starts.
	if err := netlab.IP("-n", third.ns, "addr", "add", c.vip.String(), "dev", "eth1"); err != nil {
		t.Fatal(err)
	}
	c.start(third)
	c.standbyAgain(third, 30*time.Second)

	// 4. The active's client link loses its carrier (a pulled cable): the
	// VIP cannot reach its clients from there, so the node counts as
	// unhealthy and hands the active role, and the VIP, over.
	fault = time.Now()
	if err := c.lab.SetLink(next.clientEnd, false); err != nil {
		t.Fatal(err)
	}
	other := c.waitActive(20*time.Second, next)
	c.checkMoved(cl, "client link cut", fault, other)
	if err := c.lab.SetLink(next.clientEnd, true); err != nil {
		t.Fatal(err)
	}
	c.standbyAgain(next, 30*time.Second)
}

// look is one look at a node: it answered /lb-check 200 and held the VIP,
// somewhere between from and to.
type look struct {
	node     string
	from, to time.Time
}

// sampler looks at every node every 10 ms: /lb-check over the client
// network, then the addresses on eth1 over netlink in its namespace.
type sampler struct {
	mu   sync.Mutex
	both []look // held the VIP and answered 200
	held []look // held the VIP (answering or not: frozen, killed)
	// spans: each node's runs of consecutive looks that found the VIP,
	// from the end of a run's first look to the start of its last: the
	// node held it throughout (a look of another node 10 ms away from
	// every look of this one still counts, which held's sub-millisecond
	// looks miss). A run of one look spans [its end, its start]: it
	// overlaps only a span that covers the whole look.
	spans []look
	// heldOnly: look at the addresses only (every node answers /lb-check
	// 200 in active-active, so both says nothing there).
	heldOnly bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (c *cluster) startSampler() *sampler { return c.startSamplerWith(false) }

func (c *cluster) startSamplerWith(heldOnly bool) *sampler {
	s := &sampler{stop: make(chan struct{}), heldOnly: heldOnly}
	for _, n := range c.nodes {
		s.wg.Add(1)
		go func(n *node) {
			defer s.wg.Done()
			run := -1 // this node's current run in s.spans
			for {
				select {
				case <-s.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				from := time.Now()
				ok := !s.heldOnly && c.lbCheck(n) == http.StatusOK
				heldFrom := time.Now()
				held := c.holds(n)
				s.record(n.name, &run, from, heldFrom, time.Now(), held, ok)
			}
		}(n)
	}
	c.t.Cleanup(s.close)
	return s
}

// record adds one look at node: the VIP found (held) or not between
// heldFrom and now, /lb-check 200 (ok) between from and heldFrom; run is
// the node's current run of looks that found it in s.spans (-1: none).
func (s *sampler) record(node string, run *int, from, heldFrom, now time.Time, held, ok bool) {
	if !held {
		*run = -1
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = append(s.held, look{node, heldFrom, now})
	if ok {
		s.both = append(s.both, look{node, from, now})
	}
	if *run < 0 {
		s.spans = append(s.spans, look{node, now, heldFrom})
		*run = len(s.spans) - 1
	} else {
		s.spans[*run].to = heldFrom
	}
}

func (s *sampler) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// overlaps returns two looks of different nodes that overlap in time.
func (s *sampler) overlaps(looks []look) (look, look, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range looks {
		for _, b := range looks[i+1:] {
			if a.node != b.node && a.from.Before(b.to) && b.from.Before(a.to) {
				return a, b, true
			}
		}
	}
	return look{}, look{}, false
}

// TestVIPFencedOnPartition cuts the active's cluster link while a sampler
// watches every node's /lb-check and addresses: the isolated active must
// drop the VIP when it fences itself, before the majority promotes, so at
// no moment do two nodes hold it (let alone hold it and answer as active);
// the client is moved to the new active.
func TestVIPFencedOnPartition(t *testing.T) {
	c := newCluster(t, timings, "")
	a := c.waitActive(60 * time.Second)
	cl := c.startClient()
	c.checkMoved(cl, "start", time.Now(), a)
	s := c.startSampler()
	fault := time.Now()
	if err := c.lab.SetLink(a.clusterEnd, false); err != nil {
		t.Fatal(err)
	}
	b := c.waitActive(30*time.Second, a)
	o := c.checkMoved(cl, "cluster link cut", fault, b)
	if o.oldAfterNew > 0 {
		t.Fatalf("cluster link cut: %d GETs answered by another node after %s took over", o.oldAfterNew, b.name)
	}
	if err := c.lab.SetLink(a.clusterEnd, true); err != nil {
		t.Fatal(err)
	}
	c.standbyAgain(a, 30*time.Second)
	s.check(t)
}

// TestVIPFencedOnPause freezes the active past its lease (SIGSTOP) while a
// sampler watches every node: the frozen agent cannot remove the VIP, but
// the address's lifetime in its kernel runs out by its fence deadline, so
// no two nodes ever hold it; the client is moved to the new active, and
// after SIGCONT the old one comes back as a standby without it.
func TestVIPFencedOnPause(t *testing.T) {
	c := newCluster(t, timings, "")
	a := c.waitActive(60 * time.Second)
	cl := c.startClient()
	c.checkMoved(cl, "start", time.Now(), a)
	s := c.startSampler()
	fault := time.Now()
	a.signal(t, syscall.SIGSTOP)
	next := c.waitActive(30*time.Second, a) // strict: a's kernel dropped the VIP by itself
	o := c.checkMoved(cl, "SIGSTOP past the lease", fault, next)
	a.signal(t, syscall.SIGCONT)
	if o.oldAfterNew > 0 {
		t.Fatalf("SIGSTOP: %d GETs answered by another node after %s took over", o.oldAfterNew, next.name)
	}
	c.standbyAgain(a, 30*time.Second)
	s.check(t)
}

// check stops the sampler and fails t if two nodes ever held the VIP at
// the same moment (and, worse, answered as active then too).
func (s *sampler) check(t *testing.T) {
	t.Helper()
	s.close()
	if x, y, ok := s.overlaps(s.both); ok {
		t.Fatalf("split brain: %s held the VIP and answered as active during [%s, %s], %s during [%s, %s]",
			x.node, x.from.Format("15:04:05.000"), x.to.Format("15:04:05.000"), y.node, y.from.Format("15:04:05.000"), y.to.Format("15:04:05.000"))
	}
	for _, looks := range [][]look{s.held, s.spans} {
		if x, y, ok := s.overlaps(looks); ok {
			t.Fatalf("two holders: %s had the VIP during [%s, %s], %s during [%s, %s]",
				x.node, x.from.Format("15:04:05.000"), x.to.Format("15:04:05.000"), y.node, y.from.Format("15:04:05.000"), y.to.Format("15:04:05.000"))
		}
	}
}
