package sample

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
)

// TestRoleAskReusesConnections: the service asks its agent for the role
// before every answer. Under concurrent requests those asks must reuse
// connections: with the default two kept per host, each ask beyond them
// dialled (and, under the cluster's TLS, shook hands) anew, ran past the
// timeout on a loaded machine, and the service answered 503 while its node
// served, which the proxy counted as strikes against the only active.
func TestRoleAskReusesConnections(t *testing.T) {
	t.Setenv("HAVEN_TLS_CA", "")
	const concurrent = 32
	var (
		dials   atomic.Int64
		waiting atomic.Int64
		mu      sync.Mutex
		gate    chan struct{}
	)
	// The agent holds each ask until the round's gate opens, so that every
	// round has all its asks open at once.
	agent := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		g := gate
		mu.Unlock()
		waiting.Add(1)
		<-g
		_ = json.NewEncoder(w).Encode(api.RoleView{Node: "n1", Role: "active", Epoch: 1, Serving: true})
	}))
	agent.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	agent.Start()
	defer agent.Close()
	srv := New("n1", agent.URL)
	srv.client.Timeout = time.Minute // the gate holds asks; a loaded machine must not time them out
	svc := httptest.NewServer(srv.Handler())
	defer svc.Close()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	round := func() {
		mu.Lock()
		gate = make(chan struct{})
		mu.Unlock()
		waiting.Store(0)
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(svc.URL + "/")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET / = %d, want 200 (the agent says serving)", resp.StatusCode)
				}
			}()
		}
		deadline := time.Now().Add(10 * time.Second)
		for waiting.Load() < concurrent && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(gate)
		wg.Wait()
	}
	round()
	first := dials.Load()
	round()
	// The second round finds the first round's connections kept.
	if again := dials.Load() - first; again > 2 {
		t.Fatalf("the second round of %d concurrent requests dialled the agent %d more times (after %d): the role asks do not reuse connections", concurrent, again, first)
	}
}
