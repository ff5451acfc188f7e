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

// refusingStore refuses the first writes at once, as etcd does with
// "raft proposal dropped" while its leadership moves, then takes them.
type refusingStore struct {
	ha.Store
	refuse    atomic.Int32 // writes still to refuse
	events    atomic.Int32
	published chan ha.NodeStatus
}

var errDropped = errors.New("raft proposal dropped")

func (s *refusingStore) AppendEvent(context.Context, ha.Event) error {
	if s.refuse.Add(-1) >= 0 {
		return errDropped
	}
	s.events.Add(1)
	return nil
}

func (s *refusingStore) Publish(_ context.Context, st ha.NodeStatus) error {
	if s.refuse.Add(-1) >= 0 {
		return errDropped
	}
	s.published <- st
	return nil
}

// TestRefusedWritesAreRetried: an event or a status record the store
// refused at once is written a moment later, not lost (the event) or left
// stale until the next heartbeat (the record).
func TestRefusedWritesAreRetried(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	st := &refusingStore{published: make(chan ha.NodeStatus, 16)}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { a.eventWriter(ctx) })
	wg.Go(func() { a.publisher(ctx) })

	st.refuse.Store(3)
	a.record(ha.Event{Kind: "role", From: "promoting", To: "active"})
	deadline := time.Now().Add(10 * time.Second)
	for st.events.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refused event was never written")
		}
		time.Sleep(10 * time.Millisecond)
	}

	st.refuse.Store(2)
	start := time.Now()
	signal(a.publishC)
	select {
	case <-st.published:
	case <-time.After(10 * time.Second):
		t.Fatal("the refused record was never written")
	}
	// The heartbeat comes every 2 s; two retries take about 200 ms.
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("the refused record was written %s later: at the heartbeat, not retried", d)
	}
}

// cutResignStore answers no resign, as a store cut off from this node.
type cutResignStore struct {
	ha.Store
	tries chan struct{}
}

func (s *cutResignStore) Resign(ctx context.Context, _ string, _ ha.Epoch) error {
	s.tries <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// TestResignStopsWithItsSession: the retries of a resign on a store that
// does not answer end once the store has dropped the session the key was
// bound to (the key went with it), instead of holding the worker for up to
// ResignTries calls of a lease and a half each (TestChaos: a fenced node's
// resigns of its old epoch ran on after it had a new session).
func TestResignStopsWithItsSession(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	st := &cutResignStore{tries: make(chan struct{}, ResignTries)}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.do(context.Background(), machine.Resign{Epoch: 5}) }()
	select {
	case <-st.tries:
	case <-time.After(10 * time.Second):
		t.Fatal("no resign tried")
	}
	start := time.Now()
	a.sessGone.lost()
	select {
	case <-done:
	case <-time.After(ResignTries * callTimeout(cfg.Timing)):
		t.Fatal("the resign went on after its session was gone")
	}
	if d := time.Since(start); d > callTimeout(cfg.Timing)/2 {
		t.Fatalf("the resign ended %s after its session was gone: it waited for its try's deadline", d)
	}
	if n := len(st.tries); n != 0 {
		t.Fatalf("%d more tries after the session was gone", n)
	}
}
