package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// cutStore is a store cut off from the agent: every Resign waits for its
// deadline and fails.
type cutStore struct {
	ha.Store
	resigns atomic.Int32
	entered chan struct{}
}

func (s *cutStore) Resign(ctx context.Context, _ string, _ ha.Epoch) error {
	s.resigns.Add(1)
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return errors.New("store unreachable: " + ctx.Err().Error())
}

// TestStopEndsAResignThatBeganBefore: a resign that began before the agent
// was asked to stop, with the store cut off, gives up about a lease after
// the stop (the key expires with the session) instead of running all its
// tries: a cut-off agent stopped 12 s after SIGTERM, over the 15 s a service
// manager or test gives on a loaded machine.
func TestStopEndsAResignThatBeganBefore(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	st := &cutStore{entered: make(chan struct{}, 1)}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.worker(ctx) })
	a.dispatch(Plan([]machine.Action{machine.Resign{Epoch: 7}}))
	select {
	case <-st.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the resign did not start")
	}
	stopped := time.Now()
	s := a.State()
	s.Stopping = true
	a.state.Store(&s)
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	bound := cfg.Timing.LeaseTTL + 2*callTimeout(cfg.Timing) + time.Second
	select {
	case <-done:
	case <-time.After(bound + 10*time.Second):
		t.Fatalf("the worker still resigning %s after the stop (%d tries)", time.Since(stopped), st.resigns.Load())
	}
	if d := time.Since(stopped); d > bound {
		t.Fatalf("the resign went on for %s after the stop (%d tries), want at most about a lease (%s)", d, st.resigns.Load(), bound)
	}
}
