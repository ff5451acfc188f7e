package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// pair dials two stores on the etcd at addr, B through a forwarder.
func pair(t *testing.T, addr string) storetest.Pair {
	cluster := storetest.Cluster(t)
	fw := storetest.Forward(t, addr)
	dial := func(ep string) *Store {
		s, err := Dial(cluster, []string{ep}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := dial(addr), dial(fw.Addr)
	// etcd revokes expired leases on a 500ms tick.
	return storetest.Pair{A: a, B: b, Cut: fw.Cut, Heal: fw.Heal, Expiry: time.Second, WatchDelay: 500 * time.Millisecond}
}

func TestEmbeddedEtcd(t *testing.T) {
	m, client := startOneMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Alone, the member leads and has no one to hand leadership to: the
	// agent must hear "nothing to do", not "moved" (the log spam of #17).
	for !m.IsLeader() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.MoveLeaderAway(ctx, []string{"m1", "ghost"}); !errors.Is(err, ErrNoOtherMember) {
		t.Fatalf("MoveLeaderAway on a one-member cluster = %v, want ErrNoOtherMember", err)
	}
	storetest.Run(t, func(t *testing.T) storetest.Pair { return pair(t, client) })
}

func TestExternalEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t)
	storetest.Run(t, func(t *testing.T) storetest.Pair { return pair(t, srv.Addr) })
	t.Run("RaiseEpoch", func(t *testing.T) {
		p := pair(t, srv.Addr)
		s := p.A.(*Store)
		cur, err := s.MaxEpoch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RaiseEpoch(context.Background(), cur+50); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewSession(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		if e, err := s.Campaign(context.Background(), "a"); err != nil || e <= cur+50 {
			t.Fatalf("campaign after raise: %d, %v; want > %d", e, err, cur+50)
		}
	})
}

// TestWatchStall: a watch on a member that goes silent (its connection
// open, nothing coming back, as with a frozen process) starts over on
// another endpoint within the stall bound and sees the changes it missed,
// and says first that its view is behind (ha.Snapshot.Behind). Without the
// watchdog it would wait for the member to wake.
func TestWatchStall(t *testing.T) {
	srv := storetest.StartEtcd(t)
	cluster := storetest.Cluster(t)
	frozen, other := storetest.Forward(t, srv.Addr), storetest.Forward(t, srv.Addr)
	// The watcher starts with the frozen endpoint only, so its watch is
	// on that one; the other is added before the freeze.
	w, err := Dial(cluster, []string{frozen.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	const stall = 400 * time.Millisecond
	w.SetWatchStall(stall)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := w.Watch(ctx)
	select {
	case <-snaps:
	case <-time.After(10 * time.Second):
		t.Fatal("no first snapshot")
	}
	w.Client().SetEndpoints("http://"+frozen.Addr, "http://"+other.Addr)

	writer, err := Dial(cluster, []string{srv.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	if _, err := writer.NewSession(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	frozen.Cut()
	frozenAt := time.Now()
	if _, err := writer.Campaign(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	behind := false
	for {
		select {
		case s := <-snaps:
			if s.Behind {
				// The restart said so first, with the data it had.
				if s.Leader.Node == "n1" {
					t.Fatalf("a Behind snapshot with news in it: %+v", s)
				}
				behind = true
				continue
			}
			if s.Leader.Node != "n1" {
				continue
			}
			if !behind {
				t.Fatal("the watch started over without a Behind snapshot: its reader took its stalled view as current all along")
			}
			took := time.Since(frozenAt)
			t.Logf("the new leader reached the watcher %s after its member froze (stall bound %s)", took.Round(time.Millisecond), stall)
			return
		case <-deadline:
			t.Fatalf("the watcher still had not seen the new leader 10s after its member froze (stall bound %s)", stall)
		}
	}
}
