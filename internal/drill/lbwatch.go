package drill

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/api"
)

// monitor samples every node's /lb-check; two nodes answering 200 at
// overlapping moments is split brain as a load balancer would see it.
type monitor struct {
	mu      sync.Mutex
	samples []lbSample
	// spans: each node's runs of consecutive periodic samples answered
	// 200, from the answer of a run's first to the send of its last: the
	// node served throughout (two nodes' samples, each a few ms long and
	// 10 ms apart, seldom overlap themselves). A run of one sample spans
	// [its answer, its send]: it overlaps only a span that covers it.
	spans []lbSample
	done  chan struct{}
	wg    sync.WaitGroup
	t0    time.Time
	hc    *api.Client
	nodes []lbNode
	// probe makes LBWatch.Probe's calls: a connection pool of its own, so
	// that the sampling's timeouts (on a paused agent) do not close the
	// connections the probes are to reuse.
	probe *api.Client
}

type lbSample struct {
	node       string
	sent, recv time.Duration
}

// lbNode is a node the monitor samples: its name and its agent's API.
type lbNode struct{ name, api string }

// startMonitor samples every node's /lb-check every 10 ms with hc (whose
// timeout bounds how long an answer may take: keep it short, a 200 says
// the node served somewhere between the request's send and its answer).
func startMonitor(hc *api.Client, nodes []lbNode, t0 time.Time) *monitor {
	m := &monitor{done: make(chan struct{}), t0: t0, hc: hc, nodes: nodes, probe: hc}
	for _, n := range nodes {
		m.wg.Add(1)
		go func(n lbNode) {
			defer m.wg.Done()
			run := -1 // n's current run in m.spans
			for {
				select {
				case <-m.done:
					return
				case <-time.After(10 * time.Millisecond):
				}
				sent, recv, ok := m.sample(m.hc, n)
				m.extend(n.name, &run, sent, recv, ok)
			}
		}(n)
	}
	return m
}

// sample asks n's /lb-check once with hc and records a 200.
func (m *monitor) sample(hc *api.Client, n lbNode) (sent, recv time.Duration, ok bool) {
	sent = time.Since(m.t0)
	ok, _ = hc.LBCheck(context.Background(), n.api)
	recv = time.Since(m.t0)
	if ok {
		m.mu.Lock()
		m.samples = append(m.samples, lbSample{n.name, sent, recv})
		m.mu.Unlock()
	}
	return sent, recv, ok
}

// extend adds a periodic sample of node (sent, answered 200 or not by
// recv) to its current run (run: its index in m.spans, -1 for none).
func (m *monitor) extend(node string, run *int, sent, recv time.Duration, ok bool) {
	if !ok {
		*run = -1
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if *run < 0 {
		m.spans = append(m.spans, lbSample{node, recv, sent})
		*run = len(m.spans) - 1
		return
	}
	m.spans[*run].recv = sent
}

func (m *monitor) stop() {
	select {
	case <-m.done:
		return
	default:
	}
	close(m.done)
	m.wg.Wait()
}

func (m *monitor) overlap() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := append([]lbSample(nil), m.samples...)
	sort.Slice(s, func(i, j int) bool { return s[i].sent < s[j].sent })
	for i, a := range s {
		for _, b := range s[i+1:] {
			if b.sent > a.recv {
				break
			}
			if a.node != b.node {
				return fmt.Sprintf("%s and %s both answered /lb-check 200 at overlapping moments (%s: %s–%s and %s–%s)",
					a.node, b.node, m.t0.Add(b.sent).Format("15:04:05.000"), fmtT(a.sent), fmtT(a.recv), fmtT(b.sent), fmtT(b.recv))
			}
		}
	}
	for i, a := range m.spans {
		for _, b := range m.spans[i+1:] {
			if a.node != b.node && a.sent < b.recv && b.sent < a.recv {
				return fmt.Sprintf("%s and %s both answered every /lb-check 200 through overlapping runs (%s: %s–%s and %s–%s)",
					a.node, b.node, m.t0.Add(max(a.sent, b.sent)).Format("15:04:05.000"), fmtT(a.sent), fmtT(a.recv), fmtT(b.sent), fmtT(b.recv))
			}
		}
	}
	return ""
}

// served counts node's 200 answers.
func (m *monitor) served(node string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.samples {
		if s.node == node {
			n++
		}
	}
	return n
}

// LBWatch samples every node's /lb-check of a sandbox every 10 ms, as a
// load balancer would, until stopped: the evidence that two nodes served
// at once, if they did (Overlap).
type LBWatch struct{ m *monitor }

// WatchLB starts sampling every node's /lb-check.
func (s *Sandbox) WatchLB() *LBWatch {
	var nodes []lbNode
	for _, n := range s.Nodes {
		nodes = append(nodes, lbNode{n.Name, n.API})
	}
	m := startMonitor(s.hc.WithTimeout(lbTimeout), nodes, time.Now())
	m.probe = api.NewClient(api.ClientOptions{Token: sandboxToken, Who: "haven drill", Timeout: lbTimeout, TLS: s.TLS})
	return &LBWatch{m}
}

// lbTimeout bounds a sample: a 200 says the node served somewhere between
// the request's send and its answer, so a slow answer widens the window
// that two nodes' answers are compared over.
const lbTimeout = 200 * time.Millisecond

// Stop stops the sampling (once; later calls do nothing).
func (w *LBWatch) Stop() { w.m.stop() }

// Overlap describes two nodes answering 200 at overlapping moments (their
// requests' send-to-answer windows overlap), "" when none did.
func (w *LBWatch) Overlap() string { return w.m.overlap() }

// Served counts node's 200 answers so far.
func (w *LBWatch) Served(node string) int { return w.m.served(node) }

// Probe asks node's /lb-check n times at once, beside the sampling (on
// connections of its own, kept for the next probes), and records the
// answers as the sampling does; it returns at once. Probes sent to a
// paused agent just before it wakes, on connections it accepted before,
// are answered the moment it does, maybe before it has caught up with
// what happened meanwhile: what a client waiting on it would see.
func (w *LBWatch) Probe(node string, n int) {
	select {
	case <-w.m.done:
		return
	default:
	}
	for _, x := range w.m.nodes {
		if x.name != node {
			continue
		}
		for range n {
			w.m.wg.Add(1)
			go func() {
				defer w.m.wg.Done()
				w.m.sample(w.m.probe, x)
			}()
		}
	}
}

// ServedWithin reports whether node answered 200 to a request sent at or
// after from and answered by to: it served at some moment in [from, to].
func (w *LBWatch) ServedWithin(node string, from, to time.Time) bool {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	f, t := from.Sub(w.m.t0), to.Sub(w.m.t0)
	for _, s := range w.m.samples {
		if s.node == node && s.sent >= f && s.recv <= t {
			return true
		}
	}
	return false
}
