package proxy

import (
	"slices"
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Probe is the proxy's latest answer from one node's /lb-check.
type Probe struct {
	OK bool      // it answered 200
	At time.Time // when the probe was sent (so a late answer is not trusted longer)
}

// Input is everything a routing decision depends on.
type Input struct {
	Mode       ha.Mode     // cluster mode
	Nodes      []string    // nodes that can take traffic (have a backend), in config order
	Snapshot   ha.Snapshot // last view of the store
	Seen       bool        // a snapshot has been received at all
	Fresh      time.Time   // the store view was known current at this time
	LeaseTTL   time.Duration
	Probes     map[string]Probe
	ProbeValid time.Duration // a 200 is trusted this long after it was sent
}

// Decision is the set of nodes to send traffic to, and when to decide again
// if no input changes (zero: not needed).
type Decision struct {
	Targets []string // sorted
	Why     string   // why there is no target, for logs
	Recheck time.Time
}

// Decide picks the targets. In active-passive mode the only candidate is the
// leader in the store; in active-active every node whose record says it is
// active, or healthy. A candidate is a target only while its own /lb-check
// answered 200 recently, and only while the store view is younger than a
// lease: after that the leader's lease could have expired unseen.
func Decide(in Input, now time.Time) Decision {
	if !in.Seen {
		return Decision{Why: "no view of the store yet"}
	}
	storeUntil := in.Fresh.Add(in.LeaseTTL)
	if !now.Before(storeUntil) {
		return Decision{Why: "store view older than a lease; the active may have been fenced"}
	}
	var cands []string
	switch in.Mode {
	case ha.ModeActiveActive:
		for _, n := range in.Nodes {
			rec, ok := in.Snapshot.Nodes[n]
			if ok && (rec.Role == ha.RoleActive || rec.Healthy && rec.Role == ha.RoleStandby) {
				cands = append(cands, n)
			}
		}
	default:
		l := in.Snapshot.Leader.Node
		if l != "" && slices.Contains(in.Nodes, l) {
			cands = append(cands, l)
		}
	}
	if len(cands) == 0 {
		return Decision{Why: "no active node in the store"}
	}
	d := Decision{Recheck: storeUntil}
	for _, n := range cands {
		p, ok := in.Probes[n]
		if !ok || !p.OK {
			continue
		}
		until := p.At.Add(in.ProbeValid)
		if !now.Before(until) {
			continue
		}
		d.Targets = append(d.Targets, n)
		if until.Before(d.Recheck) {
			d.Recheck = until
		}
	}
	if len(d.Targets) == 0 {
		return Decision{Why: "the store's active node does not confirm on /lb-check yet", Recheck: storeUntil}
	}
	sort.Strings(d.Targets)
	return d
}
