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

// newCutAgent is agent a of testConfig on a cutStore.
func newCutAgent(t *testing.T) (*Agent, *cutStore) {
	t.Helper()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	st := &cutStore{entered: make(chan struct{}, 1)}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return a, st
}

// TestStopEndsAResignThatBeganBefore: a resign that began before the agent
// was asked to stop, with the store cut off, gives up about a lease after
// the stop (the key expires with the session) instead of running all its
// tries: a cut-off agent stopped 12 s after SIGTERM, over the 15 s a service
// manager or test gives on a loaded machine.
func TestStopEndsAResignThatBeganBefore(t *testing.T) {
	t.Parallel()
	a, st := newCutAgent(t)
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
	bound := a.cfg.Timing.LeaseTTL + 2*callTimeout(a.cfg.Timing) + time.Second
	select {
	case <-done:
	case <-time.After(bound + 10*time.Second):
		t.Fatalf("the worker still resigning %s after the stop (%d tries)", time.Since(stopped), st.resigns.Load())
	}
	if d := time.Since(stopped); d > bound {
		t.Fatalf("the resign went on for %s after the stop (%d tries), want at most about a lease (%s)", d, st.resigns.Load(), bound)
	}
}

// quickStore answers every session call at once.
type quickStore struct {
	ha.Store
	calls atomic.Int32
}

func (s *quickStore) NewSession(_ context.Context, ttl time.Duration) (time.Duration, error) {
	s.calls.Add(1)
	return ttl, nil
}

func (s *quickStore) Renew(_ context.Context) (time.Duration, error) {
	s.calls.Add(1)
	return time.Second, nil
}

// Publish: the renewer writes the record before it reports a new session
// (lease.Options.Created).
func (s *quickStore) Publish(context.Context, ha.NodeStatus) error { return nil }

// TestRenewEndsWithAFullQueue: the renewer ends when its context does,
// even with the machine's event queue full and nobody reading it, as after
// Run's loop has stopped. It used to send its SessionRenewed without
// looking at the context: after a SIGSTOP/SIGCONT the queue filled during
// the shutdown, Run waited for the renewer forever, and the agent did not
// stop within 15 s of SIGTERM.
func TestRenewEndsWithAFullQueue(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	st := &quickStore{}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for len(a.events) < cap(a.events) {
		a.events <- machine.Tick{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.renew(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for st.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the renewer did not create its session")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the renewer did not end with its context: it waits on the full event queue")
	}
}

// TestStopEndsQueuedResigns: a stopping agent with many resigns queued
// behind a cut-off store is done with all of them about a lease after the
// stop, not a lease per resign: the machine asks again each time it sees
// the key still held, and an agent in the VIP lab was still resigning 15 s
// after SIGTERM, one 3 s give-up after another.
func TestStopEndsQueuedResigns(t *testing.T) {
	t.Parallel()
	a, st := newCutAgent(t)
	s := a.State()
	s.Stopping = true
	a.state.Store(&s)
	for range 8 {
		a.work <- machine.Resign{Epoch: 7}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the worker drains what the shutdown asked for
	stopped := time.Now()
	done := make(chan struct{})
	go func() { a.worker(ctx); close(done) }()
	bound := a.cfg.Timing.LeaseTTL + 2*callTimeout(a.cfg.Timing) + time.Second
	select {
	case <-done:
	case <-time.After(bound + 30*time.Second):
		t.Fatalf("the worker still resigning %s after the stop (%d tries)", time.Since(stopped), st.resigns.Load())
	}
	if d := time.Since(stopped); d > bound {
		t.Fatalf("the queued resigns went on for %s after the stop (%d tries), want at most about a lease (%s)", d, st.resigns.Load(), bound)
	}
}
