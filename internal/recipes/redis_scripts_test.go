package recipes

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
)

// fakeAgent answers the two questions the Redis recipe's scripts ask their
// agent (/status for the leader, /v1/role for this node's role), and can
// hold one /status request to play a follower step that read the leader
// just before a promotion.
type fakeAgent struct {
	mu       sync.Mutex
	leader   string
	role     string
	requests int           // /status requests answered
	roleAsks int           // /v1/role requests answered
	asks     int           // /status requests, answered or not
	down     bool          // /status answers 503 (the agent does not answer in time)
	hold     chan struct{} // closed once a held request arrived; nil: hold none
	release  chan struct{}
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	leader, role, hold, release, down := f.leader, f.role, f.hold, f.release, f.down
	if r.URL.Path == "/status" && hold != nil {
		f.hold = nil
	}
	f.mu.Unlock()
	switch r.URL.Path {
	case "/status":
		f.mu.Lock()
		f.asks++
		f.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if hold != nil {
			close(hold)
			<-release // answers the leader as it was when asked
		}
		// A starting agent has not seen the store: it does not know.
		fmt.Fprintf(w, `{"cluster":"redis","leader":{"node":%q,"epoch":7},"leader_known":%t,"nodes":[]}`, leader, role != "starting")
		f.mu.Lock()
		f.requests++
		f.mu.Unlock()
	case "/v1/role":
		fmt.Fprintf(w, `{"node":"n1","role":%q,"epoch":7,"serving":false}`, role)
		f.mu.Lock()
		f.roleAsks++
		f.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAgent) set(leader, role string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.role = leader, role
}

func (f *fakeAgent) answered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// redisInfo is the Redis at addr's INFO replication, "" if it does not answer.
func redisInfo(addr string) string {
	c, err := dialRESP(addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	rep, err := c.do("INFO", "replication")
	if err != nil {
		return ""
	}
	s, _ := rep.(string)
	return strings.ReplaceAll(s, "\r", "")
}

var masterPort = regexp.MustCompile(`(?m)^master_port:(\d+)$`)

// TestRedisFollowerYieldsToPromotion plays, with the recipe's own scripts
// and a fake agent, the race that left a promoted node's Redis a replica
// of the dead old master (CI, kill -9 of the active's agent under load):
// the follower loop (redis-node.sh) read the leader (still the old active)
// just before this node was promoted, on_promote (promote.sh) ran
// REPLICAOF NO ONE, and the follower step then saw this Redis replicate
// nothing and pointed it back at the old active. The check (check.sh)
// then passed, as a node that holds the role passed whatever its Redis
// was, so the node stayed active without taking writes. Now promote.sh and
// the follower step take one lock, and check.sh fails an active whose
// Redis replicates.
func TestRedisFollowerYieldsToPromotion(t *testing.T) {
	t.Parallel()
	r := newRecipe(t, "redis")
	n1, n2 := r.addr("127.0.0.1:6381"), r.addr("127.0.0.1:6382") // n2's Redis is dead: nothing listens there
	agent := &fakeAgent{leader: "n2", role: "standby"}
	srv := httptest.NewServer(agent)
	defer srv.Close()
	env := append(os.Environ(), "HAVEN_NODE=n1", "HAVEN_CLUSTER=redis", "HAVEN_API="+strings.TrimPrefix(srv.URL, "http://"),
		"REDIS_DIR="+filepath.Join(r.dir, "n1"), "HAVEN_TLS_CA=", "HAVEN_TLS_CERT=", "HAVEN_TLS_KEY=")
	script := func(name string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", filepath.Join(r.dir, name))
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}

	var out strings.Builder
	var outMu sync.Mutex
	svc := script("redis-node.sh")
	svc.Stdout = writerFunc(func(p []byte) {
		outMu.Lock()
		out.Write(p)
		outMu.Unlock()
	})
	svc.Stderr = svc.Stdout
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-svc.Process.Pid, syscall.SIGKILL)
		_ = svc.Wait()
		outMu.Lock()
		t.Logf("redis-node.sh's output:\n%s", tail(out.String(), 4000))
		outMu.Unlock()
	})
	n2Port := n2[strings.LastIndex(n2, ":")+1:]
	waitFor(t, 20*time.Second, "n1's Redis, a replica of n2's", func() bool {
		m := masterPort.FindStringSubmatch(redisInfo(n1))
		return m != nil && m[1] == n2Port
	})

	// A follower step asks for the leader and gets n2 (the key has not
	// expired yet); meanwhile n1 wins and its on_promote runs.
	held, release := make(chan struct{}), make(chan struct{})
	agent.mu.Lock()
	agent.hold, agent.release = held, release
	agent.mu.Unlock()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the follower loop did not ask for the leader within 20 s")
	}
	agent.set("n1", "promoting")
	promote := script("promote.sh")
	var promoteOut strings.Builder
	promote.Stdout, promote.Stderr = &promoteOut, &promoteOut
	if err := promote.Start(); err != nil {
		t.Fatal(err)
	}
	promoted := make(chan error, 1)
	go func() { promoted <- promote.Wait() }()
	// promote.sh either finishes (nothing orders it after the follower
	// step) or waits for the step's lock: let the step go on then.
	var perr error
	done := false
	waitFor(t, 20*time.Second, "promote.sh to finish or to wait for the role lock", func() bool {
		select {
		case perr = <-promoted:
			done = true
			return true
		default:
		}
		for _, pid := range harness.Descendants(promote.Process.Pid) {
			if comm(pid) == "flock" {
				return true
			}
		}
		return false
	})
	close(release)
	if !done {
		select {
		case perr = <-promoted:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-promote.Process.Pid, syscall.SIGKILL)
			t.Fatal("promote.sh did not finish within 20 s of the follower step")
		}
	}
	if perr != nil {
		t.Fatalf("promote.sh: %v\n%s", perr, promoteOut.String())
	}
	agent.set("n1", "active")
	// Two more follower steps, then n1's Redis must be the master.
	after := agent.answered()
	waitFor(t, 20*time.Second, "two more follower steps", func() bool { return agent.answered() >= after+2 })
	if info := redisInfo(n1); !strings.Contains(info, "role:master\n") {
		t.Errorf("n1 is active and promote.sh succeeded, but its Redis replicates:\n%s", info)
	}

	// Whatever made it a replica, the active's check must fail.
	check := func() (int, string) {
		cmd := script("check.sh")
		b, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(b)
	}
	if code, o := check(); code != 0 {
		t.Errorf("check.sh on the active whose Redis is the master: exit %d: %s", code, o)
	}
	c, err := dialRESP(n1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rep, err := c.do("REPLICAOF", "127.0.0.1", n2Port); err != nil || !strings.HasPrefix(fmt.Sprint(rep), "OK") {
		t.Fatalf("REPLICAOF: %v %v", rep, err)
	}
	if code, o := check(); code == 0 || !strings.Contains(o, "replica") {
		t.Errorf("check.sh on the active whose Redis replicates: exit %d (%q), want a failure that says so", code, o)
	}
	agent.set("n1", "promoting")
	if code, o := check(); code != 0 {
		t.Errorf("check.sh on a node still promoting (on_promote has not run): exit %d: %s", code, o)
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestRedisRestartWaitsForTheAgentsView: the agent starts its service
// before it has seen the store, and its /status shows no leader until
// then. redis-node.sh started redis-server as a master on that "no
// leader" (seen under load: the restarted node came back as an empty
// master, won the next election and the other node resynced from it,
// losing every write). It must wait until the agent says it knows who
// leads (leader_known), then start as a replica of the active.
func TestRedisRestartWaitsForTheAgentsView(t *testing.T) {
	t.Parallel()
	r := newRecipe(t, "redis")
	n1, n2 := r.addr("127.0.0.1:6381"), r.addr("127.0.0.1:6382")
	agent := &fakeAgent{leader: "", role: "starting"}
	srv := httptest.NewServer(agent)
	defer srv.Close()
	svc := exec.Command("/bin/sh", filepath.Join(r.dir, "redis-node.sh"))
	svc.Env = append(os.Environ(), "HAVEN_NODE=n1", "HAVEN_CLUSTER=redis", "HAVEN_API="+strings.TrimPrefix(srv.URL, "http://"),
		"REDIS_DIR="+filepath.Join(r.dir, "n1"), "HAVEN_TLS_CA=", "HAVEN_TLS_CERT=", "HAVEN_TLS_KEY=")
	svc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-svc.Process.Pid, syscall.SIGKILL)
		_ = svc.Wait()
	})
	waitFor(t, 20*time.Second, "redis-node.sh to ask the starting agent who leads three times (or start Redis)", func() bool {
		agent.mu.Lock()
		asks := agent.asks
		agent.mu.Unlock()
		return asks >= 3 || redisInfo(n1) != ""
	})
	if info := redisInfo(n1); info != "" {
		t.Fatalf("redis-server runs although the agent has not seen the store yet:\n%s", info)
	}
	// Connected, but /status does not answer (a loaded agent): still no
	// guess.
	agent.mu.Lock()
	agent.role, agent.down, agent.asks = "standby", true, 0
	agent.mu.Unlock()
	waitFor(t, 20*time.Second, "redis-node.sh to ask again while /status fails (or start Redis)", func() bool {
		agent.mu.Lock()
		asks := agent.asks
		agent.mu.Unlock()
		return asks >= 3 || redisInfo(n1) != ""
	})
	if info := redisInfo(n1); info != "" {
		t.Fatalf("redis-server runs although the agent did not say who leads:\n%s", info)
	}
	agent.mu.Lock()
	agent.down = false
	agent.mu.Unlock()
	agent.set("n2", "standby")
	n2Port := n2[strings.LastIndex(n2, ":")+1:]
	waitFor(t, 20*time.Second, "n1's Redis, started as a replica of n2's", func() bool {
		m := masterPort.FindStringSubmatch(redisInfo(n1))
		return m != nil && m[1] == n2Port
	})
}
