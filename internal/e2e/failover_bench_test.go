package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
)

// Failover benchmarks: b.N faults, each timed from the fault to the first
// successful request to the new active's service. They use the lan preset,
// unlike the tests, or the preset named by HAVEN_BENCH_TIMING (lan-fast).
// Run them with bench/failover.sh (see docs/benchmarks.md).

// Before each fault the bench waits, up to settleTimeout, until etcd
// leadership is off the active (agents move it there a lease after a
// promotion, #19), so that each run measures the loss of an active that does
// not also lead etcd; HAVEN_BENCH_SETTLE=0 skips that wait (faults right
// after the previous failover). Either way it reports in how many runs the
// active led etcd when it was killed: those pay an etcd election as well.

// Each runs with mutual TLS (the default) and without (insecure: true), in
// the same run, so that the cost of TLS shows side by side.

func BenchmarkFailoverServiceCrash(b *testing.B) {
	tlsOnOff(b, func(b *testing.B, insecure bool) {
		benchFailover(b, insecure, func(c *Cluster, active string) {
			c.KillService(active)
		}, func(c *Cluster, old string) {})
	})
}

func BenchmarkFailoverAgentCrash(b *testing.B) {
	tlsOnOff(b, func(b *testing.B, insecure bool) {
		benchFailover(b, insecure, func(c *Cluster, active string) {
			c.Signal(active, syscall.SIGKILL)
		}, func(c *Cluster, old string) {
			<-c.Node(old).done
			c.Start(old)
		})
	})
}

// BenchmarkFailoverAgentFreeze stops the active's agent (and with it its
// etcd member) with SIGSTOP, times the failover, then lets it go on
// (SIGCONT): it must rejoin as a standby before the next fault.
func BenchmarkFailoverAgentFreeze(b *testing.B) {
	tlsOnOff(b, func(b *testing.B, insecure bool) {
		benchFailover(b, insecure, func(c *Cluster, active string) {
			c.Signal(active, syscall.SIGSTOP)
		}, func(c *Cluster, old string) {
			c.Signal(old, syscall.SIGCONT)
		})
	})
}

func tlsOnOff(b *testing.B, run func(b *testing.B, insecure bool)) {
	b.Run("tls=on", func(b *testing.B) { run(b, false) })
	b.Run("tls=off", func(b *testing.B) { run(b, true) })
}

func benchFailover(b *testing.B, insecure bool, fault, heal func(c *Cluster, active string)) {
	timings := "lan"
	if p := os.Getenv("HAVEN_BENCH_TIMING"); p != "" && p != "lan" {
		timings = "timing: " + p
	}
	c := newCluster(b, clusterOpts{timings: timings, insecure: insecure})
	c.WaitActive(startTimeout)
	var rtos []time.Duration
	ledEtcd := 0
	var slow time.Duration
	if v := os.Getenv("HAVEN_BENCH_TIMELINE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("HAVEN_BENCH_TIMELINE=%q: want a duration such as 1.1s: %v", v, err)
		}
		slow = d
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// Every node healthy before each fault, so the run starts equal.
		e2etest.WaitFor(b, startTimeout, "three healthy nodes", func() bool {
			st, err := c.Status(c.Nodes[0].Name)
			if err != nil {
				return false
			}
			healthy := 0
			for _, n := range st.Nodes {
				if n.Healthy && (n.Role == ha.RoleStandby || n.Role == ha.RoleActive) {
					healthy++
				}
			}
			return healthy == len(c.Nodes)
		})
		active, epoch := c.WaitActive(startTimeout)
		if os.Getenv("HAVEN_BENCH_SETTLE") != "0" {
			moved := false
			for deadline := time.Now().Add(settleTimeout); etcdLeader(c, active) == active && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				moved = true
			}
			if moved {
				// A new etcd leader extends every lease by an election
				// timeout until its next renewal: let the renewals
				// catch up, or the next run measures that extension.
				time.Sleep(time.Second)
			}
		}
		if etcdLeader(c, active) == active {
			ledEtcd++
		}
		// Every service has asked its agent for its role once, as a
		// service in use does: its connection to the agent is open, so the
		// failover is timed without a first (TLS) handshake in it.
		for _, n := range c.Nodes {
			c.ServiceReply(n.Name)
		}
		b.StartTimer()
		start := time.Now()
		fault(c, active)
		rto := firstSuccess(b, c, active, epoch, start)
		b.StopTimer()
		rtos = append(rtos, rto)
		if slow > 0 && rto > slow {
			b.Logf("run %d: %v (over %v); the agents' log lines from the fault on:\n%s", i+1, rto.Round(time.Millisecond), slow, timeline(c, start, rto))
		}
		heal(c, active)
	}
	sort.Slice(rtos, func(i, j int) bool { return rtos[i] < rtos[j] })
	q := func(p float64) time.Duration { return rtos[min(len(rtos)-1, int(p*float64(len(rtos))))] }
	b.ReportMetric(float64(q(0.50).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(q(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(rtos[len(rtos)-1].Milliseconds()), "max-ms")
	b.Logf("failover times (n=%d): %v", len(rtos), rtos)
	b.Logf("the killed active led etcd in %d of %d runs", ledEtcd, len(rtos))
}

// timeline returns every agent's log lines timed from a lease before start
// until rto after it, each prefixed with the node and its time since start
// (HAVEN_BENCH_TIMELINE: where a slow run spent its time).
func timeline(c *Cluster, start time.Time, rto time.Duration) string {
	type line struct {
		at   time.Duration
		text string
	}
	var ls []line
	for _, n := range c.Nodes {
		if n.log == nil {
			continue
		}
		for _, l := range strings.Split(n.log.String(), "\n") {
			// haven's lines (etcd's own go to a file in the data dir).
			v, ok := strings.CutPrefix(l, "time=")
			if !ok {
				continue
			}
			ts, rest, _ := strings.Cut(v, " ")
			t, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				continue
			}
			if at := t.Sub(start); at >= -300*time.Millisecond && at <= rto+50*time.Millisecond {
				ls = append(ls, line{at, fmt.Sprintf("%+8.1fms %s %s", float64(at.Microseconds())/1000, n.Name, rest)})
			}
		}
	}
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].at < ls[j].at })
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// settleTimeout bounds the wait for etcd leadership to leave the active.
const settleTimeout = 15 * time.Second

// etcdLeader names the etcd member that leads raft as node sees it
// ("" if it cannot tell).
func etcdLeader(c *Cluster, node string) string {
	return harness.EtcdLeader(context.Background(), c.API, c.Node(node).API)
}

// firstSuccess polls every other node's service every 2 ms until one
// answers 200 as active at a newer epoch, and returns the time since start.
func firstSuccess(b *testing.B, c *Cluster, old string, epoch ha.Epoch, start time.Time) time.Duration {
	client := &http.Client{Timeout: 200 * time.Millisecond}
	found := make(chan time.Duration, len(c.Nodes))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		if n.Name == old {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var r struct {
					Role  ha.Role  `json:"role"`
					Epoch ha.Epoch `json:"epoch"`
				}
				resp, err := client.Get("http://" + addr + "/")
				if err == nil {
					ok := resp.StatusCode == http.StatusOK && decodeJSON(resp, &r) == nil && r.Epoch > epoch
					resp.Body.Close()
					if ok {
						found <- time.Since(start)
						return
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}(n.Service)
	}
	defer func() { close(stop); wg.Wait() }()
	select {
	case d := <-found:
		return d
	case <-time.After(30 * time.Second):
		b.Fatalf("no new active within 30s after the fault on %s", old)
		return 0
	}
}
