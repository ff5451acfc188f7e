package proxy

import "time"

// Quarantine is the routing brain's memory of suspected nodes, a pure core
// with the clock passed in: a node whose request failed is out until a
// probe sent a quarantine after the failure confirms it (its agent may not
// have noticed yet: a failing health check takes fall x interval). The
// quarantine doubles with each strike that follows within a few seconds,
// unless the node answered requests in between (then the strikes start
// over); a node that wins an epoch is trusted again at once (NewLeader).
// The proxy's brain and the simulation (internal/sim) use it.
type Quarantine struct {
	interval time.Duration // ProbeInterval: the first strike's quarantine
	until    map[string]time.Time
	strikes  map[string]int
	last     map[string]time.Time
}

// NewQuarantine is an empty quarantine whose first strike lasts interval.
func NewQuarantine(interval time.Duration) *Quarantine {
	return &Quarantine{interval: interval, until: map[string]time.Time{}, strikes: map[string]int{}, last: map[string]time.Time{}}
}

// NewLeader: node has just won an epoch. It passed its own agent's health
// checks to do so: what the quarantine waits for. A strike from its
// previous term (503s while it demoted) must not hold it back; after
// back-to-back switchovers it held clients for 1.7 s.
func (q *Quarantine) NewLeader(node string) {
	delete(q.until, node)
	q.strikes[node] = 0
}

// Trusted reports whether a probe of node sent at sent that answered ok
// may be believed: a 200 sent too soon after a failure is not.
func (q *Quarantine) Trusted(node string, sent time.Time, ok bool) bool {
	return !(sent.Before(q.until[node]) && ok)
}

// Suspect records at now that a request sent to node at sent failed;
// served is when the latest request node answered was sent. It reports
// whether that is a strike (node is then out until Until(node)): a
// request sent before the node's latest quarantine ended is that
// quarantine's episode, not a new one.
func (q *Quarantine) Suspect(node string, sent, now, served time.Time) bool {
	if sent.Before(q.until[node]) {
		// The request went to the node before its quarantine ended: it
		// was in flight when the node faltered, or raced the decision
		// that took the node out. (A stall of the active's store answers
		// every request in flight with a 503 at once; each counted as a
		// strike, and 30 of them held clients for the 2 s maximum right
		// after a 1 s failover.)
		return false
	}
	if now.Sub(q.last[node]) > 5*time.Second {
		q.strikes[node] = 0
	}
	if !q.until[node].IsZero() && served.After(q.until[node]) {
		// Requests sent after its last quarantine ended were answered:
		// the node came back and served, so this failure is a new
		// episode, not the old one going on. (The sample service answers
		// a request 503 when its agent is slow to confirm the role; under
		// load one in a few hundred did, each a strike that doubled the
		// last, and the only active was out 2 s of every 2.2 for a minute
		// after a failover.) A node that fails every request after each
		// readmission still climbs to the maximum.
		q.strikes[node] = 0
	}
	q.strikes[node]++
	q.last[node] = now
	q.until[node] = now.Add(quarantine(q.interval, q.strikes[node]))
	return true
}

// Until is when node's latest quarantine ends (zero: none).
func (q *Quarantine) Until(node string) time.Time { return q.until[node] }
