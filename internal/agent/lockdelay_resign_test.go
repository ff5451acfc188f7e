package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
)

// resignStore takes every resign at once and counts them.
type resignStore struct {
	ha.Store
	resigns atomic.Int32
}

func (s *resignStore) Resign(context.Context, string, ha.Epoch) error {
	s.resigns.Add(1)
	return nil
}

// TestResignAfterLockDelayEndsOnStop: a resign of a tenure still within its
// lock-delay waits for it, unless the agent stops: then it is skipped at
// once (the key goes with the session, unrecorded, and the next winner
// waits) instead of holding the stop up to lease_ttl.
func TestResignAfterLockDelayEndsOnStop(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	for _, tc := range []struct {
		name      string
		stopFirst bool // stopping before the resign is asked for
	}{{"stopping during the wait", false}, {"stopping already", true}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1000, 0))
			st := &resignStore{}
			a, err := New(cfg, node, st, clk, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			// Won epoch 7 after n1's key at epoch 5 went without a record:
			// the lock-delay runs an hour.
			a.ld.NoteVacancy(ha.Snapshot{Tenure: ha.Tenure{Epoch: 5, Node: "n1"}}, false, 5)
			o := lockdelay.Options{Enabled: true, LeaseTTL: time.Hour, FenceMargin: time.Second}
			if p := a.ld.Decide(o, "a", nil, 7); p.Decision.Wait != time.Hour {
				t.Fatalf("decision %+v, want an hour's wait", p.Decision)
			}
			stop := func() {
				s := a.State()
				s.Stopping = true
				a.state.Store(&s)
			}
			if tc.stopFirst {
				stop()
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { a.worker(ctx); close(done) }()
			before := clk.Pending()
			a.work <- machine.Resign{Epoch: 7}
			if !tc.stopFirst {
				// The resign waits on the fake clock: it has not resigned.
				for clk.Pending() <= before {
					time.Sleep(time.Millisecond)
				}
				if n := st.resigns.Load(); n != 0 {
					t.Fatalf("%d resigns within the lock-delay", n)
				}
				stop()
			}
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the worker still waits for the lock-delay after the stop")
			}
			if n := st.resigns.Load(); n != 0 {
				t.Fatalf("%d resigns: a stopping agent within the lock-delay must leave the key unrecorded to its session", n)
			}
		})
	}
}

// TestResignAfterLockDelayWaits: without a stop, the resign comes once the
// lock-delay is over, not before.
func TestResignAfterLockDelayWaits(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	clk := clock.NewFake(time.Unix(1000, 0))
	st := &resignStore{}
	a, err := New(cfg, node, st, clk, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.ld.NoteVacancy(ha.Snapshot{Tenure: ha.Tenure{Epoch: 5, Node: "n1"}}, false, 5)
	a.ld.Decide(lockdelay.Options{Enabled: true, LeaseTTL: time.Hour, FenceMargin: time.Second}, "a", nil, 7)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.worker(ctx)
	before := clk.Pending()
	a.work <- machine.Resign{Epoch: 7}
	for clk.Pending() <= before {
		time.Sleep(time.Millisecond)
	}
	if n := st.resigns.Load(); n != 0 {
		t.Fatalf("%d resigns within the lock-delay", n)
	}
	clk.Advance(time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for st.resigns.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no resign after the lock-delay ended")
		}
		time.Sleep(time.Millisecond)
	}
}
