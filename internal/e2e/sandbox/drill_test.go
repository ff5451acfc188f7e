package sandbox

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

// TestDrillScenarios runs a representative set of the drill's scenarios on
// a sandbox and holds each to its target: no split brain and no lost
// acknowledged write anywhere, zero client errors where the target says so,
// the RTOs within their bounds plus a slack for CI (loosened timings: lease 3s).
func TestDrillScenarios(t *testing.T) {
	// Not parallel: it measures RTO targets and "whole again" deadlines,
	// so it runs alone in this package (before TestChaos), beside the
	// other packages' tests as every test does under go test -p 2.
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Netns: true, Timing: "ci"})
	names := []string{"service-crash", "agent-freeze", "active-cut-oneway", "majority-loss", "switchover", "rolling-restart", "etcd-leader-freeze"}
	results := runDrill(t, context.Background(), sb, names, nil, nil)
	var all []drill.Op
	for _, r := range results {
		all = append(all, r.Ops...)
	}
	switch res, n := drill.Linearizable(all, time.Minute); res {
	case "Ok":
		t.Logf("registers: linearizable (%d operations)", n)
	case "Illegal":
		t.Errorf("the shared registers are not linearizable (%d operations)", n)
	default:
		t.Errorf("the linearizability check did not finish in a minute (%s, %d operations)", res, n)
	}
}

// TestDrillDatabase runs the shared-database scenarios on a sandbox whose
// agents coordinate on a throwaway PostgreSQL server: a restart shorter
// than the lease moves nothing and loses nothing; a loss of two leases
// makes the active stop, nobody promotes, and the cluster recovers by
// itself with every acknowledged write; a switchover works on it too.
func TestDrillDatabase(t *testing.T) {
	// Not parallel: it measures RTO targets and "whole again" deadlines,
	// so it runs alone in this package (before TestChaos), beside the
	// other packages' tests as every test does under go test -p 2.
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Timing: "ci", Store: drill.StorePostgres})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := []string{"member-loss", "switchover", "db-restart", "db-loss"}
	// A database restart that the machine's load makes slower than the
	// lease may rightly end in a failover.
	// member-loss is about etcd members, which a database sandbox has none of.
	results := runDrill(t, ctx, sb, names, map[string]bool{"member-loss": true}, map[string]bool{"db-restart": true})
	for _, r := range results {
		if r.Name == "db-loss" && !strings.Contains(r.What, "nobody promoted") {
			t.Errorf("db-loss: %q does not say the active stopped and nobody promoted", r.What)
		}
	}
}

// runDrill runs the scenarios names on sb and holds each result to its
// target. Speed and availability targets are the drill's to report
// (docs/drills.md): on a loaded CI machine only safety and recovery fail
// the test, so an RTO over its bound (slack 400 ms), or a failover in a
// scenario of failoverOK, is logged. The scenarios of skip must be
// skipped, and no other.
func runDrill(t *testing.T, ctx context.Context, sb *drill.Sandbox, names []string, skip, failoverOK map[string]bool) []drill.Result {
	t.Helper()
	var log bytes.Buffer
	results, err := drill.Run(ctx, sb, drill.Options{Scenarios: names, Log: &log, RTOSlack: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	drill.WriteTable(&table, results)
	t.Logf("\n%s", table.String())
	if len(results) != len(names) {
		t.Fatalf("%d results for %d scenarios", len(results), len(names))
	}
	for _, r := range results {
		if (r.Verdict == "skipped") != skip[r.Name] {
			t.Errorf("%s: %s, want skipped %t", r.Name, r.Verdict, skip[r.Name])
			continue
		}
		switch {
		case skip[r.Name]:
			continue
		case r.Verdict == "met":
		case availabilityMissOnly(r.Verdict, failoverOK[r.Name]):
			t.Logf("%s: %s (%s) — an availability target, not failed here", r.Name, r.Verdict, r.Summary())
		default:
			t.Errorf("%s: %s (%s)\n%s", r.Name, r.Verdict, r.Summary(), log.String())
		}
		if r.Acked == 0 {
			t.Errorf("%s: no write was acknowledged; the load did not run", r.Name)
		}
	}
	return results
}

// availabilityMissOnly reports whether a drill verdict misses only speed
// or availability targets (an RTO over its bound; with failoverOK, an
// unexpected failover), none of safety or recovery.
func availabilityMissOnly(verdict string, failoverOK bool) bool {
	missed, ok := strings.CutPrefix(verdict, "missed: ")
	if !ok {
		return false
	}
	for _, m := range strings.Split(missed, ", ") {
		switch {
		case strings.HasPrefix(m, "RTO over "):
		case m == "unexpected failover" && failoverOK:
		default:
			return false
		}
	}
	return true
}
