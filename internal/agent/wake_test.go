package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/testbin"
)

// TestWokenEtcdLeaderServesNoStaleAck (the post-wake guard of package
// lease, docs/stores.md "Guarded since 2026-12-07"): three real agents on
// embedded etcd, each in a network namespace of its own. Each round makes
// the active's member lead raft, freezes the active (SIGSTOP) and cuts it
// off from the cluster network at once; the other two members elect a new
// leader. It wakes (SIGCONT) a little before its own fence deadline, still
// cut off: its member still leads in its own view and, ticking again,
// skips etcd's leadership check before a renewal (ensureLeadership while
// raft ticked lately), so its lessor acknowledges the agent's renewals
// until check-quorum makes it step down. Those answers renew nothing in
// the cluster, whose lease runs out and whose revoker records the expiry,
// so a standby takes over at once (no lock-delay). Without the guard the
// woken active would count them and serve on, past its real lease, beside
// the new active; with it the renewals after the pause count only once a
// linearizable read in the same raft term confirms them, which a member
// cut off cannot give.
//
// Every node's /lb-check is sampled every 10 ms: the woken node must not
// answer 200 to a request sent after the fence deadline that any renewal
// sent before its freeze could give (freeze + lease_ttl − fence_margin)
// while it is cut off, no two nodes may answer 200 at overlapping moments,
// and after the node is let back exactly one node is active and the others
// are healthy standbys. A round counts only if the node woke still active
// (it answered 200 after the wake) after another member was elected;
// HAVEN_TEST_WAKE_ROUNDS sets how many must (default 1; up to 3 times as
// many are tried).
func TestWokenEtcdLeaderServesNoStaleAck(t *testing.T) {
	t.Parallel()
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("HAVEN_TEST_WAKE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: testbin.Build(t), Timing: "ci", Netns: true})
	w := sb.WatchLB()
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const (
		fenceMargin = 500 * time.Millisecond // harness.CITimings
		election    = 500 * time.Millisecond
		// wakeBefore: the wake comes this long before the lowest fence
		// deadline the active reported before its freeze, so that it
		// wakes believing itself active.
		wakeBefore = 250 * time.Millisecond
	)
	exercised := 0
	for try := 1; exercised < rounds; try++ {
		if try > 3*rounds {
			t.Fatalf("%d of %d rounds reached the case (the active woke still active after another etcd member was elected); the machine may be too loaded", exercised, try-1)
		}
		if err := sb.WaitWhole(ctx, 60*time.Second); err != nil {
			t.Fatalf("round %d: %v", try, err)
		}
		active, epoch := sb.Active()
		if active == "" {
			t.Fatalf("round %d: no active", try)
		}
		leader := ""
		if !harness.Until(10*time.Second, func() bool { leader = sb.EtcdLeader(active); return leader != "" }) {
			t.Fatalf("round %d: no agent says which etcd member leads", try)
		}
		if leader != active {
			moveEtcdLeader(t, sb, leader, active)
		}
		// Within a lease of the move the active does not move leadership
		// away again (leaderaway.go): freeze it now.
		sent := time.Now()
		r, err := sb.Role(active)
		if err != nil || !r.Serving || sb.EtcdLeader(active) != active {
			t.Logf("round %d: %s no longer both serves and leads etcd; again", try, active)
			continue
		}
		// The fence deadline is at least this (renewals went on since).
		fence := sent.Add(time.Duration(r.ValidForMS) * time.Millisecond)
		w.Probe(active, 5) // connections to reuse (below)
		if err := sb.Signal(active, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen := time.Now()
		if err := sb.Cut(active); err != nil {
			_ = sb.Signal(active, syscall.SIGCONT)
			t.Fatal(err)
		}
		// No renewal sent before the freeze gives a later fence deadline.
		staleFrom := frozen.Add(sb.Lease - fenceMargin)
		others := sb.Standbys(active)
		elected := harness.Until(time.Until(fence.Add(-wakeBefore-400*time.Millisecond)), func() bool {
			l := etcdLeaderSeenBy(sb, others[0])
			return l != "" && l != active
		})
		time.Sleep(time.Until(fence.Add(-wakeBefore - 100*time.Millisecond)))
		// Requests waiting on the frozen agent when it wakes, as a
		// load balancer's would be: answered at once on waking.
		w.Probe(active, 5)
		time.Sleep(time.Until(fence.Add(-wakeBefore)))
		if err := sb.Signal(active, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		woke := time.Now()
		// Keep it cut off until another node serves and every renewal
		// the woken member could have acknowledged has run out (its
		// check-quorum steps it down within an election timeout).
		var next string
		harness.Until(30*time.Second, func() bool {
			for _, n := range others {
				if w.ServedWithin(n, frozen, time.Now()) {
					next = n
				}
			}
			return next != "" && time.Since(woke) > sb.Lease+2*election
		})
		healed := time.Now()
		if err := sb.Heal(active); err != nil {
			t.Fatal(err)
		}
		if w.ServedWithin(active, staleFrom, healed) {
			t.Fatalf("round %d: %s answered /lb-check 200 after %s, the latest fence deadline a renewal sent before its freeze could give (frozen %s, woke %s, cut off until %s): it served on a renewal its woken etcd member's stale lessor acknowledged",
				try, active, staleFrom.Format("15:04:05.000"), frozen.Format("15:04:05.000"), woke.Format("15:04:05.000"), healed.Format("15:04:05.000"))
		}
		if o := w.Overlap(); o != "" {
			t.Fatalf("round %d: split brain: %s", try, o)
		}
		if next == "" {
			t.Fatalf("round %d: no other node served within 30 s of %s's freeze", try, active)
		}
		last := time.Now()
		for time.Since(last) < 2*time.Second || sb.Whole(ctx) != "" {
			if err := sb.WaitWhole(ctx, 60*time.Second); err != nil {
				t.Fatalf("round %d: %v", try, err)
			}
			if o := w.Overlap(); o != "" {
				t.Fatalf("round %d: split brain: %s", try, o)
			}
			time.Sleep(100 * time.Millisecond)
		}
		now, nowEpoch := sb.Active()
		reached := elected && w.ServedWithin(active, frozen, staleFrom)
		if reached {
			exercised++
		}
		paused, refused := guardLines(t, sb, active, woke)
		t.Logf("round %d: froze %s@%d (leading etcd) for %s, cut off for %s; another member elected before the wake: %t; served after the wake: %t; it saw its pause: %t, renewals not counted: %d; %s@%d active after",
			try, active, epoch, woke.Sub(frozen).Round(time.Millisecond), healed.Sub(frozen).Round(time.Millisecond), elected, w.ServedWithin(active, frozen, staleFrom), paused, refused, now, nowEpoch)
	}
	w.Stop()
	if o := w.Overlap(); o != "" {
		t.Fatalf("split brain: %s", o)
	}
}

// guardLines reads node's log from since on: whether its renewer saw its
// pause, and how many renewals it did not count because the store could
// not confirm them.
func guardLines(t *testing.T, sb *drill.Sandbox, node string, since time.Time) (paused bool, refused int) {
	b, err := os.ReadFile(filepath.Join(sb.Dir, "logs", node+".log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		i := strings.Index(l, "time=")
		if i < 0 {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.Fields(l[i+len("time="):])[0])
		if err != nil || at.Before(since.Add(-time.Second)) {
			continue
		}
		paused = paused || strings.Contains(l, "renewals count only once the store confirms them")
		if strings.Contains(l, "(not counted)") {
			refused++
		}
	}
	return paused, refused
}

// etcdLeaderSeenBy names the member that node's etcd member follows (or
// is), asking that member alone with a short deadline; "" when it cannot
// tell. Unlike Sandbox.EtcdLeader it does not wait on the other members
// (one of them is frozen here).
func etcdLeaderSeenBy(sb *drill.Sandbox, node string) string {
	cfg, err := config.Load(sb.Config)
	if err != nil {
		return ""
	}
	n, ok := cfg.NodeByName(node)
	if !ok {
		return ""
	}
	ep := "https://" + n.Client
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: sb.TLS, DialTimeout: 300 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		return ""
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := cli.Status(ctx, ep)
	if err != nil || st.Leader == 0 {
		return ""
	}
	ms, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return ""
	}
	for _, m := range ms.Members {
		if m.ID == st.Leader {
			return m.Name
		}
	}
	return ""
}
