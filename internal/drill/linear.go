package drill

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// The shared registers are checked for linearizability with porcupine: a
// map of registers, each written with unique values and read. A write known
// not to have happened (503) and a failed read are left out. A write whose
// outcome is unknown may have taken effect at any moment after it began:
//
//   - if no read returned its value, it is left out too. Any linearization
//     that places it can drop it (nothing read its value, so it is followed
//     at once by another write or by the end), and one without it is
//     legal, since it may not have happened;
//   - if a read returned its value, it happened before that read did, so
//     it ends when the earliest such read ended.
//
// Giving such writes no end instead makes every later operation concurrent
// with them, and porcupine's search runs out of time on a long history.

type regInput struct {
	write bool
	key   string
	value string
}

type regOutput struct {
	value string // what a read returned ("" when not found)
}

// registerModel is porcupine's key-value model, partitioned by key.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("read(%s) → %q", in.key, output.(regOutput).value)
	},
}

// RegisterHistory turns the register ops into porcupine's terms.
func RegisterHistory(ops []Op) []porcupine.Operation {
	type kv struct{ key, value string }
	seen := map[kv]int64{} // the earliest end of a read that returned the value
	for _, o := range ops {
		if o.Kind == OpRegR && o.OK && o.Found {
			k := kv{o.Key, o.Value}
			if e, ok := seen[k]; !ok || int64(o.End) < e {
				seen[k] = int64(o.End)
			}
		}
	}
	var h []porcupine.Operation
	for _, o := range ops {
		switch {
		case o.Kind == OpRegW && (o.OK || o.Unknown):
			end := int64(o.End)
			if !o.OK {
				e, read := seen[kv{o.Key, o.Value}]
				if !read {
					continue
				}
				end = max(e, int64(o.Start)) // a read before the write began is caught as illegal
			}
			h = append(h, porcupine.Operation{ClientId: o.Client, Input: regInput{write: true, key: o.Key, value: o.Value},
				Call: int64(o.Start), Output: regOutput{}, Return: end})
		case o.Kind == OpRegR && o.OK:
			v := o.Value
			if !o.Found {
				v = ""
			}
			h = append(h, porcupine.Operation{ClientId: o.Client, Input: regInput{key: o.Key},
				Call: int64(o.Start), Output: regOutput{value: v}, Return: int64(o.End)})
		}
	}
	return h
}

// Linearizable checks the register ops of ops. It returns porcupine's
// verdict (Ok, Illegal, or Unknown when timeout ran out) and how many
// operations it checked.
func Linearizable(ops []Op, timeout time.Duration) (porcupine.CheckResult, int) {
	h := RegisterHistory(ops)
	return porcupine.CheckOperationsTimeout(registerModel, h, timeout), len(h)
}
