package agent_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/testbin"
)

// TestEtcdLeaderFreezeNeverOverlaps (package lockdelay; etcd issues 12528
// and 15247): three real agents on embedded etcd (drill.Sandbox, on
// loopback). Each round freezes (SIGSTOP) the agent whose etcd member leads
// raft — a standby, or the active (made to lead etcd first), in turn — for
// longer than the lease, then wakes it (SIGCONT). The woken member's
// lessor still thinks itself primary for a moment and may revoke the live
// active's lease: its key goes while its renewals keep its bound, and a
// standby wins the key. An active that sees its key go stops at once; one
// that cannot see it in time (a GC or VM pause across the leader's wake,
// in the rounds that freeze a standby) is stopped by its bound alone, so
// the winner must wait that out (the lock-delay). Every node's /lb-check
// is sampled every 10 ms throughout: no two nodes may ever answer 200 at
// overlapping moments, no node may answer 200 while the paused active is
// still within the bound it had before its pause (its service would still
// serve), and after each round exactly one node is active and the others
// are healthy standbys.
//
// HAVEN_TEST_LOCK_DELAY=off runs it without the guard (lock_delay: off),
// to see what it guards against; HAVEN_TEST_FREEZE_ROUNDS sets the number
// of rounds (default 3).
func TestEtcdLeaderFreezeNeverOverlaps(t *testing.T) {
	// The rounds, in turn.
	kinds := []struct {
		what   string
		active bool // the active leads etcd and is frozen; else a standby
		pause  bool // the active pauses (SIGSTOP) across the leader's wake
	}{
		{"a standby leads etcd, the active pauses across its wake", false, true},
		{"the active leads etcd", true, false},
	}
	t.Parallel()
	bin := testbin.Build(t)
	extra := ""
	if v := os.Getenv("HAVEN_TEST_LOCK_DELAY"); v != "" {
		extra = "lock_delay: " + v
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("HAVEN_TEST_FREEZE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: bin, Timing: "ci", Extra: extra})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := sb.WatchLB()
	defer w.Stop()
	var moved, waited int
	defer func() {
		t.Logf("%d rounds: the active changed in %d, after a lock-delay wait in %d", rounds, moved, waited)
	}()
	for round := 1; round <= rounds; round++ {
		k := kinds[(round-1)%len(kinds)]
		active, epoch := sb.Active()
		to := sb.Standbys(active)[0]
		if k.active {
			to = active
		}
		leader := ""
		if !harness.Until(10*time.Second, func() bool { leader = sb.EtcdLeader(active); return leader != "" }) {
			t.Fatalf("round %d: no agent says which etcd member leads", round)
		}
		how := leader + " led etcd"
		if (leader == active) != k.active {
			moveEtcdLeader(t, sb, leader, to)
			how = "etcd leadership moved from " + leader + " to " + to
			leader = to
		}
		signal := func(node string, sig syscall.Signal) {
			t.Helper()
			if err := sb.Signal(node, sig); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if k.pause {
			w.Probe(active, 5) // connections to reuse (below)
		}
		// The frozen active's bound, when the active itself is frozen: it
		// cannot answer /lb-check then, so only this shows another node
		// serving while its service, frozen or not, may still serve.
		var frozenBound time.Time
		if k.active {
			sent := time.Now()
			if r, err := sb.Role(active); err == nil && r.Serving {
				frozenBound = sent.Add(time.Duration(r.ValidForMS) * time.Millisecond)
			}
		}
		signal(leader, syscall.SIGSTOP)
		frozen := time.Now()
		// Past the lease: every lease the frozen member's lessor knew has
		// expired in its view when it wakes.
		time.Sleep(sb.Lease + 500*time.Millisecond - pauseBefore)
		var paused, bound time.Time // the active's pause, and its bound before it
		if k.pause {
			sent := time.Now()
			if r, err := sb.Role(active); err == nil && r.Serving {
				bound = sent.Add(time.Duration(r.ValidForMS) * time.Millisecond)
			}
			signal(active, syscall.SIGSTOP)
			paused = time.Now()
		}
		time.Sleep(pauseBefore)
		signal(leader, syscall.SIGCONT)
		woke := time.Now()
		if k.pause {
			// Requests waiting on the paused active when it wakes, as a
			// client's would be, on connections it accepted before its
			// pause (no TLS handshake first).
			time.Sleep(pauseAfter - 100*time.Millisecond)
			w.Probe(active, 5)
			time.Sleep(100 * time.Millisecond)
			until := time.Now()
			signal(active, syscall.SIGCONT)
			// While the active was paused it could not stop (its service,
			// were it one that does not ask the agent, went on serving),
			// nor resign: until its bound, which is at least what it said
			// before the pause, no other node may have served.
			if bound.Before(until) {
				until = bound
			}
			if !bound.IsZero() {
				for _, n := range sb.Standbys(active) {
					if w.ServedWithin(n, paused, until) {
						t.Fatalf("round %d (%s): %s served while %s was paused and still within its bound (%s): two actives",
							round, k.what, n, active, bound.Format("15:04:05.000"))
					}
				}
			}
		}
		if !frozenBound.IsZero() {
			for _, n := range sb.Standbys(active) {
				if w.ServedWithin(n, frozen, frozenBound) {
					t.Fatalf("round %d (%s): %s served while the frozen active %s was still within its bound (%s): two actives",
						round, k.what, n, active, frozenBound.Format("15:04:05.000"))
				}
			}
		}
		last := time.Now()
		// The woken lessor's revocation comes within a tick of the wake
		// (etcd's 500 ms), before the member hears of the new raft term;
		// the key's next holder then waits the lock-delay: the cluster
		// must be whole at least 2 s after the last wake.
		for time.Since(last) < 2*time.Second || sb.Whole(ctx) != "" {
			if err := sb.WaitWhole(ctx, 60*time.Second); err != nil {
				t.Fatalf("round %d (%s): %v", round, k.what, err)
			}
			if o := w.Overlap(); o != "" {
				t.Fatalf("round %d (%s): split brain: %s", round, k.what, o)
			}
			time.Sleep(100 * time.Millisecond)
		}
		now, nowEpoch := sb.Active()
		delay := sb.LockDelays(epoch)
		if nowEpoch != epoch {
			moved++
		}
		if delay != "" {
			waited++
		}
		t.Logf("round %d (%s; %s): froze %s for %s; %s@%d active before, %s@%d after, whole %s after the wake; lock-delay: %q",
			round, k.what, how, leader, woke.Sub(frozen).Round(time.Millisecond), active, epoch, now, nowEpoch, time.Since(woke).Round(time.Millisecond), delay)
	}
	w.Stop()
	if o := w.Overlap(); o != "" {
		t.Fatalf("split brain: %s", o)
	}
}

// The active's pause in the rounds that freeze a standby: from pauseBefore before
// the etcd leader's wake to pauseAfter after it, well within its bound
// (lease_ttl − fence_margin after its last renewal), so that it wakes
// believing itself active.
const (
	pauseBefore = 300 * time.Millisecond
	pauseAfter  = 1200 * time.Millisecond
)

// moveEtcdLeader hands raft leadership to member to (named after its
// node), asking the leader's client URL, and waits until the agents say
// so; from is the leader as last seen. A transfer that fails (leadership
// moved meanwhile, a loaded machine) is tried again, up to 30 s.
func moveEtcdLeader(t *testing.T, sb *drill.Sandbox, from, to string) {
	t.Helper()
	cfg, err := config.Load(sb.Config)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	ok := harness.Until(30*time.Second, func() bool {
		if l := sb.EtcdLeader(to); l != "" {
			from = l
		}
		if from == to {
			return true
		}
		n, ok := cfg.NodeByName(from)
		if !ok {
			last = fmt.Errorf("no node %s", from)
			return false
		}
		last = harness.MoveEtcdLeader("https://"+n.Client, sb.TLS, to)
		return last == nil && harness.Until(5*time.Second, func() bool { return sb.EtcdLeader(to) == to })
	})
	if !ok {
		t.Fatalf("move etcd leadership from %s to %s: %v", from, to, last)
	}
}
