package clients

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sessions"
)

// TestSessionsSurviveRollingRestart: a rolling restart of every agent, as
// an upgrade does it (each standby stopped with SIGTERM and started again,
// a switchover, then the old active), keeps every session that redis-cli,
// python3-redis, PHP's session module and redis-benchmark wrote before it,
// and PHP goes on updating its sessions on the new active.
func TestSessionsSurviveRollingRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n, visitors = 50, 20
	sb, active := startWithSessions(t, "", n)
	wantVisits(t, php(t, sb.CAFile(), sb.Node(active).Sessions, visitors), visitors, 0, "first visit")
	redisBenchmark(t, sb.CAFile(), sb.Node(active).Sessions)
	bench := redisCLI(t, sb.CAFile(), sb.Node(active).Sessions, "GET key:__rand_int__\n")[0]
	if len(bench) != 3 {
		t.Fatalf("redis-benchmark's key: %q, want its 3-byte value", bench)
	}

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
	// Every node runs this version, so the next node to take the active
	// role moves the store to the packed layout (the gate, PackedReady):
	// wait until every record says it reads it.
	waitSessionsStatus(t, sb, active, "every node lists the packed layout", func(s *ha.SessionStats) bool {
		return slices.Contains(s.Layouts, sessions.LayoutPacked)
	})
	if out, err := sb.Haven(ctx, "switchover", "--reason", "rolling restart"); err != nil {
		t.Fatalf("switchover: %v: %s", err, out)
	}
	next := waitActive(t, sb, active)
	restart(active)
	t.Logf("restarted every agent; %s is active", next)
	checkAll(t, sb, next, n)
	if got := redisCLI(t, sb.CAFile(), sb.Node(next).Sessions, "GET key:__rand_int__\n"); got[0] != bench {
		t.Fatalf("redis-benchmark's key after the rolling restart: %q, want %q", got, bench)
	}
	wantVisits(t, php(t, sb.CAFile(), sb.Node(next).Sessions, visitors), visitors, 1, "after the rolling restart")
	checkPacked(t, sb, next)
}

// checkPacked: after a switchover with every node able to read it, the
// store is packed on every node (the new active migrated when it loaded,
// writing a first snapshot), nothing waits or warns, and haven status and
// the active's /metrics say so.
func checkPacked(t *testing.T, sb *drill.Sandbox, active string) {
	t.Helper()
	waitSessionsStatus(t, sb, active, "every node on the packed layout", func(s *ha.SessionStats) bool {
		return s.Layout == sessions.LayoutPacked && s.Log != nil && s.Log.SnapshotAt > 0 && s.Waiting == "" && s.Warning == ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := sb.Haven(ctx, "status") // exits 1 while degraded (a node just started): the text is what counts
	if !strings.Contains(out, "takes writes, packed: log ") || strings.Contains(out, "layout: one key per session") || strings.Contains(out, "WARNING") {
		t.Fatalf("haven status after the migration:\n%s", out)
	}
	metrics, err := sb.Metrics(active)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`haven_sessions_layout{layout="packed"} 1`, `haven_sessions_layout{layout="keys"} 0`, "haven_sessions_packed_ready 1", "haven_sessions_snapshot_age_seconds ", "haven_sessions_log_entries "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("%s's /metrics lacks %q", active, want)
		}
	}
}

// waitSessionsStatus waits until every node's session store, as from
// reports it, satisfies ok.
func waitSessionsStatus(t *testing.T, sb *drill.Sandbox, from, what string, ok func(*ha.SessionStats) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last api.Status
	for time.Now().Before(deadline) {
		st, err := sb.Status(from)
		if err == nil {
			last = st
			all := len(st.Nodes) > 0
			for _, n := range st.Nodes {
				all = all && n.Sessions != nil && ok(n.Sessions)
			}
			if all {
				return
			}
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	for _, n := range last.Nodes {
		t.Logf("%s: %+v", n.Name, n.Sessions)
		if n.Sessions != nil && n.Sessions.Log != nil {
			t.Logf("%s's log: %+v", n.Name, *n.Sessions.Log)
		}
	}
	t.Fatalf("not within 30s: %s", what)
}

// redisBenchmark runs Debian's redis-benchmark (SET and GET, 10 clients,
// pipelines of 4) against addr over TLS and wants every request answered:
// it writes and reads one key, key:__rand_int__, with a 3-byte value.
func redisBenchmark(t *testing.T, ca, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-benchmark", "--tls", "--cacert", ca, "-h", host, "-p", port, "-a", drill.SessionsPassword,
		"-t", "set,get", "-n", "2000", "-c", "10", "-P", "4", "--csv")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark (install Debian's redis-tools): %v: %s", err, out)
	}
	// --csv: a header, then "SET","rps",... and "GET","rps",...
	for _, want := range []string{`"SET"`, `"GET"`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("redis-benchmark did not finish %s: %s", want, out)
		}
	}
	if strings.Contains(string(out), "ERR") {
		t.Fatalf("redis-benchmark got errors: %s", out)
	}
	t.Logf("redis-benchmark: %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
}

// TestPackedWaitsForEveryNode: the rolling-upgrade gate with real
// processes. With n3 down since the cluster began (it could be an older
// version that comes back and is promoted), the store stays one key per
// session and status, haven status and /metrics say what it waits for;
// once n3 runs and publishes that it reads the packed layout, the active
// migrates at once (no switchover) and every session written before is
// there.
func TestPackedWaitsForEveryNode(t *testing.T) {
	t.Parallel()
	const n = 50
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Timing: "ci", Sessions: true, Held: []string{"n3"}})
	active := waitActive(t, sb, "")
	addr := sb.Node(active).Sessions
	deadline := time.Now().Add(20 * time.Second)
	for redisCLI(t, sb.CAFile(), addr, "SET probe x\n")[0] != "OK" {
		if time.Now().After(deadline) {
			t.Fatalf("%s takes no writes", active)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var cmds strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&cmds, "SET cli:%d v%d EX 3600\n", i, i)
	}
	for i, line := range redisCLI(t, sb.CAFile(), addr, cmds.String()) {
		if line != "OK" {
			t.Fatalf("SET %d on %s: %q", i, active, line)
		}
	}
	const why = "waiting for node n3 (no status record: down?) to run a version that reads the packed layout"
	waitActiveSessions(t, sb, active, "the active waits for n3", func(s *ha.SessionStats) bool {
		return s.Layout == sessions.LayoutKeys && s.Waiting == why && s.Keys >= n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := sb.Haven(ctx, "status"); !strings.Contains(out, "layout: one key per session; "+why) {
		t.Fatalf("haven status with n3 down (%v):\n%s", err, out)
	}
	metrics, err := sb.Metrics(active)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`haven_sessions_layout{layout="keys"} 1`, "haven_sessions_packed_ready 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("%s's /metrics with n3 down lacks %q", active, want)
		}
	}

	if err := sb.StartAgent("n3"); err != nil {
		t.Fatal(err)
	}
	checkPacked(t, sb, active)
	cmds.Reset()
	for i := 0; i < n; i++ {
		fmt.Fprintf(&cmds, "GET cli:%d\n", i)
	}
	for i, line := range redisCLI(t, sb.CAFile(), addr, cmds.String()) {
		if line != fmt.Sprintf("v%d", i) {
			t.Fatalf("cli:%d on %s after the migration: %q", i, active, line)
		}
	}
	if got := redisCLI(t, sb.CAFile(), addr, "SET after packed\n")[0]; got != "OK" {
		t.Fatalf("SET on %s after the migration: %q", active, got)
	}
}

// waitActiveSessions waits until node's session store, as it reports it,
// satisfies ok.
func waitActiveSessions(t *testing.T, sb *drill.Sandbox, node, what string, ok func(*ha.SessionStats) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *ha.SessionStats
	for time.Now().Before(deadline) {
		if st, err := sb.Status(node); err == nil {
			for _, v := range st.Nodes {
				if v.Name == node && v.Sessions != nil {
					if last = v.Sessions; ok(last) {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("not within 30s: %s (last: %+v)", what, last)
}
