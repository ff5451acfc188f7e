package agent

import (
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/machine"
)

// The agent's core: what its goroutines decide, apart from how they wait
// and do I/O. The agent carries a core's answers out with goroutines,
// channels and the real clock; the simulation (internal/sim) carries the
// same answers out as events of its seeded scheduler on a fake clock, so it
// checks this code and not a copy of it.

// Stepped is one event applied to the machine by the loop: the state before
// and after, and what the drivers must do about it, in order.
type Stepped struct {
	Old, New machine.State
	// Demoted: the step demoted; promotions numbered up to New.PromoteSeq
	// must never start (a Promote that waited behind store calls would act
	// after the demotion).
	Demoted bool
	Effects []Effect
}

// EffectKind says which driver an Effect is for.
type EffectKind int

const (
	// DoPublish: write this node's status record (the publisher).
	DoPublish EffectKind = iota
	// DoNewSession: the renewer may create a new session.
	DoNewSession
	// DoCancelPromote: cancel the promotion at Epoch, if it runs.
	DoCancelPromote
	// DoFence: a demotion for the fencing lane (fence.go).
	DoFence
	// DoWork: an action for the worker, in order.
	DoWork
)

// Effect is one thing a step asks of the drivers.
type Effect struct {
	Kind  EffectKind
	Epoch ha.Epoch       // DoCancelPromote
	Job   FenceJob       // DoFence
	Act   machine.Action // DoWork
}

// Step applies ev to old at now (the node's clock) and plans the actions.
func Step(mcfg machine.Config, old machine.State, ev machine.Event, now time.Time) Stepped {
	st, acts := machine.Step(mcfg, old, ev, now)
	s := Stepped{Old: old, New: st}
	for _, act := range acts {
		if _, ok := act.(machine.Demote); ok {
			s.Demoted = true // the promotion being demoted is the latest
		}
	}
	s.Effects = Plan(acts)
	return s
}

// Plan hands the actions of one step to the drivers: demotions to the
// fencing lane, each with the Resign of its epoch behind it (the key must
// not be released while this node still acts), the rest to the worker in
// the machine's order.
func Plan(acts []machine.Action) []Effect {
	var effs []Effect
	var job *FenceJob
	for _, act := range acts {
		switch act := act.(type) {
		case machine.Publish:
			effs = append(effs, Effect{Kind: DoPublish})
		case machine.NewSession:
			effs = append(effs, Effect{Kind: DoNewSession})
		case machine.Demote:
			effs = append(effs, Effect{Kind: DoCancelPromote, Epoch: act.Epoch})
			if job != nil {
				effs = append(effs, Effect{Kind: DoFence, Job: *job})
			}
			job = &FenceJob{Demote: act}
		case machine.Resign:
			if job != nil && job.Demote.Epoch == act.Epoch {
				job.Then = append(job.Then, act) // not before the demotion is over
				continue
			}
			effs = append(effs, Effect{Kind: DoWork, Act: act})
		default:
			effs = append(effs, Effect{Kind: DoWork, Act: act})
		}
	}
	if job != nil {
		effs = append(effs, Effect{Kind: DoFence, Job: *job})
	}
	return effs
}
