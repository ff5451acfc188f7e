package release

import (
	"os/exec"
	"testing"
)

// TestAlertRules: promtool (Debian's prometheus package) accepts the
// alerting rules, and its unit tests of them pass.
func TestAlertRules(t *testing.T) {
	for _, args := range [][]string{
		{"check", "rules", "haven-alerts.yml"},
		{"test", "rules", "haven-alerts_test.yml"},
	} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "../../deploy/monitoring"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
