package recipes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/syncbuf"
	"github.com/haven-ha/haven/internal/testbin"
)

var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

// startTimeout bounds cluster formation on a loaded 2-core machine.
const startTimeout = 60 * time.Second

// recipe is one example folder copied to a temporary directory with its
// paths and ports rewritten, and the haven processes started from it.
type recipe struct {
	t      *testing.T
	dir    string
	config string
	ports  map[string]string // original 127.0.0.1:port -> the free one used
	token  string
	http   *http.Client // the operator's, over the cluster's TLS

	mu    sync.Mutex
	procs map[string]*proc // node name or "proxy"
}

type proc struct {
	*harness.Proc
	log *syncbuf.Buffer
}

var loopbackAddr = regexp.MustCompile(`127\.0\.0\.1:(\d{2,5})`)

// newRecipe copies examples/<name> to a temporary directory, replaces its
// base path /srv/haven-<name> with that directory and every loopback
// address with a free port, writes the operator token and returns it. The
// haven processes it starts are stopped when the test ends.
func newRecipe(t *testing.T, name string) *recipe {
	t.Helper()
	src := filepath.Join("..", "..", "examples", name)
	dir := t.TempDir()
	r := &recipe{t: t, dir: dir, ports: map[string]string{}, procs: map[string]*proc{}}
	base := "/srv/haven-" + name
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(b), base, dir)
		text = loopbackAddr.ReplaceAllStringFunc(text, r.port)
		info, _ := d.Info()
		return os.WriteFile(dst, []byte(text), info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	// Services that run as another user (PostgreSQL) must reach their
	// folders under the test's.
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	r.config = filepath.Join(dir, "haven.yaml")
	r.token = fmt.Sprintf("recipe-token-%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(r.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The example runs with TLS, as its README sets it up: the cluster CA
	// and every node's certificate, from `haven certs init`'s code.
	cfg, err := config.Load(r.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.InitFor(filepath.Dir(cfg.TLS.CAFile), cfg); err != nil {
		t.Fatal(err)
	}
	tc, err := certs.ClientTLS(certs.Files(cfg.TLS.For(certs.Operator)))
	if err != nil {
		t.Fatal(err)
	}
	r.http = &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	t.Cleanup(r.stopAll)
	return r
}

// port maps one loopback address of the example to a free one (package
// ports: outside the kernel's ephemeral range, claimed for this process).
func (r *recipe) port(addr string) string {
	if p, ok := r.ports[addr]; ok {
		return p
	}
	ps, err := ports.Free(1)
	if err != nil {
		r.t.Fatal(err)
	}
	p := fmt.Sprintf("127.0.0.1:%d", ps[0])
	r.ports[addr] = p
	return p
}

// addr is where the example's address ends up.
func (r *recipe) addr(example string) string {
	p, ok := r.ports[example]
	if !ok {
		r.t.Fatalf("%s is not in the example", example)
	}
	return p
}

// start starts haven with args as the process called name.
func (r *recipe) start(name string, args ...string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &proc{log: &syncbuf.Buffer{}}
	if old := r.procs[name]; old != nil {
		p.log = old.log
	}
	var err error
	if p.Proc, err = harness.Start("", p.log, havenBin, args...); err != nil {
		r.t.Fatalf("start %s: %v", name, err)
	}
	r.procs[name] = p
}

func (r *recipe) startAgent(node string) {
	r.start(node, "agent", "--config", r.config, "--node", node)
}

func (r *recipe) startWitness(node string) {
	r.start(node, "witness", "--config", r.config, "--node", node)
}

func (r *recipe) startProxy() { r.start("proxy", "proxy", "--config", r.config) }

func (r *recipe) proc(name string) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[name]
	if p == nil {
		r.t.Fatalf("no process %s", name)
	}
	return p
}

// killAgent kills node's agent with SIGKILL and waits until it is reaped.
func (r *recipe) killAgent(node string) {
	r.t.Helper()
	p := r.proc(node)
	_ = p.Signal(syscall.SIGKILL)
	if !p.Wait(10 * time.Second) {
		r.t.Fatalf("agent %s did not exit after SIGKILL", node)
	}
}

func (r *recipe) stopAll() {
	r.mu.Lock()
	procs := r.procs
	r.mu.Unlock()
	var ps []*harness.Proc
	for _, p := range procs {
		ps = append(ps, p.Proc)
	}
	late := harness.Stop(15*time.Second, ps...)
	for name, p := range procs {
		if slices.Contains(late, p.Proc) {
			r.t.Errorf("%s did not stop within 15s of SIGTERM", name)
			testbin.Stuck(r.t, name, p.log.String())
		}
	}
	if r.t.Failed() {
		for name, p := range procs {
			r.t.Logf("---- log of %s ----\n%s", name, tail(p.log.String(), 8000))
			testbin.KeepLog(r.t, name, p.log.String())
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// status asks the agents in turn for the cluster's status.
func (r *recipe) status(apis ...string) (api.Status, bool) {
	for _, a := range apis {
		resp, err := r.http.Get("https://" + r.addr(a) + "/status")
		if err != nil {
			continue
		}
		var st api.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return st, true
		}
	}
	return api.Status{}, false
}

func nodeView(st api.Status, name string) (api.NodeView, bool) {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return api.NodeView{}, false
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !harness.Until(d, cond) {
		t.Fatalf("%s: not within %s", what, d)
	}
}

// waitActive waits until an active other than the nodes in not is healthy
// and every node in standbys is a healthy standby; it returns the active.
func (r *recipe) waitActive(apis []string, d time.Duration, not string, standbys ...string) (string, ha.Epoch) {
	r.t.Helper()
	var active string
	var epoch ha.Epoch
	waitFor(r.t, d, "an active other than "+not+" and healthy standbys "+strings.Join(standbys, ","), func() bool {
		st, ok := r.status(apis...)
		if !ok || st.Leader.None() || st.Leader.Node == not {
			return false
		}
		v, ok := nodeView(st, st.Leader.Node)
		if !ok || v.Role != ha.RoleActive || !v.Healthy {
			return false
		}
		for _, s := range standbys {
			if s == st.Leader.Node {
				continue
			}
			sv, ok := nodeView(st, s)
			if !ok || sv.Role != ha.RoleStandby || !sv.Healthy {
				return false
			}
		}
		active, epoch = st.Leader.Node, st.Leader.Epoch
		return true
	})
	return active, epoch
}

// runHaven runs the haven binary and returns its exit code and output.
func runHaven(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, havenBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatalf("run haven %v: %v", args, err)
	}
	return 0, out.String()
}

// alive reports whether pid runs; a zombie counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// checkNoOrphans waits until none of pids runs any more and fails with
// what is left.
func checkNoOrphans(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, p := range pids {
			if alive(p) {
				left = append(left, fmt.Sprintf("%d (%s)", p, comm(p)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphans of the killed agent still run: %s", strings.Join(left, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is one fault's outcome, for the report.
type result struct {
	fault    string
	from, to string
	failover time.Duration // from the fault to the first answer of the new active
	requests int
	errors   int
	lost     string // data lost, as the client measured it
}

func report(t *testing.T, name string, rs []result) {
	var b strings.Builder
	fmt.Fprintf(&b, "recipe %s:\n%-34s %-8s %10s %9s %7s  %s\n", name, "fault", "move", "failover", "requests", "errors", "data lost")
	for _, r := range rs {
		fmt.Fprintf(&b, "%-34s %-8s %10s %9d %7d  %s\n", r.fault, r.from+"->"+r.to, r.failover.Round(time.Millisecond), r.requests, r.errors, r.lost)
	}
	t.Log(b.String())
}

// waitPortFree waits until addr can be listened on again: nothing of a
// killed node's service still holds it.
func waitPortFree(t *testing.T, what, addr string) {
	t.Helper()
	waitFor(t, 10*time.Second, what+" free", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
		}
		return err == nil
	})
}

// switchover runs `haven switchover --to to` and fails the test if it fails.
func (r *recipe) switchover(to string) {
	r.t.Helper()
	if code, out := runHaven(r.t, "switchover", "--config", r.config, "--to", to); code != 0 {
		r.t.Fatalf("switchover: exit %d\n%s", code, out)
	}
}

// other is the other node of a two-node recipe.
func other(n string) string {
	if n == "n1" {
		return "n2"
	}
	return "n1"
}

// threeFaults puts a two-node recipe through the faults every recipe is
// measured under, in order: kill -9 of the active's service, kill -9 of the
// active's agent (whose service must not outlive it; its agent is started
// again) and a switchover. role names the active ("active", "primary") and
// svc the service, in the fault's name; svcAddr is each node's service
// address, which must be free once its agent is killed. inspect, if not nil,
// looks at the agent's process tree before the kill. measure waits for the
// failover after the fault at t0, runs then (the restart of what the fault
// killed, or nil) and records the result.
func (r *recipe) threeFaults(apis []string, role, svc string, svcAddr map[string]string, inspect func(tree []int),
	measure func(fault, from string, t0 time.Time, then func())) {
	t := r.t
	t.Helper()
	active, _ := r.waitActive(apis, startTimeout, "", "n1", "n2")
	st, _ := r.status(apis...)
	v, _ := nodeView(st, active)
	t0 := time.Now()
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	measure(fmt.Sprintf("kill -9 of the %s's %s", role, svc), active, t0, nil)

	active, _ = r.waitActive(apis, startTimeout, "", "n1", "n2")
	tree := harness.Descendants(r.proc(active).Pid())
	if inspect != nil {
		inspect(tree)
	}
	t0 = time.Now()
	r.killAgent(active)
	checkNoOrphans(t, tree)
	waitPortFree(t, "the killed node's "+svc+" port", svcAddr[active])
	killed := active
	measure(fmt.Sprintf("kill -9 of the %s's agent", role), active, t0, func() { r.startAgent(killed) })

	active, _ = r.waitActive(apis, startTimeout, "", "n1", "n2")
	t0 = time.Now()
	r.switchover(other(active))
	measure("switchover", active, t0, nil)
}

// startCluster checks the recipe's config (which must pass without a
// warning), starts its witness (if any), its two nodes and its proxy, and
// waits up to d for an active.
func (r *recipe) startCluster(apis []string, d time.Duration, witness string) string {
	r.t.Helper()
	if code, out := runHaven(r.t, "config", "check", r.config); code != 0 || strings.Contains(out, "warning") {
		r.t.Fatalf("config check of the recipe: exit %d\n%s", code, out)
	}
	if witness != "" {
		r.startWitness(witness)
	}
	r.startAgent("n1")
	r.startAgent("n2")
	r.startProxy()
	active, _ := r.waitActive(apis, d, "", "n1", "n2")
	return active
}
