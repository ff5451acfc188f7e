package cli

import (
	"os"
	"runtime/debug"
)

// daemonGCPercent is the GOGC of the long-running commands (agent,
// witness) unless GOGC is set: an idle agent's live heap is a few MiB, and
// Go's default of 100 lets the heap grow to twice that between
// collections. 50 cut an idle embedded-etcd agent's RSS by about 5 MiB
// (51 → 46 MiB) with no CPU cost that the idle measurement could see
// (docs/benchmarks.md, "Idle cost"); a GOMEMLIMIT near the live heap cut
// more but made the collector run all the time.
const daemonGCPercent = 50

// leanGC applies daemonGCPercent unless the operator set GOGC.
func leanGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
}
