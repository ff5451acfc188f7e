package agent

import (
	"context"
	"fmt"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/operator"
)

// Operator actions. Any agent accepts the cluster-wide ones (switchover,
// maintenance, promote): package operator records the intent in the store,
// where the machines of every node act on it. Service control acts on this
// node only and stays here, beside the service it controls.

// newOperator wires the cluster-wide operator actions to this agent.
func (a *Agent) newOperator() *operator.Operator {
	return operator.New(operator.Options{
		Config: a.cfg, Node: a.node.Name, Store: a.store, Clock: a.clk, Log: a.log, Mu: &a.opMu,
		Snapshot: a.Snapshot, Live: a.snapshot, Record: a.record, NewID: newID,
		CallTimeout: callTimeout(a.cfg.Timing), OpTimeout: opTimeout(a.cfg.Timing),
	})
}

// snapshot is the store's view with this node's own record replaced by its
// live one: the published copy may not have come back through the watch yet.
func (a *Agent) snapshot() ha.Snapshot {
	snap := a.Snapshot()
	nodes := make(map[string]ha.NodeStatus, len(snap.Nodes)+1)
	for k, v := range snap.Nodes {
		nodes[k] = v
	}
	nodes[a.node.Name] = a.Record()
	snap.Nodes = nodes
	return snap
}

func (a *Agent) memberNames() []string { return operator.MemberNames(a.cfg) }

// Switchover hands the active role to req.To (or the best eligible standby)
// and waits until it is active (operator.Operator.Switchover).
func (a *Agent) Switchover(ctx context.Context, req api.SwitchoverRequest) (api.SwitchoverResult, error) {
	return a.op.Switchover(ctx, req)
}

// Promote makes a node active (operator.Operator.Promote).
func (a *Agent) Promote(ctx context.Context, req api.PromoteRequest) (api.SwitchoverResult, error) {
	return a.op.Promote(ctx, req)
}

// Maintenance turns maintenance on or off for a node
// (operator.Operator.Maintenance).
func (a *Agent) Maintenance(ctx context.Context, req api.MaintenanceRequest) (api.MaintenanceResult, error) {
	return a.op.Maintenance(ctx, req)
}

// The simulation (internal/sim) calls these as the agent does; they are
// package operator's.

// PickTarget is operator.PickTarget.
func PickTarget(cfg *config.Config, snap ha.Snapshot, to string, force, promote bool) (string, error) {
	return operator.PickTarget(cfg, snap, to, force, promote)
}

// HandOverSeen is operator.HandOverSeen.
func HandOverSeen(snap ha.Snapshot, from ha.Leader, target string) (HandOverOutcome, string) {
	return operator.HandOverSeen(snap, from, target)
}

// HandOverOutcome is operator.HandOverOutcome.
type HandOverOutcome = operator.HandOverOutcome

// Outcomes of a hand-over.
const (
	HandOverPending = operator.HandOverPending
	HandOverDone    = operator.HandOverDone
	HandOverOther   = operator.HandOverOther
)

// SwitchoverWindow is how long a switchover intent binds the cluster.
const SwitchoverWindow = operator.SwitchoverWindow

// ServiceControl starts, stops or restarts this node's service. The active
// node's service is only touched with Force, after a switchover.
func (a *Agent) ServiceControl(ctx context.Context, req api.ServiceRequest) (api.ServiceResult, error) {
	if a.svc == nil {
		return api.ServiceResult{}, ha.Errorf(ha.KindConflict, "this node's service is managed outside haven (no service.command); control it with its own tools")
	}
	switch req.Action {
	case "start", "stop", "restart":
	default:
		return api.ServiceResult{}, ha.Errorf(ha.KindInvalid, "unknown action %q; use start, stop or restart", req.Action)
	}
	var res api.ServiceResult
	st := a.State()
	if (st.Holding() || st.Role == ha.RoleActive) && req.Action != "start" {
		if !req.Force {
			return res, ha.Errorf(ha.KindConflict, "%s is active; stopping its service would interrupt clients — use --force to switch over first", a.node.Name)
		}
		if a.cfg.Mode != ha.ModeActiveActive {
			sw, err := a.Switchover(ctx, api.SwitchoverRequest{Reason: req.Action + " of the service on " + a.node.Name, Who: req.Who})
			if err != nil && a.State().Holding() {
				return res, fmt.Errorf("switch over before %s: %w", req.Action, err)
			}
			if err == nil {
				res.Switchover = &sw
			}
		}
	}
	who := req.Who
	if who == "" {
		who = "an operator"
	}
	var err error
	switch req.Action {
	case "stop":
		a.stoppedBy.Store(&who)
		signal(a.healthC)
		err = a.svc.Stop(ctx)
	case "start":
		a.stoppedBy.Store(nil)
		err = a.svc.Start()
	case "restart":
		a.stoppedBy.Store(&who)
		signal(a.healthC)
		if err = a.svc.Stop(ctx); err == nil {
			a.stoppedBy.Store(nil)
			err = a.svc.Start()
		}
	}
	signal(a.healthC)
	signal(a.publishC)
	a.record(ha.Event{Kind: "service", To: req.Action, Who: req.Who, Reason: fmt.Sprintf("service %s (err: %v)", req.Action, err)})
	if err != nil {
		return res, ha.Wrap(ha.KindInternal, err, "service %s", req.Action)
	}
	res.Node, res.Action, res.PID = a.node.Name, req.Action, a.svc.PID()
	return res, nil
}

// Events returns the newest limit events of the cluster's history.
func (a *Agent) Events(ctx context.Context, limit int) ([]ha.Event, error) {
	evs, err := a.store.Events(ctx, limit)
	if err != nil {
		return nil, ha.Wrap(ha.KindUnavailable, err, "read the history from the store")
	}
	return evs, nil
}
