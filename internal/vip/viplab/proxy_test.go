package viplab

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/netlab"
)

// proxyLab is a cluster whose VIP follows a healthy proxy: active-active,
// a `haven proxy` beside every agent (standalone, so that it can crash on
// its own), listening on every address, port 8081.
type proxyLab struct {
	*cluster
	proxies map[*node]*exec.Cmd
	done    map[*node]chan struct{}
	logs    map[*node]*lockedBuf
}

func newProxyLab(t *testing.T) *proxyLab {
	c := newClusterWith(t, clusterOpts{
		extra: "mode: active-active\nproxy: {listen: '0.0.0.0:8081', standalone: true, probe_interval: 50ms}",
		vip:   ", follow: proxy",
		node: func(c *cluster, n *node) string {
			host, _, _ := strings.Cut(n.api, ":")
			return fmt.Sprintf(", backend: '%s:8080'", host)
		},
	})
	c.port = "8081"
	l := &proxyLab{cluster: c, proxies: map[*node]*exec.Cmd{}, done: map[*node]chan struct{}{}, logs: map[*node]*lockedBuf{}}
	t.Cleanup(func() {
		for n, cmd := range l.proxies {
			_ = cmd.Process.Kill()
			<-l.done[n]
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
		l.startProxy(n)
	}
	return l
}

func (l *proxyLab) startProxy(n *node) {
	l.t.Helper()
	if l.logs[n] == nil {
		l.logs[n] = &lockedBuf{}
	}
	cmd := netlab.Command(n.ns, havenBin, "proxy", "--config", l.config)
	cmd.Stdout, cmd.Stderr = l.logs[n], l.logs[n]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start proxy on %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	l.proxies[n], l.done[n] = cmd, done
}

func (l *proxyLab) killProxy(n *node) {
	l.t.Helper()
	if err := l.proxies[n].Process.Kill(); err != nil {
		l.t.Fatal(err)
	}
	<-l.done[n]
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
func (l *proxyLab) moved(cl *client, what string, fault time.Time, old *node) *node {
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
	return to
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

// TestVIPFollowsProxy: the VIP follows a node whose proxy is healthy
// (vip.follow: proxy), by an election of its own, while a client pings and
// GETs the VIP (through the proxy) every 20 ms: it moves when the holder's
// proxy crashes, when the holder's agent is killed (kill -9: its kernel
// drops the address when the lifetime runs out) and when the holder's
// cluster link is cut (it fences itself); after each the client reaches
// the VIP through the new holder, its neighbour entry pointing there. A
// sampler looks at every node's addresses every 10 ms: never two holders.
func TestVIPFollowsProxy(t *testing.T) {
	l := newProxyLab(t)
	a, _ := l.holder(60 * time.Second)
	want := "virtual IP " + l.vip.String() + " is on " + a.name
	waitFor(t, 30*time.Second, "haven status to show "+want, func() bool {
		out, _ := runHaven(t, "status", "--config", l.config)
		return strings.Contains(out, want)
	})
	for _, n := range l.nodes {
		want := map[bool]string{true: "haven_vip_held 1", false: "haven_vip_held 0"}[n == a]
		waitFor(t, 10*time.Second, n.name+"'s /metrics to say "+want+" and haven_vip_proxy_healthy 1", func() bool {
			m := l.metrics(n)
			return strings.Contains(m, want) && strings.Contains(m, "haven_vip_proxy_healthy 1")
		})
	}
	cl := l.startClient()
	l.moved(cl, "start", time.Now(), nil)
	s := l.startSamplerWith(true)

	// 1. The holder's proxy crashes: its agent's check fails, it removes
	// the VIP and hands the key back; another node with a healthy proxy
	// wins and adds it.
	fault := time.Now()
	l.killProxy(a)
	b := l.moved(cl, "proxy crash", fault, a)
	l.startProxy(a)

	// 2. kill -9 of the holder's agent: its proxy still runs, but nobody
	// renews the election's lease; the address's lifetime runs out in its
	// kernel before the store lets another node win.
	fault = time.Now()
	b.signal(t, syscall.SIGKILL)
	<-b.done
	c := l.moved(cl, "agent kill -9", fault, b)
	if l.holds(b) {
		t.Fatalf("the killed agent's VIP is still on %s after %s took it", b.name, c.name)
	}
	l.start(b)

	// 3. The holder's cluster link is cut: it cannot renew, fences itself
	// (removes the VIP) before its lease can expire, and another node wins.
	fault = time.Now()
	if err := l.lab.SetLink(c.clusterEnd, false); err != nil {
		t.Fatal(err)
	}
	l.moved(cl, "cluster link cut", fault, c)
	if err := l.lab.SetLink(c.clusterEnd, true); err != nil {
		t.Fatal(err)
	}
	s.check(t)
	waitFor(t, 20*time.Second, "the VIP's adds and removes in `haven events`", func() bool {
		out, err := runHaven(t, "events", "--config", l.config)
		return err == nil && strings.Contains(out, "follows a healthy proxy") && strings.Contains(out, "removed")
	})
}
