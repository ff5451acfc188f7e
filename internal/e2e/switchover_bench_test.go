package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

var heldRE = regexp.MustCompile(`traffic held \(no node answering /lb-check 200\): ([0-9.]+) ms`)

// BenchmarkSwitchoverThroughProxy: b.N planned switchovers (lan preset)
// while 8 clients GET through a real haven proxy. Reports the traffic held
// as /lb-check shows it, the slowest client request during each switchover
// (what a client feels as the hold), and the client errors.
func BenchmarkSwitchoverThroughProxy(b *testing.B) {
	c := newCluster(b, clusterOpts{timings: "lan"})
	c.WaitActive(startTimeout)
	p := c.startProxy(b, "proxy", "")
	e2etest.WaitFor(b, 20*time.Second, "the proxy to serve", func() bool { code, _, err := getNode(p.Addr); return err == nil && code == 200 })

	var errs atomic.Int64
	var mu sync.Mutex
	var slowest time.Duration
	// Each client's request in flight (start, Unix ns; 0 when idle): one
	// still waiting when a window closes counts too, or a client held
	// across the whole switchover would go unseen.
	var inflight [8]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				inflight[i].Store(start.UnixNano())
				resp, err := client.Get("http://" + p.Addr + "/")
				d := time.Since(start)
				inflight[i].Store(0)
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				mu.Lock()
				if d > slowest {
					slowest = d
				}
				mu.Unlock()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	var held, felt []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.waitHealthy(30 * time.Second)
		mu.Lock()
		slowest = 0
		mu.Unlock()
		b.StartTimer()
		code, out, errOut := runHaven(b, "switchover", "--config", c.Config)
		b.StopTimer()
		if code != 0 {
			b.Fatalf("switchover: exit %d: %s", code, errOut)
		}
		m := heldRE.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no held figure in %q", out)
		}
		h, _ := strconv.ParseFloat(m[1], 64)
		held = append(held, h)
		time.Sleep(100 * time.Millisecond) // let in-flight requests of this switchover finish
		mu.Lock()
		worst := slowest
		mu.Unlock()
		now := time.Now()
		for i := range inflight {
			if st := inflight[i].Load(); st != 0 {
				worst = max(worst, now.Sub(time.Unix(0, st)))
			}
		}
		felt = append(felt, float64(worst.Microseconds())/1000)
	}
	q := func(v []float64, p float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	b.ReportMetric(q(held, 0.5), "held-p50-ms")
	b.ReportMetric(q(held, 0.99), "held-p99-ms")
	b.ReportMetric(q(felt, 0.5), "slowest-req-p50-ms")
	b.ReportMetric(q(felt, 0.99), "slowest-req-p99-ms")
	b.ReportMetric(float64(errs.Load()), "client-errors")
	b.Logf("held (ms): %v", fmt.Sprint(held))
	b.Logf("slowest request per switchover (ms): %v", fmt.Sprint(felt))
}
