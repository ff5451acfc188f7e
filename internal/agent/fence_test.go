package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// hungStore is a store whose coordination calls hang and ignore their
// deadline (the worst a driver can do) until release is closed.
type hungStore struct {
	ha.Store
	entered chan string
	release chan struct{}

	mu    sync.Mutex
	calls []string
}

func (s *hungStore) hang(name string) {
	s.entered <- name
	<-s.release
	s.mu.Lock()
	s.calls = append(s.calls, name)
	s.mu.Unlock()
}

func (s *hungStore) ClearSwitchover(context.Context, string) error  { s.hang("clear"); return nil }
func (s *hungStore) Resign(context.Context, string, ha.Epoch) error { s.hang("resign"); return nil }

func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	yaml := "cluster: c\ndata_dir: " + t.TempDir() + "\n" +
		"nodes:\n  - {name: a, api: '127.0.0.1:1', peer: '127.0.0.1:2', client: '127.0.0.1:3'}\n" +
		"  - {name: b, api: '127.0.0.1:4', peer: '127.0.0.1:5', client: '127.0.0.1:6'}\n" +
		"  - {name: w, witness: true, peer: '127.0.0.1:7', client: '127.0.0.1:8'}\n" + extra
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "haven.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFencedDemotionPassesAHungStore: while the worker is stuck in a store
// call that never returns, a fenced demotion still runs on_demote and
// finishes before the lease's valid_until; the Resign the machine ordered
// after it waits for the demotion, never the other way round.
func TestFencedDemotionPassesAHungStore(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "demoted")
	cfg := testConfig(t, "hooks:\n  on_demote: {command: [sh, -c, 'echo $HAVEN_EPOCH > "+mark+"'], timeout: 250ms}\n")
	a, st := hungAgent(t, cfg)
	defer close(st.release) // before the cleanup stops the worker

	a.dispatch(Plan([]machine.Action{machine.ClearSwitchover{ID: "x"}}))
	if got := <-st.entered; got != "clear" {
		t.Fatalf("store call %q, want clear", got)
	}
	// The worker is now stuck. The lease ends in 2 s (generous for a
	// loaded machine: the point is that the demotion does not wait for
	// the worker, which never returns).
	validUntil := time.Now().Add(2 * time.Second)
	a.dispatch(Plan([]machine.Action{
		machine.Demote{Epoch: 7, Reason: "fence", Fenced: true, Deadline: validUntil},
		machine.Resign{Epoch: 7},
	}))
	var res machine.DemoteResult
	select {
	case ev := <-a.events:
		r, ok := ev.(machine.DemoteResult)
		if !ok {
			t.Fatalf("event %#v, want DemoteResult", ev)
		}
		res = r
	case <-time.After(time.Until(validUntil)):
		t.Fatal("the fenced demotion did not finish before valid_until while the worker was blocked on the store")
	}
	if res.Epoch != 7 || res.Err != nil {
		t.Fatalf("DemoteResult %+v, want epoch 7 without error", res)
	}
	if b, err := os.ReadFile(mark); err != nil || string(b) != "7\n" {
		t.Fatalf("on_demote did not run with HAVEN_EPOCH=7: %q, %v", b, err)
	}
	st.mu.Lock()
	calls := len(st.calls)
	st.mu.Unlock()
	if calls != 0 {
		t.Fatalf("store calls finished while hung: %v", st.calls)
	}
	// The Resign is queued for the worker only now.
	select {
	case act := <-a.work:
		if r, ok := act.(machine.Resign); !ok || r.Epoch != 7 {
			t.Fatalf("queued %#v, want Resign{7}", act)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Resign ordered after the demotion never reached the worker")
	}
}

// TestDispatchHoldsResignBehindDemote: a Resign of the epoch being demoted
// travels with the demotion; other actions go to the worker at once.
func TestDispatchHoldsResignBehindDemote(t *testing.T) {
	cfg := testConfig(t, "")
	node, _ := cfg.NodeByName("a")
	a, err := New(cfg, node, &hungStore{}, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.dispatch(Plan([]machine.Action{machine.Demote{Epoch: 3}, machine.Resign{Epoch: 3}, machine.Resign{Epoch: 2}, machine.Campaign{}}))
	job := <-a.fenceC
	if len(job.Then) != 1 || job.Then[0] != (machine.Resign{Epoch: 3}) {
		t.Fatalf("job.Then = %v, want [Resign{3}]", job.Then)
	}
	if got := <-a.work; got != (machine.Resign{Epoch: 2}) {
		t.Fatalf("first worker action %#v", got)
	}
	if got := <-a.work; got != (machine.Campaign{}) {
		t.Fatalf("second worker action %#v", got)
	}
}

// TestPromotionQueuedBehindTheStoreNeverStartsAfterItsDemotion: a
// promotion waiting on the worker behind a hung store call, then demoted on
// the fencing lane, must not run on_promote once the worker gets to it.
func TestPromotionQueuedBehindTheStoreNeverStartsAfterItsDemotion(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "promoted")
	cfg := testConfig(t, "hooks:\n  on_promote: {command: [touch, "+mark+"], timeout: 1s}\n")
	a, st := hungAgent(t, cfg)

	a.dispatch(Plan([]machine.Action{machine.ClearSwitchover{ID: "x"}, machine.Promote{Epoch: 7, Seq: 1}}))
	<-st.entered // the worker is stuck; the promotion waits behind it
	a.demotedSeq.Store(1)
	a.dispatch(Plan([]machine.Action{machine.Demote{Epoch: 7, Reason: "fence", Fenced: true, Deadline: time.Now().Add(2 * time.Second)}}))
	close(st.release)
	deadline := time.After(10 * time.Second)
	for got := 0; got < 2; {
		select {
		case ev := <-a.events:
			switch ev := ev.(type) {
			case machine.DemoteResult:
				got++
			case machine.PromoteResult:
				if ev.Err == nil {
					t.Fatal("the demoted promotion ran")
				}
				got++
			}
		case <-deadline:
			t.Fatal("no DemoteResult and PromoteResult within 10s")
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("on_promote ran after the demotion")
	}
}

// hungAgent is node a of cfg over a hungStore, with its worker and fencing
// lane running until the test ends.
func hungAgent(t *testing.T, cfg *config.Config) (*Agent, *hungStore) {
	t.Helper()
	node, _ := cfg.NodeByName("a")
	st := &hungStore{entered: make(chan string, 4), release: make(chan struct{})}
	a, err := New(cfg, node, st, clock.Real{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.worker(ctx) }()
	go func() { defer wg.Done(); a.fencer(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return a, st
}
