package cli

import (
	"strings"
	"testing"

	"github.com/haven-ha/haven/internal/api"
)

// TestPrintVIP: status says where the VIP is, what it follows, and when no
// node (or more than one) reports it.
func TestPrintVIP(t *testing.T) {
	for _, c := range []struct {
		v    *api.VIPView
		want string
	}{
		{nil, ""},
		{&api.VIPView{Address: "10.0.0.100/24", Follows: "active", Holders: []string{"n1"}}, "virtual IP 10.0.0.100/24 is on n1 (it follows the active node)\n"},
		{&api.VIPView{Address: "10.0.0.100/24", Follows: "proxy", Holders: []string{}}, "virtual IP 10.0.0.100/24 is held by no node (it follows a node with a healthy proxy): it is moving, or no node can hold it; see haven events\n"},
		{&api.VIPView{Address: "fd00::1/64", Follows: "active", Holders: []string{"n1", "n2"}}, "virtual IP fd00::1/64 is reported on n1, n2 at once"},
	} {
		var b strings.Builder
		printVIP(&b, c.v)
		if !strings.HasPrefix(b.String(), c.want) || (c.want == "" && b.Len() > 0) {
			t.Errorf("%+v: %q, want %q", c.v, b.String(), c.want)
		}
	}
}
