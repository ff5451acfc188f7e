package sim

import (
	"errors"
	"flag"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	seeds     = flag.Int("sim.seeds", defaultSeeds, "number of seeds to simulate")
	firstSeed = flag.Uint64("sim.first", 1, "first seed of the fixed set")
	oneSeed   = flag.Uint64("sim.seed", 0, "simulate only this seed (replay)")
	trace     = flag.Bool("sim.trace", false, "print the event trace of -sim.seed")
	noLD      = flag.Bool("sim.nolockdelay", false, "turn the agent's lock-delay off (to show what it guards against)")
	noPG      = flag.Bool("sim.nopauseguard", false, "turn the renewer's pause rule off (to show what it guards against)")
	noRG      = flag.Bool("sim.noremovalguard", false, "judge a member removal as before 2026-12-07: by the record alone, on any view, with sessions serving before their record is written")
	noHB      = flag.Bool("sim.noheldby", false, "judge a standby's record by its eligible flag alone, as before 2026-12-07, not by the switchover intent that held it back")
	noVL      = flag.Bool("sim.noviewlost", false, "a stalled watch is silent, never Behind, as before 2026-12-07: the view is kept as current")
	noVP      = flag.Bool("sim.noviewpublish", false, "a step that changes only LeaderKnown publishes nothing, as the simulation ran before 2026-12-07")
)

// scenario is Scenario(seed) with the flags applied.
func scenario(seed uint64) Options {
	o := Scenario(seed)
	o.NoLockDelay = *noLD
	o.NoPauseGuard = *noPG
	o.NoRemovalGuard = *noRG
	o.NoHeldBy = *noHB
	o.NoViewLost = *noVL
	o.NoViewPublish = *noVP
	return o
}

// TestSim runs a fixed set of seeds (-sim.seeds from -sim.first) plus one
// random seed it prints; -sim.seed=S replays one, -sim.trace prints it.
func TestSim(t *testing.T) {
	if *oneSeed != 0 {
		o := scenario(*oneSeed)
		if *trace {
			o.Trace = os.Stdout
		}
		res, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d (%s, preempt %t, %d nodes): %d events, %s simulated, %d promotions, %d operator calls, %d faults",
			o.Seed, o.Mode, o.Preempt, o.Nodes, res.Events, res.Simulated, res.Promotions, res.Operator, res.Faults)
		return
	}
	// Runs allocate closures at a high rate and the event heap moves them:
	// collecting less often saves a tenth of the time, for a few MB.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	random := uint64(time.Now().UnixNano())
	t.Logf("random seed this run: %d", random)
	list := make([]uint64, 0, *seeds+1)
	for i := 0; i < *seeds; i++ {
		list = append(list, *firstSeed+uint64(i))
	}
	list = append(list, random)

	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	var total Result
	var failures []error
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(list) {
					return
				}
				res, err := Run(scenario(list[i]))
				mu.Lock()
				total = total.Add(res)
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d seeds, %.1f simulated hours, in %s: %.0f seeds/minute", len(list),
		total.Simulated.Hours(), took.Round(time.Millisecond), float64(len(list))/took.Minutes())
	t.Logf("%d events, %d promotions, %d fenced demotions, %d agent restarts, %d faults, %d operator calls: %d switchovers done, %d stale views refused, %d taken over by another, %d refused as another switchover in progress (judged); %d membership changes; %d fenced writes and reads linearizable; %d leader leases revoked at expiry; %d operator-history operations linearizable; %d live leases revoked early and %d renewals acknowledged late by a stale lessor; %d holders woken cut off with a stale lessor, which acknowledged %d renewals and had %d refused as unconfirmed; %d promotions waited on the lock-delay; %d proxy quarantine strikes; %d watches started over (views lost)",
		total.Events, total.Promotions, total.Fenced, total.Restarts, total.Faults, total.Operator, total.Switched, total.Stale, total.Other, total.Busy, total.Members, total.FencedOps, total.Revoked, total.OperatorOps, total.StaleRevoked, total.StaleAcks, total.StaleWakes, total.StaleWakeAcks, total.StaleWakeRefused, total.LockDelays, total.ProxyStrikes, total.ViewsLost)
	// The generator must keep reaching the cases that matter, or the run
	// proves little (as in machine's property test).
	if len(list) >= 1000 { // stale views come about once in 100 seeds
		for what, n := range map[string]int{"promotions": total.Promotions, "fenced demotions": total.Fenced,
			"restarts": total.Restarts, "switchovers done": total.Switched, "stale views": total.Stale, "fenced calls": total.FencedOps, "revocations at expiry": total.Revoked, "operator-history operations": total.OperatorOps,
			"stale lessor revocations": total.StaleRevoked, "stale lessor acknowledgements": total.StaleAcks, "holders woken cut off": total.StaleWakes, "in-progress refusals": total.Busy, "membership changes": total.Members, "proxy strikes": total.ProxyStrikes, "views lost": total.ViewsLost} {
			if what == "views lost" && *noVL {
				continue
			}
			if n == 0 {
				t.Errorf("no %s in %d seeds: the simulation stopped exploring them", what, len(list))
			}
		}
		if !*noPG && total.StaleWakeRefused == 0 {
			t.Errorf("no renewal refused after a stale wake in %d seeds: the pause rule is no longer exercised", len(list))
		}
	}
	for i, err := range failures {
		if i == 2 {
			break
		}
		t.Error(err)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d seeds failed:", len(failures), len(list))
		for _, err := range failures {
			var f *Failure
			if errors.As(err, &f) {
				t.Errorf("  seed %d at %s: %s", f.Seed, f.At, f.What)
			}
		}
	}
}

// TestReplayIsExact: a seed's run is the same, event for event, every time.
func TestReplayIsExact(t *testing.T) {
	for _, seed := range []uint64{3, 453, 542} {
		var a, b strings.Builder
		oa, ob := Scenario(seed), Scenario(seed)
		oa.Trace, ob.Trace = &a, &b
		ra, _ := Run(oa)
		rb, _ := Run(ob)
		if a.String() != b.String() || ra != rb {
			t.Fatalf("seed %d ran differently twice (%d and %d trace bytes; %+v vs %+v)", seed, a.Len(), b.Len(), ra, rb)
		}
		if a.Len() == 0 {
			t.Fatalf("seed %d: empty trace", seed)
		}
	}
}

// guardFails runs on with one guard turned off (off) and reports whether
// it failed; a failure must be one of wants, and on itself (the guard on)
// must then pass: the check behind every Test…IsNeeded below.
func guardFails(t *testing.T, on Options, off func(*Options), wants ...string) bool {
	t.Helper()
	o := on
	off(&o)
	_, err := Run(o)
	if err == nil {
		return false
	}
	var f *Failure
	if !errors.As(err, &f) || !slices.ContainsFunc(wants, func(w string) bool { return strings.Contains(f.What, w) }) {
		t.Fatalf("seed %d with the guard off: %v, want one of %q", on.Seed, err, wants)
	}
	if _, err := Run(on); err != nil {
		t.Fatalf("seed %d with the guard on: %v", on.Seed, err)
	}
	t.Logf("with the guard off, seed %d: %s", on.Seed, f.What)
	return true
}

// TestLockDelayIsNeeded: with the agent's lock-delay off, the stale
// lessor's early revocation lets a second node serve beside the first
// within the first few hundred seeds; the same seed passes with it on.
func TestLockDelayIsNeeded(t *testing.T) {
	t.Parallel() // about 1 s, 10 s under the race detector: beside TestSim
	for seed := uint64(1); seed <= 400; seed++ {
		if guardFails(t, Scenario(seed), func(o *Options) { o.NoLockDelay = true }, "two nodes serve at once") {
			return
		}
	}
	t.Fatal("without the lock-delay no seed of 1..400 had two nodes serving: the stale lessor is no longer modelled")
}

// TestPauseGuardIsNeeded: with the renewer's pause rule off (lease.Pauses),
// a holder woken cut off from the cluster counts its stale lessor's
// acknowledgements and serves past its lease in the store within the
// first few seeds (wake.go); the same seed passes with the rule on.
func TestPauseGuardIsNeeded(t *testing.T) {
	t.Parallel() // well under a second: the first seeds fail
	for seed := uint64(1); seed <= 100; seed++ {
		if guardFails(t, Scenario(seed), func(o *Options) { o.NoPauseGuard = true },
			"its key may be taken", "its session is gone", "two nodes serve at once") {
			return
		}
	}
	t.Fatal("without the pause rule no seed of 1..100 had a node serve past its lease: the woken stale lessor is no longer modelled")
}

// TestRemovalGuardIsNeeded: with `members remove` judged as before
// 2026-12-07 (NoRemovalGuard: gone when the asking node's view, however
// old, has no record of the removed node, and a new session counted
// before its record was written), seeds that a sweep of 1..40,001 found
// break rule 11 (a removed node serves after its removal was answered);
// with the guard they pass. 6380 and 30795: a node in active-active
// serves on a new session whose record is not in the store yet; 15946:
// n2, just restarted, takes the key on its new session while the removal
// is answered on a view with no record of it. (The seeds named before,
// 6208, 13083 and 18439, fail on the schedule before machine.ViewLost:
// with NoViewLost and NoViewPublish too.)
func TestRemovalGuardIsNeeded(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{6380, 15946, 30795} {
		if !guardFails(t, Scenario(seed), func(o *Options) { o.NoRemovalGuard = true }, "after its removal from the cluster was acknowledged") {
			t.Errorf("seed %d without the removal guard passed; want a removed node serving after the answer", seed)
		}
	}
}

// TestHeldByIsNeeded: with a standby's record judged by its Eligible alone
// (NoHeldBy, as before 2026-12-07), seed 37222 on the schedule of fc30dcc
// (NoRemovalGuard, NoViewLost and NoViewPublish: the same runs, event for
// event) answers a switchover settled and then refuses the next as
// "switchover to n1 in progress": n2, whose writes to the store were
// 311 ms slow, published that record after the intent was cleared. With
// the record naming its intent (operator.Available) it passes. Sweeps of
// later schedules found no such seed (1..40,000 on this one, with and
// without the removal guard): the slow writer has to publish after the
// settle and before the next call.
func TestHeldByIsNeeded(t *testing.T) {
	t.Parallel()
	on := Scenario(37222)
	on.NoRemovalGuard, on.NoViewLost, on.NoViewPublish = true, true, true
	if !guardFails(t, on, func(o *Options) { o.NoHeldBy = true }, "refused: another switchover in progress (the node was told these were over: [sw1])") {
		t.Error("seed 37222 without HeldBy passed; want the refusal after sw1 settled")
	}
}
