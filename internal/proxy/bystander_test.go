package proxy

import (
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestBystandersProbedSeldom: in active-passive mode only the store's
// active is probed every probe_interval; the other nodes, whose probes no
// decision uses, about once a second; and a node that becomes active is
// probed at once and routed to.
func TestBystandersProbedSeldom(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := newFakeNode(t, "n1", nil), newFakeNode(t, "n2", nil), newFakeNode(t, "n3", nil)
	cfg := testConfig() // probe_interval 20 ms
	tp := startProxy(t, cfg, ha.ModeActivePassive, n1, n2, n3)
	tp.activate(t, "n1")

	before := []int64{n1.probes.Load(), n2.probes.Load(), n3.probes.Load()}
	const window = 2 * time.Second
	time.Sleep(window)
	if d := n1.probes.Load() - before[0]; d < int64(window/cfg.ProbeInterval)/4 {
		t.Errorf("the active was probed %d times in %s; want about %d (every %s)", d, window, window/cfg.ProbeInterval, cfg.ProbeInterval)
	}
	for i, n := range []*fakeNode{n2, n3} {
		if d := n.probes.Load() - before[i+1]; d > int64(window/bystanderProbeEvery)+2 {
			t.Errorf("standby %s was probed %d times in %s; want about %d (every %s)", n.name, d, window, window/bystanderProbeEvery, bystanderProbeEvery)
		}
	}

	// A switchover to n2: it is probed at once, not at its next slow probe.
	start := time.Now()
	tp.activate(t, "n2")
	if took := time.Since(start); took >= bystanderProbeEvery {
		t.Errorf("n2 became a target %s after it became active; a bystander's slow probes held it", took)
	}
}
