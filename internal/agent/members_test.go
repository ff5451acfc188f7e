package agent

import (
	"strings"
	"testing"

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
