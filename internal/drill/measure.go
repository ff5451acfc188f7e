package drill

import (
	"fmt"
	"sort"
	"time"
)

// Outage is the longest stretch in [from, to] during which no client
// request succeeded, measured between consecutive successful answers (the
// first stretch starts at from). For a crash it is the time from the fault
// to the first success; for a fault the old active keeps serving through
// for a while, it is the gap the clients actually saw. It also returns when
// that stretch began.
func Outage(ops []Op, from, to time.Duration) (gap, at time.Duration) {
	var ends []time.Duration
	after := time.Duration(-1) // the first success past to closes the last stretch
	for _, o := range ops {
		if !o.OK || o.End < from {
			continue
		}
		if o.End <= to {
			ends = append(ends, o.End)
		} else if after < 0 || o.End < after {
			after = o.End
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
	if after >= 0 {
		ends = append(ends, after)
	} else {
		ends = append(ends, to) // no success after: the stretch runs to the end
	}
	prev := from
	for _, e := range ends {
		if e-prev > gap {
			gap, at = e-prev, prev
		}
		prev = e
	}
	return gap, at
}

// FirstSuccess is how long after from the first client request succeeded
// (-1: none did): for a failover, when clients were served again, which
// the longest outage (Outage) need not be when a second gap follows.
func FirstSuccess(ops []Op, from time.Duration) time.Duration {
	first := time.Duration(-1)
	for _, o := range ops {
		if o.OK && o.End >= from && (first < 0 || o.End-from < first) {
			first = o.End - from
		}
	}
	return first
}

// Errors counts failed requests that ended in [from, to], by kind.
func Errors(ops []Op, from, to time.Duration) (n int, byKind map[string]int) {
	byKind = map[string]int{}
	for _, o := range ops {
		if !o.OK && o.End >= from && o.Start <= to {
			n++
			byKind[o.Kind]++
		}
	}
	return n, byKind
}

// SplitBrain looks for evidence, in what clients were answered, that two
// nodes acted as active at once:
//
//   - by the nodes' own clock (one machine, one clock): an answer at an
//     older epoch whose role was confirmed only after an answer at a newer
//     epoch had had its role confirmed (each node's agent confirms the role
//     for an answer somewhere between ServedAt and ServedTo), or two nodes
//     answering at the same epoch;
//   - by the clients' clock alone: an answer at an older epoch to a request
//     that started after another request had been answered at a newer one
//     (epochs going backwards as clients see them).
//
// It returns "" when there is none.
func SplitBrain(ops []Op) string {
	var ok []Op
	for _, o := range ops {
		if o.OK && o.Epoch > 0 {
			ok = append(ok, o)
		}
	}
	owner := map[int64]string{}
	first := map[int64]Op{} // per epoch, the answer confirmed earliest (least ServedTo)
	for _, o := range ok {
		if n, seen := owner[o.Epoch]; seen && n != o.Node {
			return fmt.Sprintf("%s and %s both answered as active at epoch %d", n, o.Node, o.Epoch)
		}
		owner[o.Epoch] = o.Node
		if o.ServedTo == 0 {
			continue
		}
		if f, seen := first[o.Epoch]; !seen || o.ServedTo < f.ServedTo {
			first[o.Epoch] = o
		}
	}
	// For each epoch, the earliest confirmation of any newer epoch.
	var epochs []int64
	for e := range first {
		epochs = append(epochs, e)
	}
	sort.Slice(epochs, func(i, j int) bool { return epochs[i] > epochs[j] })
	newer := map[int64]Op{}
	var best Op
	for _, e := range epochs {
		if best.Epoch != 0 {
			newer[e] = best
		}
		if f := first[e]; best.Epoch == 0 || f.ServedTo < best.ServedTo {
			best = f
		}
	}
	for _, o := range ok {
		if n, has := newer[o.Epoch]; has && o.ServedTo != 0 && o.ServedAt > n.ServedTo {
			return fmt.Sprintf("%s answered at epoch %d with its role confirmed after %s, %s after %s had answered at epoch %d (confirmed by %s)",
				o.Node, o.Epoch, fmtT(o.ServedAt), (o.ServedAt - n.ServedTo).Round(time.Microsecond), n.Node, n.Epoch, fmtT(n.ServedTo))
		}
	}
	// Client order: for each op, the highest epoch answered to any request
	// that ended before it started.
	byEnd := append([]Op(nil), ok...)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].End < byEnd[j].End })
	maxUpTo := make([]Op, len(byEnd))
	var m Op
	for i, o := range byEnd {
		if o.Epoch > m.Epoch {
			m = o
		}
		maxUpTo[i] = m
	}
	for _, o := range ok {
		i := sort.Search(len(byEnd), func(i int) bool { return byEnd[i].End >= o.Start }) - 1
		if i >= 0 && maxUpTo[i].Epoch > o.Epoch {
			p := maxUpTo[i]
			return fmt.Sprintf("epoch went backwards: %s answered at epoch %d a request sent at %s, after %s had answered at epoch %d (at %s)",
				o.Node, o.Epoch, fmtT(o.Start), p.Node, p.Epoch, fmtT(p.End))
		}
	}
	return ""
}

func fmtT(d time.Duration) string { return fmt.Sprintf("t=%.3fs", d.Seconds()) }

// Epochs returns the distinct (node, epoch) pairs answered in [from, to],
// in order of first appearance.
func Epochs(ops []Op, from, to time.Duration) []string {
	seen := map[string]bool{}
	var out []string
	sorted := append([]Op(nil), ops...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].End < sorted[j].End })
	for _, o := range sorted {
		if !o.OK || o.Epoch == 0 || o.End < from || o.End > to {
			continue
		}
		k := fmt.Sprintf("%s@%d", o.Node, o.Epoch)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
