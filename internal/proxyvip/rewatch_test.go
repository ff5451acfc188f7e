package proxyvip

import (
	"context"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// lateSession is a store client whose first session is created only after
// the watch's first snapshot has been passed on, the order in which a
// loaded machine may run them.
type lateSession struct {
	*memstore.Client
	seen chan struct{}
}

func (c *lateSession) Watch(ctx context.Context) <-chan ha.Snapshot {
	in := c.Client.Watch(ctx)
	out := make(chan ha.Snapshot)
	go func() {
		defer close(out)
		for s := range in {
			select {
			case out <- s:
			case <-ctx.Done():
				return
			}
			select {
			case <-c.seen:
			default:
				close(c.seen)
			}
		}
	}()
	return out
}

func (c *lateSession) NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error) {
	select {
	case <-c.seen:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	time.Sleep(50 * time.Millisecond) // the snapshot's LeaderSeen is stepped first
	return c.Client.NewSession(ctx, ttl)
}

// TestSessionAfterFirstSnapshot: a new session makes the machine forget
// the leader it knew; when the only snapshot came before the session and
// nothing changes in the store afterwards, the elector must read the
// leader again, or no node ever holds the VIP (it happened in CI).
func TestSessionAfterFirstSnapshot(t *testing.T) {
	t.Parallel()
	seg := newSegment()
	cc := &lateSession{Client: memstore.New(clock.Real{}).Client(), seen: make(chan struct{})}
	health := make(chan check.Result, 1)
	health <- check.Result{Healthy: true}
	e, err := New(Options{
		Node: "n1", Dial: func(context.Context) (ha.Coordinator, error) { return cc, nil },
		Address: &addr{s: seg, node: "n1"}, Health: health, Lifetime: lifetime,
		LeaseTTL: 2 * time.Second, RenewInterval: 100 * time.Millisecond, RenewTimeout: 400 * time.Millisecond,
		FenceMargin: 300 * time.Millisecond, PromoteBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !e.Held(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the only node never held the address; its machine: %+v", e.State())
		}
	}
}
