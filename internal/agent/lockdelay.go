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

// noteVacancy records s's vacancy, if the key is vacant in it; wasVacant
// says whether the previous snapshot's was too (same vacancy), held the
// epoch of the key last seen held. It reports whether the key is vacant
// in s.
func (a *Agent) noteVacancy(s ha.Snapshot, wasVacant bool, held ha.Epoch) bool {
	if !s.Leader.None() {
		return false
	}
	v := lockdelay.Vacancy{Tenure: s.Tenure, Since: a.clk.Now(), Epoch: held}
	// The same vacancy only if no campaign came between: snapshots are
	// coalesced (ha.SendLatest, a watch that reconnects), so "vacant, then
	// vacant" may hide a key won and lost meanwhile; every campaign writes
	// the tenure record, so a record of another epoch is a new vacancy,
	// counted from now.
	if p := a.vacancy.Load(); wasVacant && p != nil && p.Tenure.Epoch == s.Tenure.Epoch && p.Epoch == held {
		v.Since = p.Since
	}
	a.vacancy.Store(&v)
	return true
}

// pendingDelay is the lock-delay decided when this node won epoch.
type pendingDelay struct {
	epoch    ha.Epoch
	d        lockdelay.Decision
	previous ha.Tenure
}

// decideLockDelay decides, right after the campaign won epoch, how long the
// promotion must wait (lockdelay.Decide on the vacancy this node saw).
func (a *Agent) decideLockDelay(epoch ha.Epoch) {
	var v lockdelay.Vacancy
	if p := a.vacancy.Load(); p != nil {
		v = *p
	} else {
		v.Since = a.startedAt // never saw the key vacant: count from the start
	}
	if st, ok := a.store.(ha.PreviousTenurer); ok {
		// The record the winning transaction replaced. Another one than
		// the vacancy's: a key was won and lost between the vacancy this
		// node saw and its win (the watch coalesced it), so that vacancy
		// says nothing; its key went before the win's answer came, so
		// count from now.
		if prev, ok := st.PreviousTenure(epoch); ok {
			if prev.Epoch != v.Tenure.Epoch {
				v.Since = a.clk.Now()
			}
			v.Tenure = prev
		}
	}
	d := lockdelay.Decide(a.lockDelayOptions(), a.node.Name, v, a.clk.Now())
	a.pending.Store(&pendingDelay{epoch: epoch, d: d, previous: v.Tenure})
}

// lockDelay waits, before the promotion at epoch acts, until the previous
// holder can no longer act, then records that this tenure is settled.
func (a *Agent) lockDelay(ctx context.Context, epoch ha.Epoch) error {
	p := a.pending.Load()
	if p == nil || p.epoch != epoch {
		a.decideLockDelay(epoch) // a reclaimed key: decide now
		p = a.pending.Load()
	}
	if wait := p.d.Until.Sub(a.clk.Now()); wait > 0 {
		a.log.Warn("waiting for the old active's lease to run out before acting (lock delay)",
			"epoch", epoch, "wait", wait.Round(time.Millisecond), "previous", p.previous.Node, "previous_epoch", p.previous.Epoch, "why", p.d.Reason)
		signal(a.publishC) // status shows the wait
		start := a.clk.Now()
		select {
		case <-a.clk.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("lock delay: %w", ctx.Err())
		}
		waited := a.clk.Now().Sub(start)
		a.lockDelayed.Store(&ha.LockDelay{Epoch: epoch, Waited: waited, Reason: p.d.Reason})
		a.metrics.lockDelay.Observe(waited.Seconds())
		a.record(ha.Event{Kind: "lock-delay", Epoch: epoch, From: p.previous.Node, To: a.node.Name,
			Reason: fmt.Sprintf("waited %s for the old active's lease to run out: %s", waited.Round(time.Millisecond), p.d.Reason)})
	} else {
		a.log.Debug("lock delay: no wait", "epoch", epoch, "why", p.d.Reason)
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
// acts at once, so it must not come while the previous holder may act.
func (a *Agent) resignAfterLockDelay(epoch ha.Epoch) {
	p := a.pending.Load()
	if p == nil || p.epoch != epoch {
		return
	}
	if wait := p.d.Until.Sub(a.clk.Now()); wait > 0 {
		a.log.Info("resign waits for the lock delay to end", "epoch", epoch, "wait", wait.Round(time.Millisecond))
		a.clk.Sleep(wait)
	}
}

// lockDelayRecord puts the lock-delay into this node's record at now: the
// wait in progress (promoting), else the latest promotion that waited.
func (a *Agent) lockDelayRecord(rec *ha.NodeStatus, st machine.State, now time.Time) {
	if p := a.pending.Load(); p != nil && st.Role == ha.RolePromoting && p.epoch == st.Epoch && p.d.Until.After(now) {
		rec.Why = fmt.Sprintf("waiting %s for the old active's lease to run out (lock delay)", p.d.Until.Sub(now).Round(time.Millisecond))
		rec.LockDelay = &ha.LockDelay{Epoch: p.epoch, Until: wall(a.startedAt, p.d.Until, now), Reason: p.d.Reason}
		return
	}
	rec.LockDelay = a.lockDelayed.Load()
}

// LastLockDelay is the latest promotion of this node that waited on the
// lock-delay, nil if none did.
func (a *Agent) LastLockDelay() *ha.LockDelay { return a.lockDelayed.Load() }
