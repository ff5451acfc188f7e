package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
)

// Lock-delay (package lockdelay): the watch notes each vacancy of the
// leader key (the store's tenure record and when this node first saw the
// key vacant); a promotion first waits as long as lockdelay.Decide says.

// lockDelayOptions are the guard's settings for this agent's store.
func (a *Agent) lockDelayOptions() lockdelay.Options {
	r, ok := a.store.(ha.EarlyRevoker)
	return lockdelay.Options{
		Enabled:     ok && r.EarlyRevocation() && a.cfg.LockDelay != config.LockDelayOff,
		LeaseTTL:    a.cfg.Timing.LeaseTTL,
		FenceMargin: a.cfg.Timing.FenceMargin,
	}
}

// decideLockDelay decides, right after the campaign won epoch, how long the
// promotion must wait (lockdelay.Tracker.Decide on the vacancy this node saw).
func (a *Agent) decideLockDelay(epoch ha.Epoch) lockdelay.Pending {
	return a.ld.Decide(a.lockDelayOptions(), a.node.Name, a.store, epoch)
}

// lockDelay waits, before the promotion at epoch acts, until the previous
// holder can no longer act, then records that this tenure is settled.
func (a *Agent) lockDelay(ctx context.Context, epoch ha.Epoch) error {
	p, ok := a.ld.Pending(epoch)
	if !ok {
		p = a.decideLockDelay(epoch) // a reclaimed key: decide now
	}
	if wait := p.Decision.Until.Sub(a.clk.Now()); wait > 0 {
		a.log.Warn("waiting for the old active's lease to run out before acting (lock delay)",
			"epoch", epoch, "wait", wait.Round(time.Millisecond), "previous", p.Previous.Node, "previous_epoch", p.Previous.Epoch, "why", p.Decision.Reason)
		signal(a.publishC) // status shows the wait
		start := a.clk.Now()
		select {
		case <-a.clk.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("lock delay: %w", ctx.Err())
		}
		waited := a.clk.Now().Sub(start)
		a.lockDelayed.Store(&ha.LockDelay{Epoch: epoch, Waited: waited, Reason: p.Decision.Reason})
		a.metrics.lockDelay.Observe(waited.Seconds())
		a.record(ha.Event{Kind: "lock-delay", Epoch: epoch, From: p.Previous.Node, To: a.node.Name,
			Reason: fmt.Sprintf("waited %s for the old active's lease to run out: %s", waited.Round(time.Millisecond), p.Decision.Reason)})
	} else {
		a.log.Debug("lock delay: no wait", "epoch", epoch, "why", p.Decision.Reason)
	}
	if st, ok := a.store.(ha.TenureSettler); ok {
		// Not waited on: a tenure left unsettled only makes the next
		// winner wait.
		go func() {
			sctx, cancel := clock.WithTimeout(context.WithoutCancel(ctx), a.clk, callTimeout(a.cfg.Timing))
			defer cancel()
			if err := st.Settle(sctx, a.node.Name, epoch); err != nil {
				a.log.Debug("lock delay: cannot settle the tenure; the next winner will wait", "epoch", epoch, "err", err)
			}
		}()
	}
	return nil
}

// resignAfterLockDelay holds a resign of epoch until the lock-delay decided
// for it is over: the resign records a clean end, on which the next winner
// acts at once, so it must not come while the previous holder may act. It
// reports whether to resign: not when the agent is stopping (or ctx ends)
// before the wait is over: a stopping agent does not wait up to lease_ttl
// for a resign; the key then goes with its session, unrecorded, and the
// next winner waits.
func (a *Agent) resignAfterLockDelay(ctx context.Context, epoch ha.Epoch) bool {
	wait := a.ld.ResignWait(epoch, a.clk.Now())
	if wait == 0 {
		return true
	}
	if a.State().Stopping || ctx.Err() != nil {
		a.log.Info("stopping: not resigning before the lock delay ends; the key goes with the session and the next winner waits", "epoch", epoch)
		return false
	}
	a.log.Info("resign waits for the lock delay to end", "epoch", epoch, "wait", wait.Round(time.Millisecond))
	select {
	case <-a.clk.After(wait):
	case <-ctx.Done():
		a.log.Info("stopping: not resigning before the lock delay ends; the key goes with the session and the next winner waits", "epoch", epoch)
		return false
	}
	return !a.State().Stopping
}

// lockDelayRecord puts the lock-delay into this node's record at now: the
// wait in progress (promoting), else the latest promotion that waited.
func (a *Agent) lockDelayRecord(rec *ha.NodeStatus, st machine.State, now time.Time) {
	if p, ok := a.ld.Pending(st.Epoch); ok && st.Role == ha.RolePromoting && p.Decision.Until.After(now) {
		rec.Why = fmt.Sprintf("waiting %s for the old active's lease to run out (lock delay)", p.Decision.Until.Sub(now).Round(time.Millisecond))
		rec.LockDelay = &ha.LockDelay{Epoch: p.Epoch, Until: wall(a.startedAt, p.Decision.Until, now), Reason: p.Decision.Reason}
		return
	}
	rec.LockDelay = a.lockDelayed.Load()
}

// LastLockDelay is the latest promotion of this node that waited on the
// lock-delay, nil if none did.
func (a *Agent) LastLockDelay() *ha.LockDelay { return a.lockDelayed.Load() }
