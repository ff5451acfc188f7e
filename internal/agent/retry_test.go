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
