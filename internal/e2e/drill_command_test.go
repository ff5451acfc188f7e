package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDrillCommand checks the command line: the refusal on a cluster whose
// config does not enable drills (exit 2 with the reason), a scenario that
// is not safe on a real cluster, and a real-cluster switchover drill.
func TestDrillCommand(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	c.WaitActive(startTimeout)
	code, _, errOut := runHaven(t, "drill", "--config", c.Config, "--scenario", "switchover")
	if code != 2 || !strings.Contains(errOut, "drill: {enabled: true}") {
		t.Fatalf("drill without drill.enabled: exit %d, %s", code, errOut)
	}
	code, _, errOut = runHaven(t, "drill", "--sandbox", "--config", c.Config)
	if code != 2 {
		t.Fatalf("--sandbox with --config: exit %d, %s", code, errOut)
	}

	// The same cluster, drills allowed, a proxy to send clients through.
	base, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(c.Dir, "drill.yaml")
	text := string(base) + "drill: {enabled: true}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runHaven(t, "drill", "--config", cfg, "--scenario", "active-cut")
	if code != 2 || !strings.Contains(errOut, "not safe on a real cluster") {
		t.Fatalf("unsafe scenario: exit %d, %s", code, errOut)
	}
	p := c.startProxy(t, "drill-proxy", "")
	cmd := exec.Command(havenBin, "drill", "--config", cfg, "--scenario", "switchover", "--target", "http://"+p.Addr)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	t.Logf("drill output:\n%s\n%s", out.String(), stderr.String())
	if err != nil {
		t.Fatalf("drill --config --scenario switchover: %v", err)
	}
	if !strings.Contains(out.String(), "switchover") || !strings.Contains(out.String(), "met") {
		t.Fatalf("unexpected drill output:\n%s", out.String())
	}
}
