// Package operator carries out the operator's cluster-wide actions
// (switchover, promote, maintenance) for any agent: it records the intent in
// the store, where the machines of every node act on it, and watches the
// agent's snapshot until it has taken effect.
package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// Operator carries out the cluster-wide operator actions of one agent.
type Operator struct {
	o Options
}

// Options wire an Operator to its agent.
type Options struct {
	Config *config.Config
	Node   string // the agent's node
	Store  ha.Store
	Clock  clock.Clock
	Log    *slog.Logger
	// Mu is held for one operator action at a time on this agent (the
	// agent's member changes take it too).
	Mu *sync.Mutex
	// Snapshot is the store's view as the agent's watch last saw it; Live
	// is that view with this node's own record replaced by its live one.
	Snapshot func() ha.Snapshot
	Live     func() ha.Snapshot
	Record   func(ha.Event) // queues an event for the history
	NewID    func() string  // a fresh intent id
	// CallTimeout bounds one coordination call; OpTimeout one store write
	// of an operator action.
	CallTimeout, OpTimeout time.Duration
}

// New returns the operator of one agent.
func New(o Options) *Operator { return &Operator{o: o} }

// SwitchoverWindow is how long a switchover intent binds the cluster: only
// its target may campaign until then.
const SwitchoverWindow = 10 * time.Second

// Switchover hands the active role to req.To (or the best eligible standby)
// and waits until it is active.
func (op *Operator) Switchover(ctx context.Context, req api.SwitchoverRequest) (api.SwitchoverResult, error) {
	op.o.Mu.Lock()
	defer op.o.Mu.Unlock()
	if op.o.Config.Mode == ha.ModeActiveActive {
		return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "active-active: every healthy node serves, there is no active role to hand over; use `haven maintenance on NODE` to take a node out")
	}
	snap := op.o.Live()
	if snap.Leader.None() {
		return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "no node is active, so there is nothing to switch over; in passive-backup mode use `haven promote NODE`")
	}
	target, err := op.pickTarget(snap, req.To, req.Force, false)
	if err != nil {
		return api.SwitchoverResult{}, err
	}
	return op.handOver(ctx, snap.Leader, target, req.Reason, req.Who, false)
}

// Promote makes node active: in passive-backup mode the only way a backup
// becomes active. Refused while an active node is healthy unless force.
func (op *Operator) Promote(ctx context.Context, req api.PromoteRequest) (api.SwitchoverResult, error) {
	op.o.Mu.Lock()
	defer op.o.Mu.Unlock()
	if op.o.Config.Mode == ha.ModeActiveActive {
		return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "active-active: every healthy node already serves")
	}
	snap := op.o.Live()
	if err := PromoteRefused(snap, req.Node, req.Force); err != nil {
		return api.SwitchoverResult{}, err
	}
	target, err := op.pickTarget(snap, req.Node, req.Force, true)
	if err != nil {
		return api.SwitchoverResult{}, err
	}
	return op.handOver(ctx, snap.Leader, target, "promoted by an operator", req.Who, true)
}

// PromoteRefused is why Promote refuses node on snap before it looks at the
// node itself (nil: it may go on): node is active already, or the active
// node is healthy and force is not set. Pure, like PickTarget.
func PromoteRefused(snap ha.Snapshot, node string, force bool) error {
	if snap.Leader.None() {
		return nil
	}
	if snap.Leader.Node == node {
		return ha.Errorf(ha.KindConflict, "%s is already active at epoch %d", node, snap.Leader.Epoch)
	}
	if rec, ok := snap.Nodes[snap.Leader.Node]; ok && rec.Healthy && !force {
		return ha.Errorf(ha.KindConflict, "the active node %s is healthy; promoting %s would interrupt it — use `haven switchover --to %s`, or --force", snap.Leader.Node, node, node)
	}
	return nil
}

func (op *Operator) pickTarget(snap ha.Snapshot, to string, force, promote bool) (string, error) {
	return PickTarget(op.o.Config, snap, to, force, promote)
}

// PickTarget validates the requested target of a switchover or promotion,
// or picks the eligible standby with the highest priority. It is pure: the
// simulation (internal/sim) calls it as the agent does.
func PickTarget(cfg *config.Config, snap ha.Snapshot, to string, force, promote bool) (string, error) {
	if to != "" {
		n, ok := cfg.NodeByName(to)
		switch {
		case !ok:
			return "", ha.Errorf(ha.KindNotFound, "no node %q in the configuration; members: %s", to, MemberNames(cfg))
		case n.Witness:
			return "", ha.Errorf(ha.KindConflict, "%s is a witness and cannot run the service", to)
		case to == snap.Leader.Node:
			return "", ha.Errorf(ha.KindConflict, "%s is already active", to)
		}
		rec, up := snap.Nodes[to]
		if !up {
			return "", ha.Errorf(ha.KindConflict, "%s has no running agent; start it first", to)
		}
		if !force {
			switch {
			case snap.Intents.Maintenance[to]:
				return "", ha.Errorf(ha.KindConflict, "%s is in maintenance; `haven maintenance off %s` first, or --force", to, to)
			case !rec.Healthy:
				return "", ha.Errorf(ha.KindConflict, "%s is unhealthy (%s); fix it or use --force", to, rec.Health)
			case !Available(snap, rec) && !(promote && rec.Role == ha.RoleBackup):
				return "", ha.Errorf(ha.KindConflict, "%s is not eligible: %s; use --force to try anyway", to, rec.Why)
			}
		}
		return to, nil
	}
	var cands []ha.NodeStatus
	for _, rec := range snap.Nodes {
		if Available(snap, rec) && rec.Name != snap.Leader.Node {
			cands = append(cands, rec)
		}
	}
	if len(cands) == 0 {
		var why []string
		for _, n := range cfg.Nodes {
			if n.Name == snap.Leader.Node || n.Witness {
				continue
			}
			if rec, ok := snap.Nodes[n.Name]; ok {
				why = append(why, n.Name+": "+rec.Why)
			} else {
				why = append(why, n.Name+": no running agent")
			}
		}
		return "", ha.Errorf(ha.KindConflict, "no eligible standby to hand over to (%v)", why)
	}
	prio := cfg.Priorities()
	sort.Slice(cands, func(i, j int) bool {
		if prio[cands[i].Name] != prio[cands[j].Name] {
			return prio[cands[i].Name] > prio[cands[j].Name]
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0].Name, nil
}

// handOver records the intent and waits until target holds the role.
func (op *Operator) handOver(ctx context.Context, from ha.Leader, target, reason, who string, promote bool) (api.SwitchoverResult, error) {
	if reason == "" {
		reason = "requested by an operator"
	}
	sw := Intent(op.o.NewID(), from, target, reason, promote, op.o.Clock.Now())
	cctx, cancel := clock.WithTimeout(ctx, op.o.Clock, op.o.OpTimeout)
	err := op.o.Store.RequestSwitchover(cctx, sw)
	cancel()
	if errors.Is(err, ha.ErrBusy) {
		return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "another switchover is in progress; wait for it to finish (haven events)")
	}
	if errors.Is(err, ha.ErrStale) {
		// The view this was decided on is out of date (a failover happened
		// meanwhile): answering about it would be answering about
		// something else.
		return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "stale view, retry: the active node changed while the switchover was being asked (%v); check `haven status` and ask again", err)
	}
	if err != nil {
		return api.SwitchoverResult{}, ha.Wrap(ha.KindUnavailable, err, "record the switchover in the store")
	}
	start := op.o.Clock.Now()
	wctx, cancel := clock.WithDeadline(ctx, op.o.Clock, sw.Deadline)
	defer cancel()
	for {
		snap := op.o.Snapshot()
		switch outcome, why := HandOverSeen(snap, from, target); outcome {
		case HandOverOther:
			l := snap.Leader
			op.clearSwitchover(ctx, sw.ID)
			op.o.Record(ha.Event{Kind: "switchover", From: from.Node, To: l.Node, Epoch: l.Epoch, Reason: fmt.Sprintf("%s took over instead of %s (%s)", l.Node, target, why), Duration: op.o.Clock.Since(start), Who: who})
			return api.SwitchoverResult{}, ha.Errorf(ha.KindConflict, "%s took over instead of %s (%s: %s)", l.Node, target, target, why)
		case HandOverDone:
			took := op.o.Clock.Since(start)
			kind := "switchover"
			if promote {
				kind = "promote"
			}
			op.o.Record(ha.Event{Kind: kind, From: from.Node, To: target, Epoch: snap.Leader.Epoch, Reason: reason, Duration: took, Who: who})
			op.settleSwitchover(ctx, sw.ID)
			return api.SwitchoverResult{From: from.Node, To: target, Epoch: snap.Leader.Epoch, TookMS: float64(took.Microseconds()) / 1000}, nil
		}
		select {
		case <-wctx.Done():
			op.clearSwitchover(ctx, sw.ID)
			now := op.o.Snapshot().Leader
			return api.SwitchoverResult{}, ha.Errorf(ha.KindUnavailable, "%s did not become active within %s (active now: %s); see `haven events`", target, SwitchoverWindow, leaderText(now))
		case <-op.o.Clock.After(2 * time.Millisecond):
		}
	}
}

// Intent is the switchover intent an operator's call records at now: from
// the leader its view shows, at that leader's epoch (the store refuses it as
// stale if the leader moved on), to target, binding for SwitchoverWindow.
func Intent(id string, from ha.Leader, target, reason string, promote bool, now time.Time) ha.Switchover {
	return ha.Switchover{ID: id, From: from.Node, Epoch: from.Epoch, To: target, Promote: promote,
		Reason: reason, Requested: now, Deadline: now.Add(SwitchoverWindow)}
}

// Available reports whether rec, a node's record in snap, may be handed the
// role as PickTarget judges it: eligible, or held back only by a switchover
// intent (rec.HeldBy) that snap no longer holds. Such a record lags: its
// node wrote it on seeing the intent and republishes once it sees it gone,
// which a standby whose writes are slow does after the switchover was
// answered settled. Judging it by the record alone refused the next
// switchover as "switchover to X in progress" with none in progress (sim
// seed 37222). A record held by an intent snap still holds is not
// available; a new intent in the store meanwhile makes RequestSwitchover
// answer ErrBusy.
func Available(snap ha.Snapshot, rec ha.NodeStatus) bool {
	if rec.Eligible {
		return true
	}
	return rec.HeldBy != "" && (snap.Intents.Switchover == nil || snap.Intents.Switchover.ID != rec.HeldBy)
}

// Settled reports whether snap shows a finished switchover id no longer
// holding the other standbys back: its intent gone, and every healthy
// standby out of maintenance available again (Available: the fact
// PickTarget checks).
func Settled(snap ha.Snapshot, id string) bool {
	if snap.Intents.Switchover != nil && snap.Intents.Switchover.ID == id {
		return false
	}
	for _, rec := range snap.Nodes {
		if rec.Name != snap.Leader.Node && rec.Role == ha.RoleStandby && rec.Healthy && !snap.Intents.Maintenance[rec.Name] && !Available(snap, rec) {
			return false
		}
	}
	return true
}

// settleSwitchover returns once a finished switchover no longer holds the
// other standbys back: its intent is gone from the store (the new active
// clears it too; clearing by id is idempotent) and every healthy standby
// out of maintenance has published itself eligible again, for at most a
// second. Without it, a second switchover right after the first was
// refused: the standbys' records still said "switchover in progress".
func (op *Operator) settleSwitchover(ctx context.Context, id string) {
	cctx, cancel := clock.WithTimeout(ctx, op.o.Clock, op.o.CallTimeout)
	defer cancel()
	_ = op.o.Store.ClearSwitchover(cctx, id)
	for {
		if Settled(op.o.Snapshot(), id) {
			return
		}
		select {
		case <-cctx.Done():
			return
		case <-op.o.Clock.After(2 * time.Millisecond):
		}
	}
}

// clearSwitchover withdraws the intent id, also when the operator's request
// has gone (its context ended): an intent left behind would hold the other
// standbys back until its deadline. Bounded, since opMu is held.
func (op *Operator) clearSwitchover(ctx context.Context, id string) {
	cctx, cancel := clock.WithTimeout(context.WithoutCancel(ctx), op.o.Clock, op.o.CallTimeout)
	defer cancel()
	if err := op.o.Store.ClearSwitchover(cctx, id); err != nil {
		op.o.Log.Warn("withdraw the switchover intent; it lapses at its deadline", "id", id, "err", err)
	}
}

// HandOverOutcome is what a snapshot says about a hand-over in progress.
type HandOverOutcome int

// Outcomes of a hand-over (HandOverSeen).
const (
	HandOverPending HandOverOutcome = iota // the role has not moved on yet
	HandOverDone                           // the target holds the role at a later epoch
	HandOverOther                          // another node took the role at a later epoch
)

// HandOverSeen tells from snap how the hand-over from from to target went,
// and with HandOverOther why the target did not take over, as far as its
// record says.
func HandOverSeen(snap ha.Snapshot, from ha.Leader, target string) (HandOverOutcome, string) {
	l := snap.Leader
	switch {
	case !l.None() && l.Node != target && l.Epoch > from.Epoch:
		// The target did not take the key within the grace, and another
		// standby did (machine.SwitchoverGrace): the cluster has an
		// active node, just not the one asked for.
		why := "it did not take over in time"
		if rec, ok := snap.Nodes[target]; ok && rec.Why != "" {
			why = rec.Why
		}
		return HandOverOther, why
	case l.Node == target && l.Epoch > from.Epoch && snap.Nodes[target].Epoch == l.Epoch:
		// The target holds the key and its own record says it took the
		// role up at that epoch (promoting, or already demoting if its
		// service failed right after): the hand-over is done. The key
		// alone is not enough: a backup whose win reached its machine
		// after the intent was withdrawn (which the caller does on this
		// answer) handed it straight back, and the answer was false
		// (TestMemClusterPassiveBackup).
		return HandOverDone, ""
	}
	return HandOverPending, ""
}

func leaderText(l ha.Leader) string {
	if l.None() {
		return "none"
	}
	return fmt.Sprintf("%s at epoch %d", l.Node, l.Epoch)
}

func (op *Operator) memberNames() []string { return MemberNames(op.o.Config) }

// MemberNames lists the names of cfg's nodes, for messages.
func MemberNames(cfg *config.Config) []string {
	var names []string
	for _, n := range cfg.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// Maintenance turns maintenance on or off for a node. On the active node it
// first switches over, so traffic moves in a planned way.
func (op *Operator) Maintenance(ctx context.Context, req api.MaintenanceRequest) (api.MaintenanceResult, error) {
	n, ok := op.o.Config.NodeByName(req.Node)
	if !ok {
		return api.MaintenanceResult{}, ha.Errorf(ha.KindNotFound, "no node %q in the configuration; members: %s", req.Node, op.memberNames())
	}
	if n.Witness {
		return api.MaintenanceResult{}, ha.Errorf(ha.KindConflict, "%s is a witness; it never serves, so maintenance does not apply (stop it with its init system)", req.Node)
	}
	var res api.MaintenanceResult
	snap := op.o.Live()
	if req.On && snap.Leader.Node == req.Node && op.o.Config.Mode != ha.ModeActiveActive {
		sw, err := op.Switchover(ctx, api.SwitchoverRequest{Reason: "maintenance of " + req.Node, Who: req.Who})
		if err != nil {
			return res, fmt.Errorf("switch over before maintenance: %w", err)
		}
		res.Switchover = &sw
	}
	cctx, cancel := clock.WithTimeout(ctx, op.o.Clock, op.o.OpTimeout)
	defer cancel()
	if err := op.o.Store.SetMaintenance(cctx, req.Node, req.On); err != nil {
		return res, ha.Wrap(ha.KindUnavailable, err, "record maintenance in the store")
	}
	state := map[bool]string{true: "on", false: "off"}[req.On]
	op.o.Record(ha.Event{Kind: "maintenance", Node: req.Node, To: state, Who: req.Who, Reason: "maintenance " + state})
	res.Node, res.On = req.Node, req.On
	return res, nil
}
