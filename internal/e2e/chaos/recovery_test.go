package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/drill"
)

// agentStart is what the bound allows an agent restarted by the heal
// (kill -9 of an agent) to start: process, TLS, etcd member from its WAL,
// service. About twice what it took here at load 8: whole 1.8 s after
// the restart, the first pass of its check (up to 2 s) included.
const agentStart = 2 * time.Second

// hardCap ends the wait for a cluster that the machine keeps starving:
// a recovery may take no longer than this, however starved.
const hardCap = 3 * time.Minute

// recoveryBound is how long the cluster may take, from a heal, to be
// whole again, in time the machine let processes run, and why.
//
// The documented worst case of the sandbox's timings (config check's
// table, config.Timing.WorstCase): a failover may still be under way at
// the heal, the worst one losing the etcd raft leader's node (etcd elects
// in up to 2 × etcd_election, the new leader extends every lease by one
// more, then the lease runs out and the store round trips: AgentLossLeader);
// its winner may then wait the lock-delay (lease_ttl: a frozen and woken
// etcd leader revoked the key); and the healed node's service must pass
// its checks again (rise × interval + timeout) after its agent restarted
// (agentStart).
func recoveryBound(cfg *config.Config) (time.Duration, string) {
	w := cfg.Timing.WorstCase(cfg.Checks)
	var rise time.Duration
	for _, c := range cfg.Checks {
		rise = max(rise, time.Duration(max(c.Rise, 1))*c.Interval+c.Timeout)
	}
	d := w.AgentLossLeader + cfg.Timing.LeaseTTL + rise + agentStart
	return d, fmt.Sprintf("etcd leader's node lost %s + lock-delay %s + checks pass again %s + agent start %s",
		w.AgentLossLeader, cfg.Timing.LeaseTTL, rise, agentStart)
}

// minCheckTimeout is the shortest health-check timeout of cfg: a process
// stall as long fails a probe by design.
func minCheckTimeout(cfg *config.Config) time.Duration {
	d := cfg.Timing.LeaseTTL - cfg.Timing.FenceMargin // no checks: the fence window
	for _, c := range cfg.Checks {
		d = min(d, c.Timeout)
	}
	return d
}

// stallProbe measures how long this process waits to run: a goroutine that
// sleeps step after step and records how late each wake-up is. On a loaded
// machine every runnable thread waits alike (the agents' too): the sum of
// the lateness is the time the machine did not let processes run when they
// asked to, and one long lateness is a stall of the whole machine.
type stallProbe struct {
	mu    sync.Mutex
	wakes []wake
	stop  chan struct{}
	done  chan struct{}
}

type wake struct {
	at   time.Time
	late time.Duration
}

const stallStep = 20 * time.Millisecond

func startStallProbe() *stallProbe {
	p := &stallProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTimer(stallStep)
		defer t.Stop()
		due := time.Now().Add(stallStep)
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				p.mu.Lock()
				p.wakes = append(p.wakes, wake{now, max(0, time.Since(due))})
				p.mu.Unlock()
				due = time.Now().Add(stallStep)
				t.Reset(stallStep)
			}
		}
	}()
	return p
}

func (p *stallProbe) Stop() { close(p.stop); <-p.done }

// since sums the lateness of the wake-ups after from, and says when the
// latest one later than long came (zero if none).
func (p *stallProbe) since(from time.Time, long time.Duration) (sum time.Duration, lastLong time.Time, worst time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.wakes) - 1; i >= 0 && p.wakes[i].at.After(from); i-- {
		w := p.wakes[i]
		sum += w.late
		worst = max(worst, w.late)
		if w.late > long && lastLong.IsZero() {
			lastLong = w.at
		}
	}
	return sum, lastLong, worst
}

// waitRecovered waits until sb is whole after a heal at healed. It allows
// bound of running time: the wall time since the heal less the time the
// probe waited to run (a starved machine delays every step of a recovery
// alike). A stall longer than a health check's timeout fails a probe by
// design and may start a failover of its own, on every node alike (the
// sandbox's nodes share this machine): the count starts again after it.
// It returns how long the cluster took, or an error that says what the
// machine did meanwhile.
func waitRecovered(ctx context.Context, sb *drill.Sandbox, p *stallProbe, healed time.Time, bound, stall time.Duration) (time.Duration, string, error) {
	from := healed
	for {
		why := sb.Whole(ctx)
		now := time.Now()
		starved, lastLong, worst := p.since(healed, stall)
		if lastLong.After(from) {
			from = lastLong
		}
		waitedSince, _, _ := p.since(from, stall)
		ran := now.Sub(from) - waitedSince
		what := fmt.Sprintf("the probe waited %s to run (longest %s)", starved.Round(time.Millisecond), worst.Round(time.Millisecond))
		if from != healed {
			what += fmt.Sprintf("; a stall over %s (a check's timeout) %s after the heal started the count again", stall, from.Sub(healed).Round(time.Millisecond))
		}
		if why == "" {
			return now.Sub(healed), what, nil
		}
		if ran > bound || now.Sub(healed) > hardCap {
			since := "it"
			if from != healed {
				since = "the last long stall"
			}
			return now.Sub(healed), what, fmt.Errorf("not whole %s after the heal (%s of running time since %s, bound %s; %s): %s",
				now.Sub(healed).Round(time.Millisecond), ran.Round(time.Millisecond), since, bound, what, why)
		}
		select {
		case <-ctx.Done():
			return now.Sub(healed), what, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
