package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/haven-ha/haven/internal/ha"
)

// The operator history: what the store's leader key held, and what every
// switchover and promotion call was told, checked with porcupine at the end
// of the run against one register, the leader key. The store's changes of
// the key are points in time (the simulation sees each commit); an
// operator's call is an interval from when it was sent to when its answer
// arrived. Linearizable means:
//   - a switchover recorded in the store was recorded while the key was
//     held by the leader it names (the compare is atomic), and one refused
//     with "stale view, retry" was refused while it was not;
//   - an answer "X is active at epoch E" or "X took over instead" names a
//     holder of the key at some instant of the call, at an epoch newer than
//     the one the switchover was from: an answer about this switchover, not
//     about an earlier failover;
//   - a refusal because "another switchover is in progress" (the store's
//     ErrBusy, or a standby's record saying "switchover to X in progress")
//     is true only if, at some instant from the view it was decided on to
//     its answer, the store held a switchover intent that the same node had
//     not already been told was over: a node answered "switched over" (and
//     settled, operator.Settled) must not then refuse the next call because
//     of that switchover (read your writes; another node's view may lag).
//
// checkAnswer (faults.go) says the same thing of each answer on its own,
// with a diagnosis; this checks the whole history at once, as the issue
// asks.

// opKind is one kind of operation on the leader register.
type opKind int

const (
	opSet      opKind = iota // the store's key changed (to leader; None: vacant)
	opRecorded               // a switchover from `from` was recorded
	opStale                  // a switchover from `from` was refused: stale view
	opAnswer                 // the call was told `leader` holds the role (after from)
	opIntent                 // the store's switchover intent changed (to id; "": none)
	opBusy                   // a call was refused: another switchover in progress
)

type opIn struct {
	kind   opKind
	from   ha.Leader
	leader ha.Leader
	what   string // for the diagnosis
	// id: opIntent's new intent. finished: with opBusy, the switchovers the
	// refused node had been told were over (and settled) before it asked.
	id       string
	finished map[string]bool
}

// opState is the register: the store's leader key and pending intent.
type opState struct {
	leader ha.Leader
	intent string
}

// opRec is one operation in true time.
type opRec struct {
	in         opIn
	client     int
	start, end time.Time
}

var operatorModel = porcupine.Model{
	Init: func() any { return opState{} },
	Step: func(state, input, _ any) (bool, any) {
		st, in := state.(opState), input.(opIn)
		l := st.leader
		switch in.kind {
		case opSet:
			st.leader = in.leader
			return true, st
		case opIntent:
			st.intent = in.id
			return true, st
		case opRecorded:
			return l == in.from, st
		case opStale:
			return l != in.from, st
		case opBusy:
			return st.intent != "" && !in.finished[st.intent], st
		default: // opAnswer
			return l == in.leader && l.Epoch > in.from.Epoch, st
		}
	},
	Equal: func(a, b any) bool { return a.(opState) == b.(opState) },
	DescribeOperation: func(input, _ any) string {
		in := input.(opIn)
		switch in.kind {
		case opSet:
			return fmt.Sprintf("store: key %v", in.leader)
		case opRecorded:
			return fmt.Sprintf("%s recorded from %v", in.what, in.from)
		case opStale:
			return fmt.Sprintf("%s refused as stale (from %v)", in.what, in.from)
		case opIntent:
			return fmt.Sprintf("store: switchover intent %q", in.id)
		case opBusy:
			return fmt.Sprintf("%s refused: another switchover in progress (the node was told these were over: %v)", in.what, keys(in.finished))
		default:
			return fmt.Sprintf("%s answered %v (from %v)", in.what, in.leader, in.from)
		}
	},
}

// keySet records a change of the store's leader key (observe).
func (w *world) keySet(l ha.Leader) {
	w.ops = append(w.ops, opRec{in: opIn{kind: opSet, leader: l}, client: -1, start: w.now(), end: w.now()})
}

// intentSet records a change of the store's switchover intent (observe).
func (w *world) intentSet(id string) {
	w.ops = append(w.ops, opRec{in: opIn{kind: opIntent, id: id}, client: -1, start: w.now(), end: w.now()})
}

// store reports whether op is a change in the store (a point in time).
func (op opRec) store() bool { return op.in.kind == opSet || op.in.kind == opIntent }

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// opCall records an operator call's outcome, sent at start.
func (w *world) opCall(n *node, in opIn, start time.Time) {
	w.ops = append(w.ops, opRec{in: in, client: n.clientID(), start: start, end: w.now()})
}

// checkOperator runs porcupine over the operator history.
func (w *world) checkOperator() {
	ns := func(t time.Time) int64 { return int64(t.Sub(t0)) }
	h := make([]porcupine.Operation, 0, len(w.ops))
	var last int64 = -1
	for _, op := range w.ops {
		call, ret := ns(op.start), ns(op.end)
		if op.store() {
			// The store's changes are totally ordered: two at the same
			// instant keep their order.
			if call <= last {
				call = last + 1
			}
			ret, last = call, call
		}
		h = append(h, porcupine.Operation{ClientId: op.client, Input: op.in, Call: call, Return: ret})
	}
	w.res.OperatorOps += len(h)
	if porcupine.CheckOperations(operatorModel, h) {
		return
	}
	w.failf("the operator history is not linearizable with the store's leader key (%d operations checked): %s", len(h), w.operatorCulprit())
}

// operatorCulprit names the first call that no value the key held during
// the call can explain.
func (w *world) operatorCulprit() string {
	for _, op := range w.ops {
		if op.store() {
			continue
		}
		var held []opState // the register's values from op.start to op.end
		cur := opState{}
		for _, set := range w.ops {
			if !set.store() || set.start.After(op.end) {
				continue
			}
			if set.start.After(op.start) {
				held = append(held, cur)
			}
			cur, _ = stepState(cur, set.in)
		}
		held = append(held, cur)
		ok := false
		for _, l := range held {
			if good, _ := operatorModel.Step(l, op.in, nil); good {
				ok = true
			}
		}
		if !ok {
			return fmt.Sprintf("%s between %s and %s, while the key and intent held %v", operatorModel.DescribeOperation(op.in, nil), op.start.Sub(t0), op.end.Sub(t0), held)
		}
	}
	return "no single call to blame; replay with -sim.trace"
}

func stepState(st opState, in opIn) (opState, bool) {
	ok, next := operatorModel.Step(st, in, nil)
	return next.(opState), ok
}
