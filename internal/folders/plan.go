package folders

import (
	"sort"
	"time"

	"github.com/haven-ha/haven/internal/api"
)

// Entry is one file as a manifest lists it (the wire type).
type Entry = api.FileEntry

// Same reports whether a and b are the same version of a file: same size
// and modification time (rsync's quick check) and, when both are known,
// the same SHA-256.
func Same(a, b Entry) bool {
	if a.Size != b.Size || a.MTime != b.MTime {
		return false
	}
	return a.SHA256 == "" || b.SHA256 == "" || a.SHA256 == b.SHA256
}

// Local is a file of the active's folder as the sender tracks it.
type Local struct {
	Entry
	// Changed is when the file last changed (its modification time, never
	// later than when it was seen): it is shipped once it has been quiet
	// for the folder's quiet time.
	Changed time.Time
}

// Op is what a step of a plan does.
type Op int

// The steps of a plan.
const (
	OpShip   Op = iota // send the file to the receiver
	OpDelete           // remove the file from the receiver (delete: mirror)
)

// Step is one thing to do on one receiver.
type Step struct {
	Op   Op
	File Local
}

// Lag is how far one receiver is behind the active's folder.
type Lag struct {
	Files      int           // files to ship or delete (quiet or not)
	Bytes      int64         // their bytes
	Oldest     time.Duration // age of the oldest file the receiver lacks (0: none)
	OldestPath string
}

// Plan is the pure decision of what to send to one receiver: the local
// files it lacks (or holds in another version) that have been quiet for
// quiet, oldest first; and the files it holds that are in deleted (gone
// here while this node was active: delete: mirror; nil for keep). A new
// active never deletes what it never had: that is lost, not deleted. It also returns the receiver's lag and, when some differing
// file is not yet quiet, how long until the first one is (0: none).
func Plan(local map[string]Local, peer map[string]Entry, now time.Time, quiet time.Duration, deleted map[string]bool) (steps []Step, lag Lag, wait time.Duration) {
	for p, l := range local {
		if e, ok := peer[p]; ok && Same(l.Entry, e) {
			continue
		}
		lag.Files++
		lag.Bytes += l.Size
		age := max(now.Sub(l.Changed), 0)
		if age > lag.Oldest || (age == lag.Oldest && (lag.OldestPath == "" || p < lag.OldestPath)) {
			lag.Oldest, lag.OldestPath = age, p
		}
		if age >= quiet {
			steps = append(steps, Step{Op: OpShip, File: l})
		} else if w := quiet - age; wait == 0 || w < wait {
			wait = w
		}
	}
	for p, e := range peer {
		if _, ok := local[p]; !ok && deleted[p] {
			lag.Files++
			steps = append(steps, Step{Op: OpDelete, File: Local{Entry: e}})
		}
	}
	sort.Slice(steps, func(i, j int) bool {
		a, b := steps[i], steps[j]
		if a.Op != b.Op {
			return a.Op == OpDelete // deletes are cheap: first
		}
		if !a.File.Changed.Equal(b.File.Changed) {
			return a.File.Changed.Before(b.File.Changed)
		}
		return a.File.Path < b.File.Path
	})
	return steps, lag, wait
}

// Behind reports whether a receiver with lag is behind max_lag: its oldest
// missing file changed more than maxLag ago.
func Behind(lag Lag, maxLag time.Duration) bool {
	return maxLag > 0 && lag.Oldest > maxLag
}

// Lost lists the files of source (what the old active had complete) that
// have lacks: missing, or in another version. It is what a promotion lost
// of the folder (its RPO), sorted by path.
func Lost(source []Entry, have map[string]Entry) []Entry {
	var lost []Entry
	for _, e := range source {
		h, ok := have[e.Path]
		switch {
		case !ok:
			e.Note = "missing"
		case !Same(e, h):
			e.Note = "other version"
		default:
			continue
		}
		lost = append(lost, e)
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].Path < lost[j].Path })
	return lost
}
