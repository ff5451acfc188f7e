package sim

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// Fenced writes: a node that serves writes and reads one shared register
// through the store's fenced calls (ha.Store.FencedPut/FencedGet, what the
// agent's KV API and the session store use), carrying its epoch. The
// requests travel like every store call: slow, cut, answers lost, so a
// write sent just before a node stopped serving can arrive after another
// node took over, which is the case fencing exists for. At the end of the
// run the history is checked with porcupine against a register that also
// demands fencing: no operation of an older epoch takes effect after one of
// a newer epoch.

// fencedKey is the register every node writes.
const fencedKey = "sim/register"

// fencedOp is one fenced call as its caller saw it, in true time.
type fencedOp struct {
	client  int
	write   bool
	epoch   ha.Epoch
	value   string // written, or read
	start   time.Time
	end     time.Time // zero while unanswered
	ok      bool      // answered without error
	unknown bool      // no answer (timed out, lost, or the process died): may have happened
	took    time.Time // when the store accepted it (zero: never); for the diagnosis only
}

// armFenced starts the node's writer: every 250 to 750 ms of its clock,
// while it serves, a fenced write (two in three) or read.
func (n *node) armFenced() {
	if n.w.o.Mode == ha.ModeActiveActive {
		return // no leader key: every fenced call is refused
	}
	inc := n.inc
	n.afterLocal(time.Duration(250+n.w.rng.IntN(500))*time.Millisecond, func() {
		if inc != n.inc {
			return
		}
		if n.serving() {
			n.fencedCall(n.w.rng.IntN(3) != 0)
		}
		n.armFenced()
	})
}

func (n *node) fencedCall(write bool) {
	w := n.w
	w.fencedSeq++
	op := &fencedOp{client: n.clientID(), write: write, epoch: n.st.Epoch, start: w.now(), unknown: true}
	if write {
		op.value = fmt.Sprintf("%s.%d", n.name, w.fencedSeq)
	}
	w.fenced = append(w.fenced, op)
	epoch := op.epoch
	// One call in five is held up between the decision and the send for up
	// to two leases: the service paused there (a GC pause, SIGSTOP), the
	// case fencing exists for.
	if w.rng.IntN(5) == 0 {
		inc := n.inc
		w.after(time.Duration(w.rng.Int64N(int64(2*n.timing().LeaseTTL))), nil, func() {
			if inc == n.inc && n.alive {
				n.sendFenced(op, write, epoch)
			}
		})
		return
	}
	n.sendFenced(op, write, epoch)
}

func (n *node) sendFenced(op *fencedOp, write bool, epoch ha.Epoch) {
	w := n.w
	n.call("fenced call", callTimeout(n.timing()), func(c *memstore.Client) (err error) {
		defer func() {
			if err == nil {
				op.took = w.now()
			}
		}()
		if write {
			_, _, err = c.FencedPut(bg, n.name, epoch, fencedKey, op.value, "")
			return err
		}
		var found bool
		op.value, found, _, err = c.FencedGet(bg, n.name, epoch, fencedKey)
		if !found {
			op.value = ""
		}
		return err
	}, func(err error) {
		op.end = w.now()
		switch {
		case err == nil:
			op.ok, op.unknown = true, false
		case errors.Is(err, errTimeout):
			// No answer: a write may have committed.
		default:
			op.unknown = false // refused: it did not happen
		}
		if write {
			n.tracef("fenced write %s at epoch %d: %v", op.value, epoch, err)
		} else {
			n.tracef("fenced read at epoch %d: %q, %v", epoch, op.value, err)
		}
	})
}

func (n *node) clientID() int {
	for i, m := range n.w.nodes {
		if m == n {
			return i*10000 + n.inc
		}
	}
	return -1
}

type regIn struct {
	write bool
	epoch ha.Epoch
	value string
}

// fencedState is the register and the newest epoch that acted on it.
type fencedState struct {
	value string
	epoch ha.Epoch
}

// fencedModel is a register where an operation of an epoch older than one
// that already took effect is illegal: that is what fencing promises.
var fencedModel = porcupine.Model{
	Init: func() any { return fencedState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in := state.(fencedState), input.(regIn)
		if in.epoch < st.epoch {
			return false, st
		}
		if in.write {
			return true, fencedState{value: in.value, epoch: in.epoch}
		}
		return output.(string) == st.value, fencedState{value: st.value, epoch: in.epoch}
	},
	Equal: func(a, b any) bool { return a.(fencedState) == b.(fencedState) },
	DescribeOperation: func(input, output any) string {
		in := input.(regIn)
		if in.write {
			return fmt.Sprintf("write(%s) at epoch %d", in.value, in.epoch)
		}
		return fmt.Sprintf("read at epoch %d → %q", in.epoch, output)
	},
}

// fencedHistory is the history in porcupine's terms. A refused or failed
// call did not happen and is left out. A write with no answer may have
// happened at any time after it was sent: if a read returned its value, it
// happened before that read ended; if none did, leaving it out is always a
// valid linearization (nothing observed it), so it is left out.
func (w *world) fencedHistory() []porcupine.Operation {
	readBy := map[string]time.Time{}
	for _, op := range w.fenced {
		if !op.write && op.ok && op.value != "" {
			if e, ok := readBy[op.value]; !ok || op.end.Before(e) {
				readBy[op.value] = op.end
			}
		}
	}
	ns := func(t time.Time) int64 { return int64(t.Sub(t0)) }
	var h []porcupine.Operation
	for _, op := range w.fenced {
		switch {
		case op.write && op.ok:
			h = append(h, porcupine.Operation{ClientId: op.client, Input: regIn{true, op.epoch, op.value}, Call: ns(op.start), Output: "", Return: ns(op.end)})
		case op.write && op.unknown:
			e, read := readBy[op.value]
			if !read {
				continue
			}
			if e.Before(op.start) {
				e = op.start // a read that ended before the write began: illegal, and caught
			}
			h = append(h, porcupine.Operation{ClientId: op.client, Input: regIn{true, op.epoch, op.value}, Call: ns(op.start), Output: "", Return: ns(e)})
		case !op.write && op.ok:
			h = append(h, porcupine.Operation{ClientId: op.client, Input: regIn{false, op.epoch, ""}, Call: ns(op.start), Output: op.value, Return: ns(op.end)})
		}
	}
	return h
}

// checkFenced runs porcupine over the run's fenced calls.
func (w *world) checkFenced() {
	h := w.fencedHistory()
	w.res.FencedOps += len(h)
	if porcupine.CheckOperations(fencedModel, h) {
		return
	}
	w.failf("the fenced calls are not linearizable with epochs in order (%d operations checked): %s", len(h), w.fencedCulprit())
}

// fencedCulprit names the first call the store accepted after it had
// accepted one of a newer epoch: what fencing should have refused.
func (w *world) fencedCulprit() string {
	var newest *fencedOp
	for _, op := range w.sortedByTook() {
		if newest != nil && op.epoch < newest.epoch {
			return fmt.Sprintf("%s at epoch %d (sent at %s) was accepted at %s, after %s at epoch %d (at %s)",
				op.describe(), op.epoch, op.start.Sub(t0), op.took.Sub(t0), newest.describe(), newest.epoch, newest.took.Sub(t0))
		}
		if newest == nil || op.epoch > newest.epoch {
			newest = op
		}
	}
	return "no single call to blame; replay with -sim.trace"
}

func (w *world) sortedByTook() []*fencedOp {
	var ops []*fencedOp
	for _, op := range w.fenced {
		if !op.took.IsZero() {
			ops = append(ops, op)
		}
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].took.Before(ops[j].took) })
	return ops
}

func (op *fencedOp) describe() string {
	if op.write {
		return "the write of " + op.value
	}
	return fmt.Sprintf("a read (%q)", op.value)
}
