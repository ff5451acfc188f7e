package agent

import (
	"context"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/presence"
)

// presenceState is the agent's presence tracker, fed by the watcher and
// read by status.
type presenceState struct {
	mu sync.Mutex
	tr *presence.Tracker
}

// observePresence feeds a snapshot to the presence tracker; this node
// records what it shows if it is the reporter, and logs it in any case.
func (a *Agent) observePresence(s ha.Snapshot) {
	a.presence.mu.Lock()
	if a.presence.tr == nil {
		a.presence.tr = presence.New(presence.Options{LeaseTTL: a.cfg.Timing.LeaseTTL})
	}
	evs := a.presence.tr.Observe(s, a.clk.Now())
	a.presence.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		a.log.Info("cluster: "+ev.Kind+" "+ev.To, "subject", ev.Node, "reason", ev.Reason, "duration", ev.Duration)
		if presence.Reporter(s, a.node.Name, ev.Node) {
			a.record(ev)
		}
	}
}

// lostSince reports since when node has been lost, as this agent saw it.
func (a *Agent) lostSince(node string) (time.Time, bool) {
	a.presence.mu.Lock()
	defer a.presence.mu.Unlock()
	if a.presence.tr == nil {
		return time.Time{}, false
	}
	return a.presence.tr.Lost(node)
}

// rememberFailover seeds the last failover from the cluster's history, so
// that an agent started after a failover reports it as the others do. It
// reads the history at start and twice more a lease apart: the event of a
// failover just before this agent started may still be on its way to the
// store (its reporter writes it in the background). The history is a
// report, so a store that does not answer costs nothing but this.
func (a *Agent) rememberFailover(ctx context.Context) {
	for range 3 {
		cctx, cancel := clock.WithTimeout(ctx, a.clk, callTimeout(a.cfg.Timing))
		evs, err := a.store.Events(cctx, 200)
		cancel()
		if err == nil {
			a.presence.mu.Lock()
			if a.presence.tr == nil {
				a.presence.tr = presence.New(presence.Options{LeaseTTL: a.cfg.Timing.LeaseTTL})
			}
			a.presence.tr.Remember(evs)
			a.presence.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-a.clk.After(a.cfg.Timing.LeaseTTL):
		}
	}
}

// lastFailover is the last failover after a loss this agent saw.
func (a *Agent) lastFailover() *ha.Event {
	a.presence.mu.Lock()
	defer a.presence.mu.Unlock()
	if a.presence.tr == nil {
		return nil
	}
	return a.presence.tr.LastFailover()
}
