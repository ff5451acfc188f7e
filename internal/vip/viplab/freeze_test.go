package viplab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
)

// TestVIPFencedOnEtcdLeaderFreeze (package lockdelay; etcd issues 12528
// and 15247): the VIP follows a healthy proxy (vip.follow: proxy, the
// agents' own proxies). Each round freezes (SIGSTOP) the agent whose etcd
// member leads raft for longer than the lease, then wakes it (SIGCONT):
//
//   - first a node that does not hold the VIP, while the holder pauses
//     across the leader's wake (a GC or VM pause). The woken member's
//     lessor may revoke the holder's live lease in the VIP election; the
//     paused holder cannot see its key go and keeps the address until its
//     kernel lifetime runs out (its fence deadline), so the winner must
//     wait that out (the lock-delay) before it adds the address;
//   - then the holder itself, made to lead etcd first: its kernel drops
//     the address by itself, and after the wake its lessor may revoke the
//     new holder's lease.
//
// A sampler looks at every node's addresses every 10 ms: never two
// holders; after each round exactly one node holds the VIP.
// HAVEN_TEST_LOCK_DELAY=off runs it without the guard, and
// HAVEN_TEST_FREEZE_ROUNDS sets the number of rounds (default 2).
func TestVIPFencedOnEtcdLeaderFreeze(t *testing.T) {
	t.Parallel()
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("HAVEN_TEST_FREEZE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	extra := ""
	if v := os.Getenv("HAVEN_TEST_LOCK_DELAY"); v != "" {
		extra = "\nlock_delay: " + v
	}
	l := newProxyLabWith(t, false, extra)
	_, _, s := l.begin()
	const lease = 3 * time.Second // timings
	moved := 0
	for round := 1; round <= rounds; round++ {
		holder, _ := l.holder(30 * time.Second)
		holderFreeze := round%2 == 0
		to := holder
		if !holderFreeze {
			to = l.other(holder)
		}
		leader := l.etcdLeader(t)
		if (leader == holder) != holderFreeze {
			l.moveEtcdLeader(t, leader, to)
			leader = to
		}
		leader.signal(t, syscall.SIGSTOP)
		frozen := time.Now()
		time.Sleep(lease + 500*time.Millisecond - 300*time.Millisecond)
		if !holderFreeze {
			holder.signal(t, syscall.SIGSTOP)
		}
		time.Sleep(300 * time.Millisecond)
		leader.signal(t, syscall.SIGCONT)
		woke := time.Now()
		if !holderFreeze {
			time.Sleep(1200 * time.Millisecond)
			holder.signal(t, syscall.SIGCONT)
		}
		// The woken lessor's revocation comes within a tick of the wake;
		// the next holder then waits the lock-delay.
		time.Sleep(2 * time.Second)
		next, _ := l.holder(30 * time.Second)
		if next != holder {
			moved++
		}
		delay := "none"
		if st, err := l.status(next); err == nil {
			for _, v := range st.Nodes {
				if d := v.VIPLockDelay; v.Name == next.name && d != nil && d.Waited > 0 {
					delay = fmt.Sprintf("%s waited %s at epoch %d", next.name, d.Waited.Round(time.Millisecond), d.Epoch)
				}
			}
		}
		t.Logf("round %d: froze %s (%s) for %s; %s held the VIP before, %s after (%s after the wake); latest VIP lock-delay: %s",
			round, leader.name, map[bool]string{true: "the holder", false: "not the holder; the holder paused across its wake"}[holderFreeze],
			woke.Sub(frozen).Round(time.Millisecond), holder.name, next.name, time.Since(woke).Round(time.Millisecond), delay)
		s.mu.Lock()
		held := append([]look(nil), s.held...) // the sampler goes on appending
		spans := append([]look(nil), s.spans...)
		s.mu.Unlock()
		for _, looks := range [][]look{held, spans} {
			if x, y, ok := s.overlaps(looks); ok {
				t.Fatalf("round %d: two holders: %s had the VIP during [%s, %s], %s during [%s, %s]", round,
					x.node, x.from.Format("15:04:05.000"), x.to.Format("15:04:05.000"), y.node, y.from.Format("15:04:05.000"), y.to.Format("15:04:05.000"))
			}
		}
	}
	t.Logf("%d rounds: the VIP moved in %d", rounds, moved)
	s.check(t)
}

// other is a node other than n.
func (l *proxyLab) other(n *node) *node {
	for _, o := range l.nodes {
		if o != n {
			return o
		}
	}
	return nil
}

// etcdLeader is the node whose etcd member leads raft, as the agents say.
func (l *proxyLab) etcdLeader(t *testing.T) *node {
	t.Helper()
	var leader *node
	waitFor(t, 10*time.Second, "an agent to say which etcd member leads", func() bool {
		for _, n := range l.nodes {
			name := harness.EtcdLeader(context.Background(), hc, n.api)
			for _, m := range l.nodes {
				if m.name == name {
					leader = m
					return true
				}
			}
		}
		return false
	})
	return leader
}

// moveEtcdLeader hands raft leadership to member to, asking the leader's
// client URL (on the cluster network), and waits until the agents say so;
// from is the leader as last seen. A transfer that fails is tried again,
// up to 30 s.
func (l *proxyLab) moveEtcdLeader(t *testing.T, from, to *node) {
	t.Helper()
	var last error
	waitFor(t, 30*time.Second, "etcd leadership to move to "+to.name, func() bool {
		for _, n := range l.nodes {
			if n.name == harness.EtcdLeader(context.Background(), hc, to.api) {
				from = n
			}
		}
		if from == to {
			return true
		}
		last = harness.MoveEtcdLeader("http://"+from.clusterIP+":7402", nil, to.name)
		if last != nil {
			t.Logf("move etcd leadership from %s to %s: %v", from.name, to.name, last)
			return false
		}
		return harness.Until(5*time.Second, func() bool {
			return harness.EtcdLeader(context.Background(), hc, to.api) == to.name
		})
	})
}
