package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

// chaosFault is one fault the chaos suite can inject: it starts it and
// returns how to heal it.
type chaosFault struct {
	name   string
	inject func(sb *drill.Sandbox, rng *rand.Rand, active string) (desc string, heal func() error, err error)
}

func pick(rng *rand.Rand, list []string) string { return list[rng.IntN(len(list))] }

var chaosFaults = []chaosFault{
	{"service-kill", func(sb *drill.Sandbox, _ *rand.Rand, active string) (string, func() error, error) {
		pid, err := sb.KillService(active)
		return fmt.Sprintf("kill -9 %s's service (pid %d)", active, pid), nil, err
	}},
	{"agent-kill", func(sb *drill.Sandbox, rng *rand.Rand, active string) (string, func() error, error) {
		n := pick(rng, []string{active, pick(rng, sb.Standbys(active))})
		err := sb.StopAgent(n, syscall.SIGKILL, 10*time.Second)
		return "kill -9 the agent of " + n, func() error { return sb.StartAgent(n) }, err
	}},
	{"agent-freeze", func(sb *drill.Sandbox, _ *rand.Rand, active string) (string, func() error, error) {
		err := sb.Signal(active, syscall.SIGSTOP)
		return "SIGSTOP the agent of " + active, func() error { return sb.Signal(active, syscall.SIGCONT) }, err
	}},
	{"cut", func(sb *drill.Sandbox, rng *rand.Rand, active string) (string, func() error, error) {
		n := pick(rng, []string{active, active, pick(rng, sb.Standbys(active))})
		err := sb.Cut(n)
		return "cut " + n + " off the cluster network", func() error { return sb.Heal(n) }, err
	}},
	{"cut-egress", func(sb *drill.Sandbox, _ *rand.Rand, active string) (string, func() error, error) {
		err := sb.CutEgress(active)
		return "drop what " + active + " sends on the cluster network", func() error { return sb.Heal(active) }, err
	}},
	{"majority-loss", func(sb *drill.Sandbox, _ *rand.Rand, active string) (string, func() error, error) {
		sbs := sb.Standbys(active)
		for _, n := range sbs {
			if err := sb.Cut(n); err != nil {
				return "", nil, err
			}
		}
		return "cut " + strings.Join(sbs, " and ") + " off (no quorum for " + active + ")", func() error {
			for _, n := range sbs {
				if err := sb.Heal(n); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}},
	{"switchover", func(sb *drill.Sandbox, _ *rand.Rand, _ string) (string, func() error, error) {
		err := operator(sb, "switchover", "--reason", "chaos")
		return "haven switchover", nil, err
	}},
	{"maintenance", func(sb *drill.Sandbox, _ *rand.Rand, active string) (string, func() error, error) {
		err := operator(sb, "maintenance", "on", active)
		return "maintenance on " + active, func() error { return operator(sb, "maintenance", "off", active) }, err
	}},
}

// operator runs an operator command as an operator would: a refusal
// because the store did not answer in time (HTTP 503; etcd can lag for a
// few seconds after a heal on a loaded machine), or because the agent
// asked decided on a view of the active that the store had already left
// ("stale view, retry": a failover happened meanwhile), is tried again,
// three times at most; so is a switchover refused because its target, back
// from a cut with a new session, has no view of the store yet (its etcd
// member may take seconds to serve its watch after a heal): refused before
// the active stepped down, since it could not take the role. A switchover
// that a lost answer had already recorded is refused as "another switchover is in progress" on the
// retry, which is what was asked.
func operator(sb *drill.Sandbox, args ...string) error {
	var err error
	for try := 0; try < 3; try++ {
		var out string
		out, err = sb.Haven(context.Background(), args...)
		switch {
		case err == nil:
			return nil
		case try > 0 && strings.Contains(out, "another switchover is in progress"):
			return nil
		case !strings.Contains(out, "HTTP 503") && !strings.Contains(out, "stale view, retry") &&
			!strings.Contains(out, "view of the store is behind"):
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

// TestChaos injects a random sequence of faults into a sandbox cluster while
// clients read, write unique values and work on shared registers through
// the proxy, then checks the whole history: no two nodes served as active
// at once and no epoch went backwards (as the clients and the nodes' clock
// saw it), no acknowledged write was lost, the registers are linearizable
// (porcupine), and the service came back within a bound after every heal.
//
// HAVEN_CHAOS_SEED replays a run; HAVEN_CHAOS_DURATION makes it longer
// (default 100s of faults).
func TestChaos(t *testing.T) {
	// Parallel: unlike the drill tests, it holds nothing to an RTO target,
	// only to safety (no overlap, no lost write, linearizable registers)
	// and to a recovery bound after each heal: the documented worst case
	// of the timings, counted in the CPU time the loaded machine left a
	// thread (recovery_test.go). It is the longest end-to-end test (100 s of
	// faults): it has a package of its own so that it runs beside the
	// others (go test -p 2) instead of adding to one package's length.
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HAVEN_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HAVEN_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	duration := 100 * time.Second
	if s := os.Getenv("HAVEN_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("HAVEN_CHAOS_DURATION=%q: %v", s, err)
		}
		duration = d
	}
	t.Logf("chaos seed %d (replay with HAVEN_CHAOS_SEED=%d), %s of faults", seed, seed, duration)
	var history, failures []string
	// Registered first, so it runs last: the verdict ends the output,
	// after the sandbox's logs.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos run failed; replay with HAVEN_CHAOS_SEED=%d\nfaults:\n  %s\nfailures:\n  %s",
				seed, strings.Join(history, "\n  "), strings.Join(failures, "\n  "))
		}
	})
	fail := func(format string, args ...any) {
		failures = append(failures, fmt.Sprintf(format, args...))
		t.Errorf(format, args...)
	}
	var stats func() string // the requests so far, once the load runs
	fatal := func(format string, args ...any) {
		failures = append(failures, fmt.Sprintf(format, args...))
		if stats != nil {
			t.Log(stats())
		}
		t.Fatalf(format, args...)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Netns: true, Timing: "ci"})
	lease := sb.Lease
	cfg, err := config.Load(sb.Config)
	if err != nil {
		t.Fatal(err)
	}
	// From a heal to the cluster whole and serving (recoveryBound), in
	// CPU time a thread could have had (cpuShare).
	recoverBound, boundWhy := recoveryBound(cfg)
	t.Logf("recovery bound %s (%s), in CPU time a thread could have had", recoverBound, boundWhy)
	share := startCPUShare()
	defer share.Stop()

	t0 := time.Now()
	load := drill.StartLoad(drill.LoadOptions{Target: "http://" + sb.Proxy, Clients: 4, Prefix: fmt.Sprintf("chaos%d-", seed)}, t0)
	defer load.Stop()
	ctx := context.Background()
	// whole holds the spans from each "whole again" to the next fault:
	// the requests sent in them say whether routing works when nothing is
	// wrong, apart from the outages the faults make by design.
	var whole []span
	wholeSince := time.Duration(0)
	stats = func() string { return answeredWhileWhole(load.Ops(), whole) }
	for i := 0; time.Since(t0) < duration; i++ {
		var active string
		var epoch int64
		e2etest.WaitFor(t, 10*time.Second, "one node serving", func() bool {
			n, e := sb.Active() // whole a moment ago; a probe may time out under load
			active, epoch = n, int64(e)
			return n != ""
		})
		f := chaosFaults[rng.IntN(len(chaosFaults))]
		hold := time.Duration(float64(lease) * (0.25 + 2*rng.Float64())) // a quarter of a lease to over two
		whole = append(whole, span{wholeSince, time.Since(t0)})
		desc, heal, err := f.inject(sb, rng, active)
		at := time.Since(t0)
		entry := fmt.Sprintf("t=%.2fs %s (active %s at epoch %d), held %s", at.Seconds(), desc, active, epoch, hold.Round(time.Millisecond))
		history = append(history, entry)
		t.Log(entry)
		if err != nil {
			fatal("inject %s: %v", f.name, err)
		}
		time.Sleep(hold)
		if heal != nil {
			if err := heal(); err != nil {
				fatal("heal %s: %v", f.name, err)
			}
		}
		healed := time.Now()
		took, machine, err := waitRecovered(ctx, sb, share, healed, recoverBound)
		if err != nil {
			fatal("healing %q: %v", desc, err)
		}
		wholeSince = time.Since(t0)
		history = append(history, fmt.Sprintf("   whole again %s after the heal (%s)", took.Round(time.Millisecond), machine))
		t.Log(history[len(history)-1])
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	whole = append(whole, span{wholeSince, time.Since(t0)})
	load.Stop()
	ops := load.Ops()

	ok, failed := 0, 0
	for _, o := range ops {
		if o.OK {
			ok++
		} else {
			failed++
		}
	}
	t.Logf("%d requests: %d answered, %d failed", len(ops), ok, failed)
	t.Log(stats())
	// Routing that works: most requests answered while nothing was wrong.
	// Not of all requests: how much of a run goes to recoveries depends on
	// the machine's load (at load 30–44 one recovery took 96 s of a 100 s
	// run, and 2,360 of 8,822 requests were answered, 149 of 149 while
	// whole).
	if in, inOK := wholeCounts(ops, whole); inOK < in/2 {
		fail("only %d of %d requests sent while the cluster was whole succeeded (%d of %d in all)", inOK, in, ok, len(ops))
	}
	if why := drill.SplitBrain(ops); why != "" {
		fail("split brain: %s", why)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	acked, lost, err := drill.ReadBack(rctx, "http://"+sb.Proxy, ops)
	cancel()
	if err != nil {
		fail("read back: %v", err)
	}
	if len(lost) > 0 {
		fail("%d of %d acknowledged writes lost: %v", len(lost), acked, lost[:min(len(lost), 20)])
	}
	checkStart := time.Now()
	res, n := drill.Linearizable(ops, 90*time.Second)
	t.Logf("%d acknowledged writes read back; registers: %s (%d operations, checked in %s); epochs: %v",
		acked, res, n, time.Since(checkStart).Round(time.Millisecond), drill.Epochs(ops, 0, time.Since(t0)))
	if res != "Ok" {
		// Keep the history for a look offline (drill.Linearizable on it).
		if b, err := json.Marshal(ops); err == nil {
			f := filepath.Join(e2etest.ArtifactsDir(t), "ops.json")
			if err := os.WriteFile(f, b, 0o644); err == nil {
				t.Logf("the history is in %s", f)
			}
		}
	}
	switch res {
	case "Ok":
	case "Illegal":
		fail("the shared registers are not linearizable")
	default: // the check ran out of time: nothing is proven
		fail("the linearizability check did not finish in 90s (%s); a 100 s run takes about a second", res)
	}
}

// span is a stretch of a run, from its start.
type span struct{ from, to time.Duration }

// wholeCounts counts the requests sent and ended while the cluster was
// whole (in one of spans), and those of them answered.
func wholeCounts(ops []drill.Op, spans []span) (in, inOK int) {
	for _, o := range ops {
		if inSpans(o, spans) {
			in++
			if o.OK {
				inOK++
			}
		}
	}
	return in, inOK
}

func inSpans(o drill.Op, spans []span) bool {
	for _, s := range spans {
		if o.Start >= s.from && o.End <= s.to {
			return true
		}
	}
	return false
}

// answeredWhileWhole says how many of the requests sent and ended while
// the cluster was whole (in one of spans) were answered, and why the
// others failed, beside how many of the rest (sent or ended during a fault
// or a recovery) were answered.
func answeredWhileWhole(ops []drill.Op, spans []span) string {
	var in, inOK, out, outOK int
	why := map[string]int{}
	for _, o := range ops {
		inside := inSpans(o, spans)
		switch {
		case inside && o.OK:
			in++
			inOK++
		case inside:
			in++
			why[o.Err]++
		case o.OK:
			out++
			outOK++
		default:
			out++
		}
	}
	var whys []string
	for w, n := range why {
		whys = append(whys, fmt.Sprintf("%d× %q", n, w))
	}
	slices.Sort(whys)
	var d time.Duration
	for _, s := range spans {
		d += s.to - s.from
	}
	return fmt.Sprintf("while whole (%s in all): %d of %d requests answered; during faults and recoveries: %d of %d; failures while whole: %s",
		d.Round(time.Millisecond), inOK, in, outOK, out, strings.Join(whys, ", "))
}
