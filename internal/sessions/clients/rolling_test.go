package clients

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestSessionsSurviveRollingRestart: a rolling restart of every agent, as
// an upgrade does it (each standby stopped with SIGTERM and started again,
// a switchover, then the old active), keeps every session that redis-cli,
// python3-redis and PHP's session module wrote before it, and PHP goes on
// updating its sessions on the new active.
func TestSessionsSurviveRollingRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n, visitors = 50, 20
	sb, active := startWithSessions(ctx, t, "", n)
	wantVisits(t, php(t, sb.CAFile(), sb.Node(active).Sessions, visitors), visitors, 0, "first visit")

	restart := func(node string) {
		t.Helper()
		if err := sb.StopAgent(node, syscall.SIGTERM, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := sb.StartAgent(node); err != nil {
			t.Fatal(err)
		}
		if err := sb.WaitWhole(ctx, 60*time.Second); err != nil {
			t.Fatalf("after restarting %s: %v", node, err)
		}
	}
	for _, node := range sb.Standbys(active) {
		restart(node)
	}
	if out, err := sb.Haven(ctx, "switchover", "--reason", "rolling restart"); err != nil {
		t.Fatalf("switchover: %v: %s", err, out)
	}
	next := waitActive(t, sb, active)
	restart(active)
	t.Logf("restarted every agent; %s is active", next)
	checkAll(t, sb, next, n)
	wantVisits(t, php(t, sb.CAFile(), sb.Node(next).Sessions, visitors), visitors, 1, "after the rolling restart")
}
