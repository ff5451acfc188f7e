package recipes

import (
	"strings"
	"syscall"
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
	if code, out := runHaven(t, "config", "check", r.config); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("config check of the recipe: exit %d\n%s", code, out)
	}
	r.startWitness("w1")
	r.startAgent("n1")
	r.startAgent("n2")
	r.startProxy()
	active, _ := r.waitActive(apis, startTimeout, "", "n1", "n2")
	proxyURL := "http://" + r.addr("127.0.0.1:8080") + "/"
	waitFor(t, 10*time.Second, "the proxy to route to "+active, func() bool {
		n, _ := getBody(proxyURL)
		return n == active
	})
	load := startHTTPLoad(proxyURL, 4)
	defer load.stop()
	waitFor(t, 10*time.Second, "the client's first answers", func() bool { return len(load.since(time.Time{})) > 20 })

	var results []result
	other := func(n string) string {
		if n == "n1" {
			return "n2"
		}
		return "n1"
	}
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

	// 1. kill -9 of the active's nginx master.
	st, _ := r.status(apis...)
	v, _ := nodeView(st, active)
	t0 := time.Now()
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	measure("kill -9 of the active's nginx", active, t0, nil)

	// 2. kill -9 of the active's agent: its nginx (master and workers)
	// must not survive it, and its restarted agent must start nginx again.
	active, _ = r.waitActive(apis, startTimeout, "", "n1", "n2")
	tree := descendants(r.proc(active).cmd.Process.Pid)
	var nginxes []int
	for _, p := range tree {
		if comm(p) == "nginx" {
			nginxes = append(nginxes, p)
		}
	}
	if len(nginxes) < 3 {
		t.Fatalf("%s's agent runs %d nginx processes (%v), want a master and 2 workers", active, len(nginxes), tree)
	}
	t0 = time.Now()
	r.killAgent(active)
	checkNoOrphans(t, tree)
	waitPortFree(t, "the killed node's nginx port", nginxAddr[active])
	killed := active
	measure("kill -9 of the active's agent", active, t0, func() { r.startAgent(killed) })

	// 3. switchover.
	active, _ = r.waitActive(apis, startTimeout, "", "n1", "n2")
	t0 = time.Now()
	r.switchover(other(active))
	measure("switchover", active, t0, nil)

	load.stop()
	report(t, "nginx", results)
}

func getBody(url string) (string, error) {
	a := startHTTPLoadOnce(url)
	return a.node, nil
}
