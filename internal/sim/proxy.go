package sim

import (
	"time"

	"github.com/haven-ha/haven/internal/proxy"
)

// The proxy (internal/proxy) in front of an active-passive or
// passive-backup cluster, with its own routing decisions: proxy.Decide
// over what it has seen, and proxy.Quarantine for failed requests. What is
// modelled around them is what the proxy's goroutines wait for: its watch
// of the store, a prober per node (every probe_interval, every
// proxy.FastProbeEvery after a kick until a 200, for at most
// hold_timeout), and a client sending a request to the target every 5 to
// 30 ms; a request to a node that does not serve fails (a 503, or no
// answer), which is a suspicion. The proxy itself suffers no faults.
//
// Invariant 9: once a term begins (the proxy's watch shows a new leader),
// and the leader serves, the proxy routes to it within proxyBound, as long
// as it serves; and no quarantine from before the term holds it back (a
// 200 of its /lb-check sent in the term is trusted unless it failed a
// request in the term).

// proxyBound: a probe every FastProbeEvery, one quarantine of one strike
// within the term (a 200 of the previous term still trusted sent a
// request to it before it served), the trips, and slack.
func (w *world) proxyBound() time.Duration {
	return w.proxyCfg.ProbeInterval + 50*time.Millisecond
}

type proxyModel struct {
	w  *world
	in proxy.Input
	q  *proxy.Quarantine

	served    map[string]time.Time // when the latest request each node answered was sent
	struck    map[string]time.Time // when each node's latest strike was counted
	fastUntil map[string]time.Time
	probeGen  map[string]int
	probing   map[string]bool

	seenRev      int64
	watchPending bool
	leaderSince  time.Time // when the proxy saw the current leader's term begin
}

func newProxyModel(w *world) *proxyModel {
	var names []string
	for _, n := range w.nodes {
		names = append(names, n.name)
	}
	pi := w.proxyCfg.ProbeInterval
	p := &proxyModel{
		w: w,
		in: proxy.Input{Mode: w.o.Mode, Nodes: names, LeaseTTL: w.cfg.Timing.LeaseTTL,
			Probes: map[string]proxy.Probe{}, ProbeValid: proxy.ProbeValid(pi)},
		q:         proxy.NewQuarantine(pi),
		served:    map[string]time.Time{},
		struck:    map[string]time.Time{},
		fastUntil: map[string]time.Time{},
		probeGen:  map[string]int{},
		probing:   map[string]bool{},
		seenRev:   -1,
	}
	for _, n := range w.nodes {
		n := n
		w.after(time.Duration(w.rng.Int64N(int64(pi))), nil, func() { p.probe(n, p.probeGen[n.name]) })
	}
	w.after(10*time.Millisecond, nil, p.request)
	return p
}

func (p *proxyModel) latency() time.Duration {
	return time.Duration(100+p.w.rng.IntN(1500)) * time.Microsecond
}

// watchChanged: the proxy's watch delivers the store's latest snapshot.
func (p *proxyModel) watchChanged() {
	if p == nil || p.watchPending || p.w.store.Rev() == p.seenRev {
		return
	}
	p.watchPending = true
	p.w.after(p.latency(), nil, func() {
		p.watchPending = false
		snap := p.w.store.Snapshot()
		p.seenRev = snap.Rev
		old := p.in.Snapshot.Leader
		p.in.Snapshot, p.in.Seen = snap, true
		if snap.Leader != old && snap.Leader.Node != "" {
			p.q.NewLeader(snap.Leader.Node)
			p.leaderSince = p.w.now()
			p.kick(snap.Leader.Node)
		}
		p.watchChanged()
	})
}

func (p *proxyModel) node(name string) *node {
	for _, n := range p.w.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// kick: probe node now, and every FastProbeEvery until a 200, for at most
// hold_timeout.
func (p *proxyModel) kick(name string) {
	p.fastUntil[name] = p.w.now().Add(p.w.proxyCfg.HoldTimeout)
	if p.probing[name] {
		return // the probe in flight reschedules
	}
	p.probeGen[name]++
	p.probe(p.node(name), p.probeGen[name])
}

// probe is one GET of n's /lb-check: 200 if it serves when it arrives.
func (p *proxyModel) probe(n *node, gen int) {
	if gen != p.probeGen[n.name] {
		return
	}
	sent := p.w.now()
	p.probing[n.name] = true
	p.w.after(p.latency(), nil, func() {
		ok := n.serving()
		p.w.after(p.latency(), nil, func() {
			p.probing[n.name] = false
			if p.q.Trusted(n.name, sent, ok) {
				p.in.Probes[n.name] = proxy.Probe{OK: ok, At: sent}
			} else if l := p.in.Snapshot.Leader; l.Node == n.name && p.struck[n.name].Before(p.leaderSince) && sent.After(p.leaderSince) {
				p.w.failf("the proxy did not trust a 200 from %s, which began a term at epoch %d %s before: a quarantine from before that term (last strike %s before it, quarantined until %s)",
					n.name, l.Epoch, p.w.now().Sub(p.leaderSince), p.leaderSince.Sub(p.struck[n.name]), p.q.Until(n.name).Sub(t0))
			}
			wait := p.w.proxyCfg.ProbeInterval
			if !ok && p.w.now().Before(p.fastUntil[n.name]) {
				wait = proxy.FastProbeEvery
			}
			p.probeGen[n.name]++
			gen := p.probeGen[n.name]
			p.w.after(wait, nil, func() { p.probe(n, gen) })
			p.check()
		})
	})
}

// request: the client's next request, to the proxy's target.
func (p *proxyModel) request() {
	defer p.w.after(time.Duration(5+p.w.rng.IntN(26))*time.Millisecond, nil, p.request)
	p.in.Fresh = p.w.now() // the proxy's view is current (no faults between it and the store)
	d := proxy.Decide(p.in, p.w.now())
	p.check()
	if len(d.Targets) == 0 {
		return
	}
	n := p.node(d.Targets[p.w.rng.IntN(len(d.Targets))])
	sent := p.w.now()
	p.w.after(p.latency(), nil, func() {
		ok := n.serving()
		if ok {
			p.served[n.name] = sent
		}
		p.w.after(p.latency(), nil, func() {
			if ok {
				return
			}
			now := p.w.now()
			if p.q.Suspect(n.name, sent, now, p.served[n.name]) {
				p.w.res.ProxyStrikes++
				p.struck[n.name] = now
				p.in.Probes[n.name] = proxy.Probe{OK: false, At: now}
				p.kick(n.name)
			}
		})
	})
}

// check is invariant 9.
func (p *proxyModel) check() {
	w := p.w
	l := p.in.Snapshot.Leader
	if l.None() || w.fail != nil {
		return
	}
	n := p.node(l.Node)
	if n == nil || !n.serving() || n.servingSince.IsZero() || n.servingEpoch != l.Epoch || !n.firstEpisode {
		return
	}
	since := n.servingSince
	if p.leaderSince.After(since) {
		since = p.leaderSince
	}
	if w.now().Sub(since) < w.proxyBound() {
		return
	}
	p.in.Fresh = w.now() // the proxy's view is current (no faults between it and the store)
	for _, t := range proxy.Decide(p.in, w.now()).Targets {
		if t == l.Node {
			return
		}
	}
	w.failf("the proxy does not route to %s, active at epoch %d and serving for %s (the proxy saw its term %s ago): quarantined until %s",
		l.Node, l.Epoch, w.now().Sub(n.servingSince), w.now().Sub(p.leaderSince), p.q.Until(l.Node).Sub(t0))
}
