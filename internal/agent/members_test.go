package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

func members(spec string) []ha.Member {
	// spec: "n1:up n2:down n3:up +:joining"
	var out []ha.Member
	for i, f := range strings.Fields(spec) {
		name, state, _ := strings.Cut(f, ":")
		m := ha.Member{Name: name, ID: uint64(i + 1), Started: state != "joining", Healthy: state == "up"}
		if state == "joining" {
			m.Name = ""
		}
		out = append(out, m)
	}
	return out
}

func TestCheckMemberChange(t *testing.T) {
	for _, tc := range []struct {
		members string
		add     bool
		node    string
		wantErr string // "" = allowed
	}{
		{"n1:up n2:up n3:up", true, "n4", ""},
		{"n1:up n2:up n3:down", true, "n4", "majority needs 3"},
		{"n1:up n2:up n3:up", true, "n3", "already a member"},
		{"n1:up n2:up n3:up x:joining", true, "n5", "one change at a time"},
		{"n1:up n2:up n3:up n4:up", false, "n4", ""},
		{"n1:up n2:up n3:up", false, "n3", ""},
		{"n1:up n2:down n3:up", false, "n3", "majority needs 2"},
		{"n1:up n2:down n3:up", false, "n2", ""}, // removing the down one helps
		{"n1:up", false, "n1", "only member"},
		{"n1:up", true, "n2", ""}, // the only way to grow a recovered or restored store, as etcd allows
		{"n1:down", true, "n2", "majority needs 2"},
		{"n1:up n2:up n3:up", false, "n9", "not a member"},
		{"n1:up n2:up n3:up n4:down n5:down", false, "n1", "majority needs 3"},
		{"n1:up n2:up n3:up n4:up n5:down", false, "n5", ""},
	} {
		err := checkMemberChange(members(tc.members), tc.add, tc.node)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s, add=%v %s: refused: %v", tc.members, tc.add, tc.node, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s, add=%v %s: got %v, want an error with %q", tc.members, tc.add, tc.node, err, tc.wantErr)
		}
	}
}

// TestMemberRemovedGone: a removal answers "gone" only on a view that holds
// a write of the asking node's made after the commit, with no record and
// no leader key of the removed node.
func TestMemberRemovedGone(t *testing.T) {
	commit := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	rec := func(name string, beat time.Time) ha.NodeStatus {
		return ha.NodeStatus{Name: name, Heartbeat: beat}
	}
	view := func(leader string, recs ...ha.NodeStatus) ha.Snapshot {
		s := ha.Snapshot{Leader: ha.Leader{Node: leader}, Nodes: map[string]ha.NodeStatus{}}
		for _, r := range recs {
			s.Nodes[r.Name] = r
		}
		return s
	}
	before, after := commit.Add(-time.Millisecond), commit.Add(time.Millisecond)
	for _, c := range []struct {
		name string
		snap ha.Snapshot
		want bool
	}{
		{"fresh view, no record of n4", view("n2", rec("n1", after), rec("n2", before)), true},
		{"fresh view at the commit's instant", view("", rec("n1", commit)), true},
		// seed 6208: n4's old record went with its expired session; its
		// new session's record was not written yet in a view from before
		// the commit. With the record written before the session counts,
		// a view newer than the commit shows it.
		{"view older than the commit", view("n2", rec("n1", before)), false},
		{"no record of the asking node", view("n2", rec("n2", after)), false},
		{"n4's record is there", view("n2", rec("n1", after), rec("n4", before)), false},
		{"n4 holds the key", view("n4", rec("n1", after)), false},
	} {
		if got := RemovedGone(c.snap, "n1", "n4", commit); got != c.want {
			t.Errorf("%s: RemovedGone = %t, want %t", c.name, got, c.want)
		}
	}
}
