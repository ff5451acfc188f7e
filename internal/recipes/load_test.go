package recipes

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// httpLoad is a client that GETs url from several workers, each as soon as
// its previous request answered, and records every answer. Bounded: it
// stops at stop() or after max requests.
type httpLoad struct {
	mu      sync.Mutex
	answers []answer
	stopC   chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type answer struct {
	at   time.Time // when it completed
	node string    // the body: the node that served it
	err  string    // "" for a 200
}

const maxLoadRequests = 2_000_000

func startHTTPLoad(url string, workers int) *httpLoad {
	l := &httpLoad{stopC: make(chan struct{})}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range maxLoadRequests / workers {
				select {
				case <-l.stopC:
					return
				default:
				}
				a := answer{}
				resp, err := client.Get(url)
				if err != nil {
					a.err = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					a.node = strings.TrimSpace(string(b))
					if resp.StatusCode != http.StatusOK {
						a.err = resp.Status
					}
				}
				a.at = time.Now()
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *httpLoad) stop() {
	l.once.Do(func() { close(l.stopC) })
	l.wg.Wait()
}

// since returns the answers completed after t.
func (l *httpLoad) since(t time.Time) []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []answer
	for _, a := range l.answers {
		if a.at.After(t) {
			out = append(out, a)
		}
	}
	return out
}

// firstFrom is when the first successful answer from node came after t.
func (l *httpLoad) firstFrom(node string, t time.Time) (time.Time, bool) {
	for _, a := range l.since(t) {
		if a.err == "" && a.node == node {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// count returns the requests and the errors in [from, to).
func (l *httpLoad) count(from, to time.Time) (n, errs int, first string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if a.at.Before(from) || !a.at.Before(to) {
			continue
		}
		n++
		if a.err != "" {
			errs++
			if first == "" {
				first = a.err
			}
		}
	}
	return n, errs, first
}

// startHTTPLoadOnce sends one GET.
func startHTTPLoadOnce(url string) answer {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return answer{err: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{at: time.Now(), node: strings.TrimSpace(string(b))}
	if resp.StatusCode != http.StatusOK {
		a.err = resp.Status
	}
	return a
}

// tally records when a client's operations were acknowledged and when they
// failed; the Redis and PostgreSQL loads share it. Its methods take mu,
// which the loads also hold while they record what they keep of their own.
type tally struct {
	mu      sync.Mutex
	okAt    []time.Time // acknowledged operations
	errs    []time.Time // failed ones (a broken connection, an error reply)
	lastErr string
}

func (l *tally) fail(err string) {
	l.mu.Lock()
	l.errs = append(l.errs, time.Now())
	l.lastErr = err
	l.mu.Unlock()
}

// counts is how many operations were acknowledged and failed in [from, to).
func (l *tally) counts(from, to time.Time) (ok, errs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.okAt {
		if !at.Before(from) && at.Before(to) {
			ok++
		}
	}
	for _, at := range l.errs {
		if !at.Before(from) && at.Before(to) {
			errs++
		}
	}
	return ok, errs
}

// firstOK is the first acknowledged operation after t.
func (l *tally) firstOK(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.okAt {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// outage is the longest time without an acknowledged operation in
// [from, to], and when it began: the client cannot tell which node
// acknowledged, so this is its view of the failover.
func (l *tally) outage(from, to time.Time) (longest time.Duration, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := from
	for _, at := range l.okAt {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		if at.Sub(prev) > longest {
			longest, start = at.Sub(prev), prev
		}
		prev = at
	}
	return longest, start
}
