package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/service"
)

// The fencing lane. Actions that end serving (demote: stop or kill a cold
// service, run on_demote) never wait behind store calls: the worker carries
// out campaigns, resigns and intents one at a time, each for up to a store
// deadline, and a fenced demotion has only fence_margin to finish. So
// demotions go to their own goroutine, carry their deadline from the
// machine (Demote.Deadline), and the Resign that the machine orders after a
// demotion is handed to the worker only once the demotion is over: the key
// must not be released while this node still acts.

// FenceJob is one demotion and the actions the machine ordered after it.
type FenceJob struct {
	Demote machine.Demote
	Then   []machine.Action
}

// fenceStep is one thing a demotion does to stop acting as active. Steps run
// in order, each under the demotion's deadline; a failed step does not stop
// the next ones. A capability that acts on promotion (a virtual IP, say)
// adds its undoing here.
type fenceStep struct {
	name string
	run  func(ctx context.Context, act machine.Demote) error
}

func (a *Agent) fenceSteps() []fenceStep {
	return []fenceStep{
		{"stop acting", a.waitPromoteOver},
		// The VIP goes first: clients stop reaching this node before its
		// service stops, and the address is gone well before valid_until
		// (config check sets aside VIPRemoveBudget of fence_margin for it).
		{"virtual IP", a.demoteVIP},
		{"service", a.demoteService},
		{"on_demote hook", a.demoteHook},
	}
}

// dispatch carries out the effects of one step (Plan, core.go): to the
// publisher, the renewer, the worker and the fencing lane. Only the loop
// goroutine calls it.
func (a *Agent) dispatch(effs []Effect) {
	for _, e := range effs {
		switch e.Kind {
		case DoPublish:
			signal(a.publishC)
		case DoNewSession:
			signal(a.newSessC)
		case DoCancelPromote:
			a.cancelPromote(e.Epoch)
		case DoFence:
			a.fenceC <- e.Job
		case DoWork:
			a.work <- e.Act
		}
	}
}

// fencer carries out demotions as they come, never waiting for the worker.
func (a *Agent) fencer(ctx context.Context) {
	for {
		select {
		case job := <-a.fenceC:
			a.fence(job)
		case <-ctx.Done():
			for {
				select {
				case job := <-a.fenceC:
					a.fence(job)
				default:
					return
				}
			}
		}
	}
}

func (a *Agent) fence(job FenceJob) {
	err := a.demote(job.Demote)
	if err != nil {
		a.log.Error("demotion did not complete cleanly; the node is standby regardless", "epoch", job.Demote.Epoch, "err", err)
	}
	for _, act := range job.Then {
		a.work <- act
	}
	a.emitAsync(machine.DemoteResult{Epoch: job.Demote.Epoch, Err: err})
}

// demoteDeadline is when a demotion must be over: for a fenced one, its
// lease's end less the clock-drift allowance; otherwise long enough for the
// service to stop and the hook to run.
func demoteDeadline(clk clock.Clock, t config.Timing, hooks config.Hooks, svc config.Service, act machine.Demote) time.Time {
	if act.Fenced && !act.Deadline.IsZero() {
		return act.Deadline.Add(-t.DriftAllowance())
	}
	return clk.Now().Add(svc.StopGrace + hooks.OnDemote.Timeout + t.LeaseTTL)
}

// demote stops acting as active. A fenced demotion must be over before the
// lease can expire in the store, so it works against that deadline and kills
// what does not stop in time.
func (a *Agent) demote(act machine.Demote) error {
	a.log.Warn("demoting", "epoch", act.Epoch, "reason", act.Reason, "fenced", act.Fenced)
	deadline := demoteDeadline(a.clk, a.cfg.Timing, a.cfg.Hooks, a.cfg.Service, act)
	ctx, cancel := clock.WithDeadline(context.Background(), a.clk, deadline)
	defer cancel()
	var errs []error
	for _, st := range a.fenceSteps() {
		if err := st.run(ctx, act); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
		}
	}
	if late := a.clk.Now().Sub(deadline); late > 0 {
		errs = append(errs, fmt.Errorf("finished %s after its deadline", late.Round(time.Millisecond)))
	}
	return errors.Join(errs...)
}

// waitPromoteOver waits (until the deadline) for a promotion of the same
// epoch, cancelled when the demotion was dispatched, to return: else it
// could start the service after the demotion stopped it.
func (a *Agent) waitPromoteOver(ctx context.Context, act machine.Demote) error {
	a.promoteMu.Lock()
	done := a.promoteDone
	if a.promoteEpoch != act.Epoch {
		done = nil
	}
	a.promoteMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the promotion at epoch %d did not return in time", act.Epoch)
	}
}

func (a *Agent) demoteService(ctx context.Context, act machine.Demote) error {
	if a.svc == nil {
		return nil
	}
	a.svc.SetRole(string(ha.RoleStandby), int64(act.Epoch))
	if a.cfg.Service.Standby != config.StandbyCold {
		return nil
	}
	if act.Fenced {
		a.svc.Kill()
		return nil
	}
	return a.svc.Stop(ctx)
}

func (a *Agent) demoteHook(ctx context.Context, act machine.Demote) error {
	return service.RunHook(ctx, a.cfg.Hooks.OnDemote, a.vars, a.roleEnv(ha.RoleStandby, act.Epoch), a.log)
}

// Store deadlines, derived from the timings so that a WAN preset gets WAN
// limits. No worker call may hold the worker for half a lease: a campaign
// or a resign that takes longer is of no use anyway, since the lease it is
// bound to may be gone by then.

// callTimeout bounds one coordination call on the worker or publisher
// (campaign, resign, intents, status): lease_ttl/2, at least renew_timeout.
func callTimeout(t config.Timing) time.Duration { return max(t.LeaseTTL/2, t.RenewTimeout) }

// sessionTimeout bounds the creation of a session: lease_ttl.
func sessionTimeout(t config.Timing) time.Duration { return t.LeaseTTL }

// opTimeout bounds one store write of an operator action: 2 × lease_ttl.
func opTimeout(t config.Timing) time.Duration { return 2 * t.LeaseTTL }

func (a *Agent) demoteVIP(ctx context.Context, act machine.Demote) error {
	if a.vip == nil {
		return nil
	}
	a.vipRemove("demoting: " + act.Reason)
	if dl, ok := ctx.Deadline(); ok && a.clk.Now().After(dl) {
		return fmt.Errorf("the virtual IP was removed only after the fence deadline (was this process paused?)")
	}
	return nil
}
