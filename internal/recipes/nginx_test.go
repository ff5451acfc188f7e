package recipes

import (
	"testing"
	"time"
)

// TestNginxRecipe runs examples/nginx: two nodes with Debian's nginx (two
// workers each) behind haven's proxy, a witness, and a client sending GETs
// through the proxy, across kill -9 of the active's nginx, kill -9 of the
// active's agent (nothing of its nginx may survive it, and the restarted
// agent's nginx must bind its port) and a switchover. The client must see
// no error.
func TestNginxRecipe(t *testing.T) {
	r := newRecipe(t, "nginx")
	apis := []string{"127.0.0.1:7111", "127.0.0.1:7112"}
	nginxAddr := map[string]string{"n1": r.addr("127.0.0.1:8111"), "n2": r.addr("127.0.0.1:8112")}
	active := r.startCluster(apis, startTimeout, "w1")
	proxyURL := "http://" + r.addr("127.0.0.1:8080") + "/"
	waitFor(t, 10*time.Second, "the proxy to route to "+active, func() bool {
		n, _ := getBody(proxyURL)
		return n == active
	})
	load := startHTTPLoad(proxyURL, 4)
	defer load.stop()
	waitFor(t, 10*time.Second, "the client's first answers", func() bool { return len(load.since(time.Time{})) > 20 })

	var results []result
	// measure waits for next to serve the client after the fault at t0 and
	// for both nodes to be healthy again, then records the fault.
	// measure waits for the failover after the fault at t0, runs then
	// (a restart of what the fault killed), waits for both nodes to be
	// healthy again and records the fault.
	measure := func(fault, from string, t0 time.Time, then func()) {
		t.Helper()
		next := other(from)
		var first time.Time
		waitFor(t, 30*time.Second, next+" to serve the client after "+fault, func() bool {
			var ok bool
			first, ok = load.firstFrom(next, t0)
			return ok
		})
		r.waitActive(apis, startTimeout, from, next)
		if then != nil {
			then()
		}
		r.waitActive(apis, startTimeout, "", "n1", "n2")
		end := time.Now()
		n, errs, firstErr := load.count(t0, end)
		results = append(results, result{fault: fault, from: from, to: next, failover: first.Sub(t0), requests: n, errors: errs, lost: "none (stateless)"})
		if errs > 0 {
			t.Errorf("%s: %d of %d requests failed, first: %s", fault, errs, n, firstErr)
		}
	}

	// The agent runs nginx's master and its workers, none of which may
	// outlive a kill -9 of the agent.
	r.threeFaults(apis, "active", "nginx", nginxAddr, func(tree []int) {
		var nginxes []int
		for _, p := range tree {
			if comm(p) == "nginx" {
				nginxes = append(nginxes, p)
			}
		}
		if len(nginxes) < 3 {
			t.Fatalf("the agent runs %d nginx processes (%v), want a master and 2 workers", len(nginxes), tree)
		}
	}, measure)

	load.stop()
	report(t, "nginx", results)
}

func getBody(url string) (string, error) {
	a := startHTTPLoadOnce(url)
	return a.node, nil
}
