package sessions

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPackedReady(t *testing.T) {
	reads := func(version string, layouts ...string) ha.NodeStatus {
		return ha.NodeStatus{Version: version, Sessions: &ha.SessionStats{Layout: LayoutKeys, Layouts: layouts}}
	}
	newer := reads("1.5.0", LayoutKeys, LayoutPacked)
	nodes := []string{"n1", "n2", "n3"}
	for _, tc := range []struct {
		name    string
		nodes   []string
		records map[string]ha.NodeStatus
		ready   bool
		waiting string // a part of the reason, when not ready
	}{
		{name: "all read packed", nodes: nodes, ready: true,
			records: map[string]ha.NodeStatus{"n1": newer, "n2": newer, "n3": newer}},
		{name: "a node without a record (down) holds it back", nodes: nodes,
			records: map[string]ha.NodeStatus{"n1": newer, "n2": newer},
			waiting: "waiting for node n3 (no status record: down?) to run a version that reads the packed layout"},
		{name: "one old node", nodes: nodes,
			records: map[string]ha.NodeStatus{"n1": newer, "n2": reads("1.4.0", LayoutKeys), "n3": newer},
			waiting: "waiting for node n2 (version 1.4.0) to run a version that reads the packed layout"},
		{name: "a version from before layouts were published", nodes: nodes,
			records: map[string]ha.NodeStatus{"n1": newer, "n2": newer, "n3": {Version: "1.3.0", Sessions: &ha.SessionStats{Keys: 5}}},
			waiting: "node n3 (version 1.3.0)"},
		{name: "a record without sessions", nodes: nodes,
			records: map[string]ha.NodeStatus{"n1": newer, "n2": newer, "n3": {}},
			waiting: "node n3 (version unknown, no session store in its record)"},
		{name: "several hold it back", nodes: nodes,
			records: map[string]ha.NodeStatus{"n1": newer, "n3": reads("1.4.0", LayoutKeys)},
			waiting: "waiting for nodes n2 (no status record: down?), n3 (version 1.4.0) to run"},
		{name: "records of nodes outside the list do not count", nodes: []string{"n1"}, ready: true,
			records: map[string]ha.NodeStatus{"n1": newer, "old": reads("1.4.0", LayoutKeys)}},
		{name: "no nodes", nodes: nil, records: map[string]ha.NodeStatus{"n1": newer},
			waiting: "waiting for the configuration's nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, waiting := PackedReady(tc.nodes, tc.records)
			if ready != tc.ready {
				t.Fatalf("ready = %v (%q), want %v", ready, waiting, tc.ready)
			}
			if ready && waiting != "" {
				t.Fatalf("ready with a reason to wait: %q", waiting)
			}
			if !ready && !strings.Contains(waiting, tc.waiting) {
				t.Fatalf("waiting = %q, want it to contain %q", waiting, tc.waiting)
			}
		})
	}
}

func TestLogCollector(t *testing.T) {
	now := time.Unix(1_700_000_100, 0)
	st := ha.SessionLogStats{Layout: LayoutPacked, LogEntries: 12, LogBytes: 4096, SnapshotKeys: 300,
		SnapshotBytes: 65536, SnapshotAt: now.Add(-90 * time.Second).UnixMilli(), Compactions: 2}
	ready := true
	c := LogCollector(func() ha.SessionLogStats { return st }, func() bool { return ready }, func() time.Time { return now })
	want := `
# HELP haven_sessions_compactions_total Compactions of the packed layout's log into a snapshot by this node.
# TYPE haven_sessions_compactions_total counter
haven_sessions_compactions_total 2
# HELP haven_sessions_layout 1 for the session store's layout in use in the coordination store (keys: one key per session; packed: a log and snapshots), 0 for the other.
# TYPE haven_sessions_layout gauge
haven_sessions_layout{layout="keys"} 0
haven_sessions_layout{layout="packed"} 1
# HELP haven_sessions_log_bytes Bytes of the packed layout's log.
# TYPE haven_sessions_log_bytes gauge
haven_sessions_log_bytes 4096
# HELP haven_sessions_log_entries Group commits in the packed layout's log, not yet folded into a snapshot.
# TYPE haven_sessions_log_entries gauge
haven_sessions_log_entries 12
# HELP haven_sessions_packed_ready 1 when every configured node runs a version that reads the packed layout (the active may migrate to it), else 0.
# TYPE haven_sessions_packed_ready gauge
haven_sessions_packed_ready 1
# HELP haven_sessions_snapshot_age_seconds Age of the packed layout's current snapshot (absent while there is none).
# TYPE haven_sessions_snapshot_age_seconds gauge
haven_sessions_snapshot_age_seconds 90
# HELP haven_sessions_snapshot_bytes Bytes of the packed layout's current snapshot.
# TYPE haven_sessions_snapshot_bytes gauge
haven_sessions_snapshot_bytes 65536
# HELP haven_sessions_snapshot_keys Keys in the packed layout's current snapshot.
# TYPE haven_sessions_snapshot_keys gauge
haven_sessions_snapshot_keys 300
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	// Still one key per session, waiting for a node: no snapshot, so no age.
	st = ha.SessionLogStats{Layout: LayoutKeys}
	ready = false
	want = `
# HELP haven_sessions_layout 1 for the session store's layout in use in the coordination store (keys: one key per session; packed: a log and snapshots), 0 for the other.
# TYPE haven_sessions_layout gauge
haven_sessions_layout{layout="keys"} 1
haven_sessions_layout{layout="packed"} 0
# HELP haven_sessions_packed_ready 1 when every configured node runs a version that reads the packed layout (the active may migrate to it), else 0.
# TYPE haven_sessions_packed_ready gauge
haven_sessions_packed_ready 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "haven_sessions_layout", "haven_sessions_packed_ready", "haven_sessions_snapshot_age_seconds"); err != nil {
		t.Fatal(err)
	}
}

// relayoutBackend is a memBackend whose active load changes its layout
// when gate is open, as etcd's packed layout migrates.
type relayoutBackend struct {
	*memBackend
	gate   atomic.Bool
	packed atomic.Bool
	loads  atomic.Int64
}

func (b *relayoutBackend) LoadSessionsAsActive(ctx context.Context, node string, epoch ha.Epoch) ([]ha.SessionRecord, int64, error) {
	b.loads.Add(1)
	if b.gate.Load() {
		b.packed.Store(true)
	}
	return b.LoadSessions(ctx)
}

// TestActiveReloadsWhenTheLayoutGateOpens: an active that loaded one key
// per session reloads, once, when Relayout says the gate has opened (the
// last old node was upgraded), instead of waiting for the next promotion;
// its data is intact and it takes writes again.
func TestActiveReloadsWhenTheLayoutGateOpens(t *testing.T) {
	b := &relayoutBackend{memBackend: newMemBackend()}
	var asked atomic.Int64
	n := &node{}
	n.srv = New(Options{Node: "a", Backend: b,
		Role: func() (ha.Epoch, bool) { return ha.Epoch(n.epoch.Load()), n.active.Load() },
		Relayout: func() bool {
			asked.Add(1)
			return b.gate.Load() && !b.packed.Load()
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = n.srv.Serve(ctx, ln) }()
	go func() { defer wg.Done(); _ = n.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	b.promote(n, "a", 3)
	c := dial(t, ln.Addr().String())
	eventually(t, "writes after the promotion", func() bool { return c.do("SET", "k", "v") == "+OK\r\n" })
	if b.loads.Load() != 1 || b.packed.Load() {
		t.Fatalf("loads %d, packed %v before the gate opened", b.loads.Load(), b.packed.Load())
	}
	// Closed gate: asked at every sweep, no reload.
	before := asked.Load()
	eventually(t, "two sweeps", func() bool { return asked.Load() >= before+2 })
	if b.loads.Load() != 1 {
		t.Fatalf("reloaded with the gate closed: %d loads", b.loads.Load())
	}

	b.gate.Store(true)
	eventually(t, "the reload that migrates", func() bool { return b.packed.Load() })
	eventually(t, "writes after the reload", func() bool { return c.do("SET", "k2", "v2") == "+OK\r\n" })
	if got := c.do("GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET k after the reload: %q", got)
	}
	before = asked.Load()
	eventually(t, "two more sweeps", func() bool { return asked.Load() >= before+2 })
	if got := b.loads.Load(); got != 2 {
		t.Fatalf("%d loads, want 2: one at the promotion, one when the gate opened", got)
	}
}
