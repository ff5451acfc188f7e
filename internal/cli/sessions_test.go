package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sessions"
)

// TestStatusShowsSessions: nodes that run the session store get a line
// each with their keys and bytes; without one, status says nothing of it.
func TestStatusShowsSessions(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Reporter: "n1", Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6379", Keys: 12, Bytes: 3400, Writable: true}},
		{Name: "n2", Role: ha.RoleStandby, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6380", Keys: 11, Bytes: 3300}},
	}})
	for _, want := range []string{"sessions (Redis protocol):", "n1 on 127.0.0.1:6379: 12 keys, 3400 bytes, takes writes", "n2 on 127.0.0.1:6380: 11 keys, 3300 bytes, read-only copy"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
	out.Reset()
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Nodes: []api.NodeView{{Name: "n1", Role: ha.RoleActive}}})
	if strings.Contains(out.String(), "sessions") {
		t.Fatalf("sessions shown without a session store:\n%s", out.String())
	}
}

// TestStatusShowsSessionsLayout: a packed store shows its log and
// snapshot on each node; one still on one key per session says why it has
// not moved; a node that cannot read a packed store is a warning.
func TestStatusShowsSessionsLayout(t *testing.T) {
	now := time.Unix(1_700_000_100, 0)
	both := []string{sessions.LayoutKeys, sessions.LayoutPacked}
	log := &ha.SessionLogStats{Layout: sessions.LayoutPacked, LogEntries: 12, LogBytes: 4096, SnapshotKeys: 300, SnapshotBytes: 65536,
		SnapshotAt: now.Add(-90 * time.Second).UnixMilli(), Compactions: 2}
	var out bytes.Buffer
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Time: now, Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6379", Keys: 12, Bytes: 3400, Writable: true,
			Layout: sessions.LayoutPacked, Layouts: both, Log: log, Warning: "node n3 (version 1.4.0) cannot read the packed layout the session store uses: promoted, it would serve no sessions; upgrade it"}},
		{Name: "n2", Role: ha.RoleStandby, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6380", Keys: 12, Bytes: 3400,
			Layout: sessions.LayoutPacked, Layouts: both, Log: &ha.SessionLogStats{Layout: sessions.LayoutPacked, LogEntries: 1, LogBytes: 10}}},
	}})
	for _, want := range []string{
		"n1 on 127.0.0.1:6379: 12 keys, 3400 bytes, takes writes, packed: log 12 entries (4096 bytes), snapshot 300 keys (65536 bytes) 1m30s old, 2 compactions",
		"n2 on 127.0.0.1:6380: 12 keys, 3400 bytes, read-only copy, packed: log 1 entries (10 bytes), no snapshot yet, 0 compactions",
		"  WARNING: node n3 (version 1.4.0) cannot read the packed layout",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "layout: one key per session") {
		t.Fatalf("a packed store said to wait:\n%s", out.String())
	}

	out.Reset()
	waiting := "waiting for node n3 (no status record: down?) to run a version that reads the packed layout"
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Time: now, Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6379", Writable: true, Layout: sessions.LayoutKeys, Layouts: both, Waiting: waiting}},
		{Name: "n2", Role: ha.RoleStandby, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6380", Layout: sessions.LayoutKeys, Layouts: both, Waiting: waiting}},
	}})
	if got := strings.Count(out.String(), "layout: one key per session; "+waiting); got != 1 {
		t.Fatalf("the reason to wait shown %d times, want once:\n%s", got, out.String())
	}
	if strings.Contains(out.String(), "packed: log") || strings.Contains(out.String(), "WARNING") {
		t.Fatalf("a store on one key per session shown with a log or a warning:\n%s", out.String())
	}

	// Just migrated: a standby's record from before still says why not.
	out.Reset()
	printStatus(&out, api.Status{Cluster: "c", Mode: string(ha.ModeActivePassive), Time: now, Nodes: []api.NodeView{
		{Name: "n1", Role: ha.RoleActive, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6379", Writable: true, Layout: sessions.LayoutPacked, Layouts: both, Log: log}},
		{Name: "n2", Role: ha.RoleStandby, Sessions: &ha.SessionStats{Listen: "127.0.0.1:6380", Layout: sessions.LayoutKeys, Layouts: both, Waiting: "every node reads the packed layout; the active migrates the store to it now"}},
	}})
	if strings.Contains(out.String(), "layout: one key per session") {
		t.Fatalf("a packed store said to be on one key per session:\n%s", out.String())
	}
}
