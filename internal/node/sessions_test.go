package node

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sessions"
)

func TestPackedGateNodes(t *testing.T) {
	cfg := &config.Config{Nodes: []config.Node{{Name: "n1"}, {Name: "n2", Backup: true}, {Name: "n3"}, {Name: "w", Witness: true}}}
	snap := ha.Snapshot{Nodes: map[string]ha.NodeStatus{
		"n1": {Name: "n1"}, "w": {Name: "w", Role: ha.RoleWitness},
		"n9": {Name: "n9", Role: ha.RoleStandby}, // added to the cluster after n1 started
	}}
	got := packedGateNodes(cfg, "n1", snap)
	// Down n3 counts (it may come back with an old version); the
	// witness never serves; n1 runs this code.
	if want := []string{"n2", "n3", "n9"}; !slices.Equal(got, want) {
		t.Fatalf("gate nodes = %v, want %v", got, want)
	}
}

func TestPackedStats(t *testing.T) {
	newer := ha.NodeStatus{Version: "1.5.0", Sessions: &ha.SessionStats{Layouts: []string{sessions.LayoutKeys, sessions.LayoutPacked}}}
	older := ha.NodeStatus{Version: "1.4.0", Sessions: &ha.SessionStats{Layouts: []string{sessions.LayoutKeys}}}
	nodes := []string{"n2", "n3"}
	keys := ha.SessionLogStats{Layout: sessions.LayoutKeys}
	packed := ha.SessionLogStats{Layout: sessions.LayoutPacked, LogEntries: 3}

	// One key per session, n3 down: waiting for it.
	layout, log, waiting, warning := packedStats(keys, nodes, map[string]ha.NodeStatus{"n2": newer})
	if layout != sessions.LayoutKeys || log != nil || warning != "" || !strings.Contains(waiting, "waiting for node n3 (no status record: down?)") {
		t.Fatalf("keys, n3 down: %q %v %q %q", layout, log, waiting, warning)
	}
	// Every node reads it: the next promotion migrates.
	layout, log, waiting, warning = packedStats(keys, nodes, map[string]ha.NodeStatus{"n2": newer, "n3": newer})
	if layout != sessions.LayoutKeys || log != nil || warning != "" || !strings.Contains(waiting, "the active migrates the store to it now") {
		t.Fatalf("keys, all read packed: %q %v %q %q", layout, log, waiting, warning)
	}
	// Packed: the log's stats; a down node is no warning...
	layout, log, waiting, warning = packedStats(packed, nodes, map[string]ha.NodeStatus{"n2": newer})
	if layout != sessions.LayoutPacked || log == nil || log.LogEntries != 3 || waiting != "" || warning != "" {
		t.Fatalf("packed, n3 down: %q %v %q %q", layout, log, waiting, warning)
	}
	// ...an old version that came back is.
	_, _, waiting, warning = packedStats(packed, nodes, map[string]ha.NodeStatus{"n2": newer, "n3": older})
	if waiting != "" || !strings.Contains(warning, "node n3 (version 1.4.0) cannot read the packed layout") {
		t.Fatalf("packed, n3 old: %q %q", waiting, warning)
	}
}

// TestHistoryKeep: the active of an embedded store compacts etcd's history
// after its compactions; an external etcd is left to its operator.
func TestHistoryKeep(t *testing.T) {
	for backend, want := range map[string]time.Duration{config.BackendEmbedded: packedHistoryKeep, config.BackendEtcd: 0} {
		cfg := &config.Config{}
		cfg.Store.Backend = backend
		if got := historyKeep(cfg); got != want {
			t.Errorf("%s: HistoryKeep %v, want %v", backend, got, want)
		}
	}
}
