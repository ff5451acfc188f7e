package agent

import (
	"context"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// Failsafe (outage_policy: failsafe). When the active cannot renew its
// lease, it asks every other node directly whether it is active; each that
// is not promises not to take over for the grant. With every promise in
// hand, the active may serve until sentAt + grant − fence_margin: each
// promise started when its node received the request, which is after
// sentAt, so the active stops before any promise ends. One node that does
// not answer (it may be on the other side of a partition, with the store)
// is enough to refuse: then the default rule applies and the active demotes.

// ask is a request to the loop that must be answered after the step.
type ask struct {
	ev    machine.Event
	reply chan machine.State
}

// Failsafe answers a peer's failsafe request.
func (a *Agent) Failsafe(ctx context.Context, req api.FailsafeRequest) (api.FailsafeResult, error) {
	if a.cfg.OutagePolicy != config.OutageFailsafe {
		return api.FailsafeResult{}, ha.Errorf(ha.KindForbidden, "outage_policy is not failsafe on %s; every node needs the same config", a.node.Name)
	}
	if req.From == a.node.Name || req.GrantMS <= 0 || req.GrantMS > 60000 {
		return api.FailsafeResult{}, ha.Errorf(ha.KindInvalid, "bad failsafe request: from %q, grant %d ms", req.From, req.GrantMS)
	}
	r := ask{ev: machine.FailsafeAsked{From: req.From, Until: a.clk.Now().Add(time.Duration(req.GrantMS) * time.Millisecond)}, reply: make(chan machine.State, 1)}
	select {
	case a.askC <- r:
	case <-ctx.Done():
		return api.FailsafeResult{}, ha.Errorf(ha.KindUnavailable, "agent busy")
	}
	var st machine.State
	select {
	case st = <-r.reply:
	case <-ctx.Done():
		return api.FailsafeResult{}, ha.Errorf(ha.KindUnavailable, "agent busy")
	}
	holding := st.Holding()
	return api.FailsafeResult{Node: a.node.Name, NotActive: !holding, Role: st.Role}, nil
}

// failsafeLoop runs failsafe rounds while this node is active and its
// renewals are late.
func (a *Agent) failsafeLoop(ctx context.Context) {
	t := a.cfg.Timing
	client := a.peerClient().WithTimeout(t.RenewInterval + t.RenewTimeout)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.clk.After(t.RenewInterval):
		}
		st := a.State()
		now := a.clk.Now()
		// Start asking once two renewals are overdue.
		if st.Role != ha.RoleActive || now.Before(st.ValidUntil.Add(-t.LeaseTTL+3*t.RenewInterval)) {
			continue
		}
		sent := a.clk.Now()
		if a.askPeers(ctx, client, st.Epoch) {
			a.emit(ctx, machine.FailsafeGranted{SentAt: sent, Grant: t.LeaseTTL})
		}
	}
}

// askPeers returns true only if every other service node confirmed.
func (a *Agent) askPeers(ctx context.Context, client *api.Client, epoch ha.Epoch) bool {
	req := api.FailsafeRequest{From: a.node.Name, Epoch: epoch, GrantMS: a.cfg.Timing.LeaseTTL.Milliseconds()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	all := true
	for _, n := range a.cfg.Nodes {
		if n.Name == a.node.Name || n.Witness {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			res, err := client.Failsafe(ctx, addr, req)
			if err != nil || !res.NotActive {
				mu.Lock()
				all = false
				mu.Unlock()
			}
		}(n.API)
	}
	wg.Wait()
	if all {
		a.log.Warn("store unreachable: every peer confirmed failsafe; still serving", "epoch", epoch)
	}
	return all
}

// peerClient is this agent's client of the other agents' APIs.
// Under TLS it presents this node's certificate (mutual TLS).
func (a *Agent) peerClient() *api.Client {
	o := api.ClientOptions{Token: a.cfg.APIAuth.Token, Who: "agent " + a.node.Name}
	if a.tls != nil {
		o.TLS = a.tls.ClientConfig()
	}
	return api.NewClient(o)
}
