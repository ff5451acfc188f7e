package sessions

import (
	"fmt"
	"slices"
	"strings"

	"github.com/haven-ha/haven/internal/ha"
)

// The layouts of the session store in etcd (docs/sessions.md, "A packed
// layout for active-passive"): one store key per session, or a log of
// group commits folded into snapshots.
const (
	LayoutKeys   = "keys"
	LayoutPacked = "packed"
)

// PackedReady is the rolling-upgrade gate of the packed layout: it reports
// whether every node named in nodes has a status record in records whose
// session store lists the packed layout among those it reads. Only then may
// the active migrate the store to it, a one-way change: a node that cannot
// read it would find an empty store if it were promoted afterwards.
//
// nodes are the configured nodes that can hold the active role, up or down:
// a node without a record counts as not ready, since it may be down with an
// older version and come back to be promoted. When not ready, waiting says
// which nodes hold the migration back and why, for status and the dashboard.
func PackedReady(nodes []string, records map[string]ha.NodeStatus) (ready bool, waiting string) {
	if len(nodes) == 0 {
		return false, "waiting for the configuration's nodes"
	}
	behind := packedBehind(nodes, records)
	if len(behind) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("waiting for %s %s to run a version that reads the packed layout", nodeNoun(behind), strings.Join(behind, ", "))
}

// PackedUnreadable is the warning for a store already packed: the nodes
// with a record that cannot read it ("" if none). Promoted, such a node
// would serve an empty session store. A node without a record is left out
// here: nothing says what it runs until it is back.
func PackedUnreadable(nodes []string, records map[string]ha.NodeStatus) string {
	var up []string
	for _, name := range nodes {
		if _, ok := records[name]; ok {
			up = append(up, name)
		}
	}
	behind := packedBehind(up, records)
	if len(behind) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s cannot read the packed layout the session store uses: promoted, it would serve no sessions; upgrade it", nodeNoun(behind), strings.Join(behind, ", "))
}

func nodeNoun(names []string) string {
	if len(names) > 1 {
		return "nodes"
	}
	return "node"
}

// packedBehind names the nodes whose record does not list the packed
// layout, each with why.
func packedBehind(nodes []string, records map[string]ha.NodeStatus) []string {
	var behind []string
	for _, name := range nodes {
		rec, ok := records[name]
		switch {
		case !ok:
			behind = append(behind, name+" (no status record: down?)")
		case rec.Sessions == nil:
			behind = append(behind, fmt.Sprintf("%s (version %s, no session store in its record)", name, orUnknown(rec.Version)))
		case !slices.Contains(rec.Sessions.Layouts, LayoutPacked):
			behind = append(behind, fmt.Sprintf("%s (version %s)", name, orUnknown(rec.Version)))
		}
	}
	return behind
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}
