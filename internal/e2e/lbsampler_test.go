package e2e

import (
	"net/http"
	"sync"
	"time"
)

// lbSample is a 200 from a node's /lb-check: when the request was sent
// and when the answer came back.
type lbSample struct {
	node       string
	sent, recv time.Time
}

// lbSampler asks every node's /lb-check every 10 ms, as a load balancer
// would, and keeps the 200s: the overlap tests' record of who served when.
// The timeout is 1 s: at 200 ms, on a loaded machine, requests gave up
// during their TLS handshakes, which then started over on a new
// connection, and the sampler saw a handful of 200s in 20 s. A late
// answer only widens its sample, which makes the overlap check stricter.
type lbSampler struct {
	mu   sync.Mutex
	oks  []lbSample
	stop chan struct{}
	wg   sync.WaitGroup
}

// startLBSampler starts sampling every node of c until finish.
func startLBSampler(c *Cluster) *lbSampler {
	s := &lbSampler{stop: make(chan struct{})}
	client := &http.Client{Timeout: time.Second, Transport: c.HTTP.Transport}
	for _, n := range c.Nodes {
		s.wg.Add(1)
		go func(name, addr string) {
			defer s.wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-tick.C:
				}
				sent := time.Now()
				resp, err := client.Get(c.API.BaseURL(addr) + "/lb-check")
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					s.mu.Lock()
					s.oks = append(s.oks, lbSample{name, sent, time.Now()})
					s.mu.Unlock()
				}
			}
		}(n.Name, n.API)
	}
	return s
}

// count is how many 200s node has answered so far.
func (s *lbSampler) count(node string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, o := range s.oks {
		if o.node == node {
			n++
		}
	}
	return n
}

// finish stops the sampling and returns every 200 seen, in the order they
// came back.
func (s *lbSampler) finish() []lbSample {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	return s.oks
}

// overlapping returns two 200s from different nodes whose requests and
// answers overlapped in time (two nodes serving at once), if there are any.
func overlapping(oks []lbSample) (a, b lbSample, found bool) {
	for i, a := range oks {
		for _, b := range oks[i+1:] {
			if a.node != b.node && a.sent.Before(b.recv) && b.sent.Before(a.recv) {
				return a, b, true
			}
		}
	}
	return lbSample{}, lbSample{}, false
}
