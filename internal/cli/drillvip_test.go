package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestDrillVIPFollowRefused: --vip-follow takes active or proxy, and proxy
// only with --vip; a wrong one exits 2 with what to do, before any sandbox
// is built.
func TestDrillVIPFollowRefused(t *testing.T) {
	for _, args := range [][]string{
		{"drill", "--sandbox", "--vip-follow", "proxy"},
		{"drill", "--sandbox", "--vip", "--vip-follow", "leader"},
	} {
		var out, errw bytes.Buffer
		if code := Main(args, &out, &errw); code != exitUsage || !strings.Contains(errw.String(), "--vip-follow is active or proxy, and needs --vip") {
			t.Errorf("%v: exit %d, want %d with the reason\n%s", args, code, exitUsage, errw.String())
		}
		if strings.Contains(errw.String(), "building the sandbox") {
			t.Errorf("%v: started to build a sandbox before refusing:\n%s", args, errw.String())
		}
	}
}
