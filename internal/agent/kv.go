package agent

import (
	"context"
	"errors"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// kvFor checks that this node may touch the data at epoch. The store
// checks again, and its check is the one that counts; this one only spares
// it requests that cannot succeed.
func (a *Agent) kvFor(epoch ha.Epoch) (ha.FencedData, error) {
	st := a.State()
	if !st.Serving(a.mcfg, a.clk.Now()) {
		return nil, ha.Errorf(ha.KindConflict, "%s is not serving as active (role %s); nothing was written", a.node.Name, st.Role)
	}
	if st.Epoch != epoch {
		return nil, ha.Errorf(ha.KindConflict, "epoch %d is not current on %s (it serves at %d); nothing was written", epoch, a.node.Name, st.Epoch)
	}
	return a.store, nil
}

func kvErr(err error, epoch ha.Epoch) error {
	if errors.Is(err, ha.ErrNotLeader) {
		return ha.Wrap(ha.KindConflict, err, "epoch %d is no longer current in the store; nothing was written", epoch)
	}
	return ha.Wrap(ha.KindInternal, err, "the store did not answer (the write may or may not have committed)")
}

// KVPut writes key through the fence: it commits only while this node holds
// the active role at req.Epoch.
func (a *Agent) KVPut(ctx context.Context, key string, req api.KVPutRequest) (api.KVResult, error) {
	kv, err := a.kvFor(req.Epoch)
	if err != nil {
		return api.KVResult{}, err
	}
	var (
		rev    int64
		repeat bool
	)
	err = retryStore(ctx, a.clk, a.cfg.Timing, req.ID != "", func(ctx context.Context) error {
		var err error
		rev, repeat, err = kv.FencedPut(ctx, a.node.Name, req.Epoch, key, req.Value, req.ID)
		return err
	})
	if err != nil {
		return api.KVResult{}, kvErr(err, req.Epoch)
	}
	return api.KVResult{Key: key, Value: req.Value, Found: true, Node: a.node.Name, Epoch: req.Epoch, Rev: rev, Repeat: repeat}, nil
}

// KVGet reads key through the fence.
func (a *Agent) KVGet(ctx context.Context, key string, epoch ha.Epoch) (api.KVResult, error) {
	kv, err := a.kvFor(epoch)
	if err != nil {
		return api.KVResult{}, err
	}
	var (
		v     string
		found bool
		rev   int64
	)
	err = retryStore(ctx, a.clk, a.cfg.Timing, true, func(ctx context.Context) error {
		var err error
		v, found, rev, err = kv.FencedGet(ctx, a.node.Name, epoch, key)
		return err
	})
	if err != nil {
		if errors.Is(err, ha.ErrNotLeader) {
			return api.KVResult{}, ha.Wrap(ha.KindConflict, err, "epoch %d is no longer current in the store", epoch)
		}
		return api.KVResult{}, ha.Wrap(ha.KindUnavailable, err, "read %s", key)
	}
	return api.KVResult{Key: key, Value: v, Found: found, Node: a.node.Name, Epoch: epoch, Rev: rev}, nil
}

// retryStore calls f again, for up to 5/4 lease_ttl (2.5 s on LAN), while
// the store fails for reasons other than the fence: a leader change drops
// proposals, or loses one forwarded to a leader that stopped (and this
// agent moves etcd leadership away from itself right after a promotion).
// Each try gets max(renew_timeout, lease_ttl/3) (667 ms on LAN). Only when
// safe: reads, and writes with an idempotency id.
func retryStore(ctx context.Context, clk clock.Clock, t config.Timing, safe bool, f func(context.Context) error) error {
	deadline := clk.Now().Add(t.LeaseTTL * 5 / 4)
	backoff := 20 * time.Millisecond
	for {
		try := ctx
		cancel := func() {}
		if safe {
			try, cancel = clock.WithTimeout(ctx, clk, max(t.RenewTimeout, t.LeaseTTL/3))
		}
		err := f(try)
		cancel()
		if err == nil || !safe || errors.Is(err, ha.ErrNotLeader) || ctx.Err() != nil || clk.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-clk.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

var _ api.KVStore = (*Agent)(nil)
