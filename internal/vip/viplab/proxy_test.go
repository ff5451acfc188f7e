package viplab

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/syncbuf"
	"github.com/haven-ha/haven/internal/testbin"
)

// proxyLab is a cluster whose VIP follows a healthy proxy: active-active,
// a proxy on every node listening on every address, port 8081: either a
// `haven proxy` beside every agent (standalone, so that it can crash on its
// own), or the agents' own.
type proxyLab struct {
	*cluster
	standalone bool
	proxies    map[*node]*harness.Proc
	logs       map[*node]*syncbuf.Buffer
}

func newProxyLab(t *testing.T, standalone bool) *proxyLab {
	return newProxyLabWith(t, standalone, "")
}

// newProxyLabWith is newProxyLab with more top-level YAML.
func newProxyLabWith(t *testing.T, standalone bool, extra string) *proxyLab {
	c := newClusterWith(t, clusterOpts{
		extra: fmt.Sprintf("mode: active-active\nproxy: {listen: '0.0.0.0:8081', standalone: %t, probe_interval: 50ms}", standalone) + extra,
		vip:   ", follow: proxy",
		node: func(c *cluster, n *node) string {
			host, _, _ := strings.Cut(n.api, ":")
			return fmt.Sprintf(", backend: '%s:8080'", host)
		},
	})
	c.port = "8081"
	l := &proxyLab{cluster: c, standalone: standalone, proxies: map[*node]*harness.Proc{}, logs: map[*node]*syncbuf.Buffer{}}
	t.Cleanup(func() {
		for _, p := range l.proxies {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
		if t.Failed() {
			for n, b := range l.logs {
				s := b.String()
				if len(s) > 4000 {
					s = s[len(s)-4000:]
				}
				t.Logf("---- proxy on %s ----\n%s", n.name, s)
			}
		}
	})
	for _, n := range c.nodes {
		if standalone {
			l.startProxy(n)
		}
	}
	return l
}

func (l *proxyLab) startProxy(n *node) {
	l.t.Helper()
	if l.logs[n] == nil {
		l.logs[n] = &syncbuf.Buffer{}
	}
	p, err := harness.Start(n.ns, l.logs[n], havenBin, "proxy", "--config", l.config)
	if err != nil {
		l.t.Fatalf("start proxy on %s: %v", n.name, err)
	}
	l.proxies[n] = p
}

func (l *proxyLab) killProxy(n *node) {
	l.t.Helper()
	if err := l.proxies[n].Signal(syscall.SIGKILL); err != nil {
		l.t.Fatal(err)
	}
	<-l.proxies[n].Done()
	delete(l.proxies, n)
}

// holder waits until exactly one node (not in exclude) has the VIP, for
// 300 ms in a row, and no other node has it; it returns the node and when
// it was first seen so.
func (l *proxyLab) holder(d time.Duration, exclude ...*node) (*node, time.Time) {
	l.t.Helper()
	var seen *node
	var since time.Time
	waitFor(l.t, d, "one node holding the VIP for 300ms", func() bool {
		var h *node
		for _, n := range l.nodes {
			if l.holds(n) {
				if h != nil {
					h = nil
					break
				}
				h = n
			}
		}
		for _, x := range exclude {
			if h == x {
				h = nil
			}
		}
		if h == nil {
			seen = nil
			return false
		}
		if h != seen {
			seen, since = h, time.Now()
		}
		return time.Since(since) >= 300*time.Millisecond
	})
	return seen, since
}

// moved waits until another node than old holds the VIP, the client's
// neighbour entry points at it, and the client has pinged and got an
// answer through the VIP since; it logs what the client saw from the
// fault on.
func (l *proxyLab) moved(cl *client, what string, fault time.Time, old *node) (*node, time.Duration) {
	l.t.Helper()
	to, at := l.holder(30*time.Second, old)
	waitFor(l.t, 20*time.Second, what+": the client reaching the VIP through "+to.name, func() bool {
		if l.neighbour() != to.mac {
			return false
		}
		for _, p := range cl.since(at) {
			if p.pingOK && p.getOK {
				return true
			}
		}
		return false
	})
	from := "nobody"
	if old != nil {
		from = old.name
	}
	s := summarize(cl.since(fault), fault)
	l.t.Logf("%s: the VIP moved from %s to %s %s after the fault; the client saw %d failed pings and %d failed GETs of %d probes, at most %s without an answered GET",
		what, from, to.name, at.Sub(fault).Round(time.Millisecond), s.failedPings, s.failedGets, s.probes, s.gap.Round(time.Millisecond))
	return to, at.Sub(fault)
}

// seen is what the client saw in a run of probes.
type seen struct {
	probes, failedPings, failedGets int
	gap                             time.Duration // the longest time without an answered GET
}

// summarize counts the probes ps, which start at from.
func summarize(ps []probe, from time.Time) seen {
	var s seen
	last := from
	for _, p := range ps {
		s.probes++
		if !p.pingOK {
			s.failedPings++
		}
		if !p.getOK {
			s.failedGets++
			continue
		}
		s.gap = max(s.gap, p.getEnd.Sub(last))
		last = p.getEnd
	}
	return s
}

// waitExit waits for n's agent to exit; if it does not, its goroutines go
// to its log (SIGQUIT) and the test fails.
func (l *proxyLab) waitExit(n *node, d time.Duration) {
	l.t.Helper()
	select {
	case <-n.done:
		return
	case <-time.After(d):
	}
	_ = n.proc.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
	}
	testbin.Stuck(l.t, n.name, n.log.String())
	l.t.Fatalf("agent %s did not exit within %s", n.name, d)
}

// begin waits for the first holder and checks what status and metrics
// show; then it starts the client and the sampler.
func (l *proxyLab) begin() (*node, *client, *sampler) {
	t := l.t
	a, _ := l.holder(60 * time.Second)
	want := "virtual IP " + l.vip.String() + " is on " + a.name
	var out string
	for end := time.Now().Add(30 * time.Second); !strings.Contains(out, want); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("haven status does not show %q after 30s:\n%s", want, out)
		}
		out, _ = runHaven(t, "status", "--config", l.config)
	}
	for _, n := range l.nodes {
		want := map[bool]string{true: "haven_vip_held 1", false: "haven_vip_held 0"}[n == a]
		waitFor(t, 10*time.Second, n.name+"'s /metrics to say "+want+" and haven_vip_proxy_healthy 1", func() bool {
			m := l.metrics(n)
			return strings.Contains(m, want) && strings.Contains(m, "haven_vip_proxy_healthy 1")
		})
	}
	cl := l.startClient()
	_, _ = l.moved(cl, "start", time.Now(), nil)
	return a, cl, l.startSamplerWith(true)
}

// TestVIPFollowsProxy: the VIP follows a node whose proxy is healthy
// (vip.follow: proxy), by an election of its own, while a client pings and
// GETs the VIP (through the proxy) every 20 ms: it moves when the holder's
// proxy (`haven proxy`, standalone) crashes, when the holder's cluster
// link is cut (it fences itself) and when its client link is cut (the
// VIP's interface has no carrier); after each the client reaches the VIP
// through the new holder, its neighbour entry pointing there. A sampler
// looks at every node's addresses every 10 ms: never two holders.
func TestVIPFollowsProxy(t *testing.T) {
	t.Parallel()
	l := newProxyLab(t, true)
	a, cl, s := l.begin()

	// 1. The holder's proxy crashes: its agent's check fails, it removes
	// the VIP and hands the key back; another node with a healthy proxy
	// wins and adds it.
	fault := time.Now()
	l.killProxy(a)
	b, _ := l.moved(cl, "proxy crash", fault, a)
	l.startProxy(a)

	// 2. The holder's cluster link is cut: it cannot renew, fences itself
	// (removes the VIP) before its lease can expire, and another node wins.
	fault = time.Now()
	if err := l.lab.SetLink(b.clusterEnd, false); err != nil {
		t.Fatal(err)
	}
	c, _ := l.moved(cl, "cluster link cut", fault, b)
	if err := l.lab.SetLink(b.clusterEnd, true); err != nil {
		t.Fatal(err)
	}

	// 3. The holder's client link is cut (the VIP's interface loses its
	// carrier): its proxy still answers on loopback, but the node is
	// unfit to hold the VIP; it hands it over as on a proxy crash.
	fault = time.Now()
	if err := l.lab.SetLink(c.clientEnd, false); err != nil {
		t.Fatal(err)
	}
	_, _ = l.moved(cl, "client link cut", fault, c)
	if err := l.lab.SetLink(c.clientEnd, true); err != nil {
		t.Fatal(err)
	}
	s.check(t)
	waitFor(t, 20*time.Second, "the VIP's adds and removes in `haven events`", func() bool {
		out, err := runHaven(t, "events", "--config", l.config)
		return err == nil && strings.Contains(out, "follows a healthy proxy") && strings.Contains(out, "removed")
	})
}

// TestVIPFollowsAgentProxy: the same with the agents' own proxies (proxy:
// without standalone): kill -9 of the holder's agent takes its proxy with
// it, and its kernel drops the address when the lifetime runs out, before
// the store lets another node win; a holder whose agent stops (SIGTERM)
// hands the VIP over at once.
func TestVIPFollowsAgentProxy(t *testing.T) {
	t.Parallel()
	l := newProxyLab(t, false)
	a, cl, s := l.begin()

	fault := time.Now()
	a.signal(t, syscall.SIGKILL)
	l.waitExit(a, 20*time.Second)
	b, _ := l.moved(cl, "agent kill -9", fault, a)
	if l.holds(a) {
		t.Fatalf("the killed agent's VIP is still on %s after %s took it", a.name, b.name)
	}
	l.start(a)

	fault = time.Now()
	b.signal(t, syscall.SIGTERM)
	if _, took := l.moved(cl, "agent stopped (SIGTERM)", fault, b); took >= 3*time.Second {
		t.Fatalf("a stopping holder took %s to hand the VIP over: as long as the lease (3s), so the key was not handed back", took.Round(time.Millisecond))
	}
	l.waitExit(b, 20*time.Second)
	l.start(b)
	s.check(t)
}
