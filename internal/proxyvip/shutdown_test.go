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

// cutClient is a store client that stops answering Resign once cut is
// closed (a node cut off from the store when it is stopped).
type cutClient struct {
	*memstore.Client
	cut chan struct{}
}

func (c *cutClient) Resign(ctx context.Context, node string, epoch ha.Epoch) error {
	select {
	case <-c.cut:
		<-ctx.Done()
		return ctx.Err()
	default:
	}
	return c.Client.Resign(ctx, node, epoch)
}

// TestStopDoesNotWaitOnAnUnreachableStore: a holder stopped while the store
// does not answer removes the address at once and gives the resign one
// call's time (half a lease), not five retries of it.
func TestStopDoesNotWaitOnAnUnreachableStore(t *testing.T) {
	t.Parallel()
	seg := newSegment()
	cc := &cutClient{Client: memstore.New(clock.Real{}).Client(), cut: make(chan struct{})}
	health := make(chan check.Result, 1)
	health <- check.Result{Healthy: true}
	const lease = 4 * time.Second
	e, err := New(Options{
		Node: "n1", Dial: func(context.Context) (ha.Coordinator, error) { return cc, nil },
		Address: &addr{s: seg, node: "n1"}, Health: health, Lifetime: lifetime,
		LeaseTTL: lease, RenewInterval: 100 * time.Millisecond, RenewTimeout: 400 * time.Millisecond,
		FenceMargin: 500 * time.Millisecond, PromoteBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); !e.Held(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("the only node never held the address")
		}
	}
	close(cc.cut)
	start := time.Now()
	cancel()
	<-done
	if took := time.Since(start); took > lease {
		t.Errorf("Run returned %s after it was stopped with the store not answering; want within a lease (%s)", took, lease)
	}
	if h := seg.holders(); len(h) != 0 {
		t.Errorf("still held after Run returned: %v", h)
	}
}
