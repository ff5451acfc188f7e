package chaos

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
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

// hardCap ends the wait for a cluster on a machine that starves it: a
// recovery may take no longer than this, however loaded the machine.
const hardCap = 3 * time.Minute

// recoveryBound is how long the cluster may take, from a heal, to be
// whole again, in CPU time a thread could have had (cpuShare), and why.
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

// cpuShare samples, every 100 ms, how many threads the kernel has ready to
// run (the fourth field of /proc/loadavg) against the machine's CPUs: with
// r runnable on c CPUs, a thread that wants a CPU gets about min(1, c/r)
// of one. Every step of a recovery wants one (the agents' renewals,
// campaigns, TLS handshakes and etcd's fsyncs, the sample's answers, the
// proxy), and on a machine at load 30 with 2 CPUs each takes about 15
// times as long: the sandbox's three nodes share the machine, so no node
// is spared. A probe that only sleeps and wakes (a timer's lateness) does
// not see it: the kernel wakes a thread that slept at once. Beside 26
// busy loops such a probe (a 20 ms sleep, its lateness summed) lost 4.1 s
// of the 17.2 s a recovery took, never more than 68 ms at once, while
// agents in such runs logged stalls of 1.2 s.
type cpuShare struct {
	cpus    float64
	mu      sync.Mutex
	samples []share
	stop    chan struct{}
	done    chan struct{}
}

type share struct {
	at       time.Time
	runnable int
}

func startCPUShare() *cpuShare {
	p := &cpuShare{cpus: float64(runtime.NumCPU()), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				if r, ok := runnable(); ok {
					p.mu.Lock()
					p.samples = append(p.samples, share{now, r})
					p.mu.Unlock()
				}
			}
		}
	}()
	return p
}

func (p *cpuShare) Stop() { close(p.stop); <-p.done }

// runnable reads the number of runnable threads from /proc/loadavg
// ("0.52 0.58 0.59 3/221 1234": 3, this one among them).
func runnable() (int, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0, false
	}
	r, err := strconv.Atoi(strings.Split(f[3], "/")[0])
	return r, err == nil && r > 0
}

// since is the CPU time one thread could have had from from to now (each
// sample stands for the 100 ms before it), and the mean runnable count.
func (p *cpuShare) since(from, now time.Time) (time.Duration, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var got time.Duration
	var n, sum int
	prev := from
	for _, s := range p.samples {
		if !s.at.After(from) {
			continue
		}
		got += time.Duration(float64(s.at.Sub(prev)) * min(1, p.cpus/float64(s.runnable)))
		prev = s.at
		n++
		sum += s.runnable
	}
	got += now.Sub(prev) // not sampled yet: counted whole
	if n == 0 {
		return got, 0
	}
	return got, float64(sum) / float64(n)
}

// waitRecovered waits until sb is whole after a heal at healed, for bound
// of CPU time a thread could have had since (cpuShare), and at most
// hardCap. It returns how long the cluster took and what the machine
// gave it, or an error that says both.
func waitRecovered(ctx context.Context, sb *drill.Sandbox, p *cpuShare, healed time.Time, bound time.Duration) (time.Duration, string, error) {
	for {
		why := sb.Whole(ctx)
		now := time.Now()
		got, r := p.since(healed, now)
		what := fmt.Sprintf("%s of CPU time a thread could have had: %.1f runnable on %.0f CPUs on average", got.Round(time.Millisecond), r, p.cpus)
		if why == "" {
			return now.Sub(healed), what, nil
		}
		if got > bound || now.Sub(healed) > hardCap {
			return now.Sub(healed), what, fmt.Errorf("not whole %s after the heal (%s; bound %s, at most %s): %s",
				now.Sub(healed).Round(time.Millisecond), what, bound, hardCap, why)
		}
		select {
		case <-ctx.Done():
			return now.Sub(healed), what, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
