// Package e2e holds haven's end-to-end tests: they build the real haven
// binary, start real agent processes with embedded etcd members and sample
// services on loopback, inject faults with signals, and watch what clients
// and load balancers would see.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
	netports "github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/sample"
	"github.com/haven-ha/haven/internal/syncbuf"
	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

// freePorts returns n distinct free loopback ports (internal/ports: outside
// the kernel's ephemeral range, so parallel tests cannot take them).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	p, err := netports.Free(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Node is one configured node of a test cluster.
type Node struct {
	Name, API, Service string
	Witness            bool
	NS                 string // network namespace the agent runs in, if any
	proc               *harness.Proc
	log                *syncbuf.Buffer
	done               <-chan struct{} // closed when the agent last started has exited
}

// Cluster is a set of real haven agents on loopback.
type Cluster struct {
	t      testing.TB
	Dir    string
	Config string
	Nodes  []*Node
	mu     sync.Mutex
	// API calls the agents over mutual TLS with the operator's certificate
	// and the test token; HTTP is a plain client with the same TLS, for
	// requests a test builds by hand (https:// URLs).
	API  *api.Client
	HTTP *http.Client
}

// tlsSection is the tls: line of a test config whose certificates
// makeCerts writes to dir/certs.
func tlsSection(dir string) string {
	d := filepath.Join(dir, "certs")
	return fmt.Sprintf("tls: {ca_file: %q, cert_file: %q, key_file: %q}\n", filepath.Join(d, "ca.crt"), filepath.Join(d, "${NODE}.crt"), filepath.Join(d, "${NODE}.key"))
}

// makeCerts makes the CA and the certificates of the config at path (with
// certs.InitFor, as `haven certs init` does) and returns clients that use
// the operator's.
func makeCerts(t testing.TB, path string) (*api.Client, *http.Client) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.InitFor(filepath.Dir(cfg.TLS.CAFile), cfg); err != nil {
		t.Fatal(err)
	}
	return operatorClients(t, cfg.TLS.For(certs.Operator))
}

// operatorClients are an API client (test token, short timeout) and a
// plain HTTP client using f.
func operatorClients(t testing.TB, f config.TLSFiles) (*api.Client, *http.Client) {
	t.Helper()
	tc, err := certs.ClientTLS(certs.Files(f))
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(api.ClientOptions{Token: testToken, Who: "e2e test", Timeout: 500 * time.Millisecond, TLS: tc}),
		&http.Client{Transport: api.NewTransport(tc), Timeout: 10 * time.Second}
}

// testTimings are the lan preset loosened for a loaded 2-core CI machine,
// as the drill's "ci" sandbox has them: the tests check behaviour, not
// speed (speed lives in bench/).
const testTimings = harness.CITimings

// e2eTimings are testTimings, or the preset named by HAVEN_E2E_TIMING
// (e.g. lan-fast, to run the overlap tests with it by hand).
func e2eTimings() string {
	if p := os.Getenv("HAVEN_E2E_TIMING"); p != "" {
		return "timing: " + p
	}
	return testTimings
}

// testToken is the API token of every test cluster.
const testToken = "e2e-token-0123456789abcdef"

// clusterOpts tweaks the generated config.
type clusterOpts struct {
	nodes   int
	extra   string   // appended YAML (service, checks, hooks...)
	timings string   // "lan" for the preset; else replaces the timing lines
	witness string   // name of a node that is a witness
	start   []string // nodes to start at first (default: all)

	mode       string            // cluster mode (default active-passive)
	backups    []string          // nodes with backup: true
	preempt    string            // preemption delay; empty: off
	priorities map[string]int    // node priorities (default 100)
	sites      map[string]string // node sites (default none)
	top        string            // extra top-level YAML
	insecure   bool              // insecure: true instead of TLS (the benchmarks' TLS-off side)
}

// newCluster writes a config for a cluster of o.nodes nodes running the
// sample service and starts every agent. It stops them at test end.
func newCluster(t testing.TB, o clusterOpts) *Cluster {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	dir := t.TempDir()
	c := &Cluster{t: t, Dir: dir, Config: filepath.Join(dir, "haven.yaml")}
	addrs, _, err := harness.Loopback(o.nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: e2e\ndata_dir: %s\n", filepath.Join(dir, "data"))
	if o.mode != "" {
		fmt.Fprintf(&b, "mode: %s\n", o.mode)
	}
	if o.preempt != "" {
		fmt.Fprintf(&b, "preempt: {enabled: true, delay: %s}\n", o.preempt)
	}
	if o.top != "" {
		b.WriteString(o.top + "\n")
	}
	if o.timings == "lan" {
		b.WriteString("timing: lan\n")
	} else if o.timings != "" {
		b.WriteString(o.timings + "\n")
	} else {
		b.WriteString(e2eTimings() + "\n")
	}
	sec := tlsSection(dir)
	if o.insecure {
		sec = "insecure: true\n"
	}
	b.WriteString("api: {token: " + testToken + "}\nlog: {level: debug}\n" + sec + "nodes:\n")
	for i := range o.nodes {
		a := addrs[i]
		n := &Node{Name: fmt.Sprintf("n%d", i+1), API: a.API, Service: a.Service}
		if n.Name == o.witness {
			n.Witness, n.API, n.Service = true, "", ""
			fmt.Fprintf(&b, "  - name: %s\n    witness: true\n    peer: %s\n    client: %s\n",
				n.Name, a.Peer, a.Client)
		} else {
			fmt.Fprintf(&b, "  - name: %s\n    api: %s\n    peer: %s\n    client: %s\n    env: {SERVICE_ADDR: %q}\n",
				n.Name, n.API, a.Peer, a.Client, n.Service)
			fmt.Fprintf(&b, "    backend: %s\n", n.Service) // for haven proxy
			if slices.Contains(o.backups, n.Name) {
				b.WriteString("    backup: true\n")
			}
			if p, ok := o.priorities[n.Name]; ok {
				fmt.Fprintf(&b, "    priority: %d\n", p)
			}
			if s, ok := o.sites[n.Name]; ok {
				fmt.Fprintf(&b, "    site: %q\n", s)
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	if o.extra != "" {
		b.WriteString(o.extra)
	} else {
		fmt.Fprintf(&b, `service:
  command: [%q, "sample-service"]
  stop_grace: 2s
  restart: always
  restart_delay: 100ms
checks:
  - name: sample
    http: {url: "http://${SERVICE_ADDR}/healthz"}
    interval: 100ms
    timeout: 100ms
    rise: 1
    fall: 3
`, havenBin)
	}
	if err := os.WriteFile(c.Config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.insecure {
		c.API = api.NewClient(api.ClientOptions{Token: testToken, Who: "e2e test", Timeout: 500 * time.Millisecond})
		c.HTTP = &http.Client{Transport: api.NewTransport(nil), Timeout: 10 * time.Second}
	} else {
		c.API, c.HTTP = makeCerts(t, c.Config)
	}
	t.Cleanup(c.stopAll)
	for _, n := range c.Nodes {
		if o.start == nil || slices.Contains(o.start, n.Name) {
			c.Start(n.Name)
		}
	}
	return c
}

// Node returns the node called name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// Start starts (or restarts) the agent of node name.
func (c *Cluster) Start(name string) {
	c.t.Helper()
	n := c.Node(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.log == nil {
		n.log = &syncbuf.Buffer{}
	}
	sub := "agent"
	if n.Witness {
		sub = "witness"
	}
	p, err := harness.Start(n.NS, n.log, havenBin, sub, "--config", c.Config, "--node", name)
	if err != nil {
		c.t.Fatalf("start agent %s: %v", name, err)
	}
	n.proc, n.done = p, p.Done()
}

// Signal sends sig to the agent process of node name.
func (c *Cluster) Signal(name string, sig syscall.Signal) {
	c.t.Helper()
	n := c.Node(name)
	if err := n.proc.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, name, err)
	}
}

// KillService kills the service process of node name with SIGKILL (a
// crash), as that node's agent reports its pid.
func (c *Cluster) KillService(name string) {
	c.t.Helper()
	v, ok := c.NodeView(name, name)
	if !ok || v.ServicePID == 0 {
		c.t.Fatalf("status of %s has no service pid: %+v", name, v)
	}
	if err := syscall.Kill(v.ServicePID, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill the service of %s: %v", name, err)
	}
}

// KillAgent kills node name's agent with SIGKILL and waits for it to exit.
func (c *Cluster) KillAgent(name string) {
	c.t.Helper()
	c.Signal(name, syscall.SIGKILL)
	if !c.Node(name).proc.Wait(10 * time.Second) {
		c.t.Fatalf("agent %s did not exit after SIGKILL", name)
	}
}

func (c *Cluster) stopAll() {
	var ps []*harness.Proc
	for _, n := range c.Nodes {
		ps = append(ps, n.proc)
	}
	late := harness.Stop(15*time.Second, ps...)
	for _, n := range c.Nodes {
		if slices.Contains(late, n.proc) {
			c.t.Errorf("agent %s did not stop within 15s of SIGTERM", n.Name)
			if n.log != nil {
				testbin.Stuck(c.t, n.Name, n.log.String())
			}
		}
	}
	if c.t.Failed() {
		for _, n := range c.Nodes {
			if n.log != nil {
				c.t.Logf("---- log of %s ----\n%s", n.Name, tail(n.log.String(), 12000))
			}
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

var httpc = &http.Client{Timeout: 500 * time.Millisecond}

// Status asks node name for the cluster status.
func (c *Cluster) Status(name string) (api.Status, error) {
	return c.API.Status(context.Background(), c.Node(name).API)
}

// URL is the base URL of node name's agent API.
func (c *Cluster) URL(name string) string { return c.API.BaseURL(c.Node(name).API) }

// LBCheck returns node name's /lb-check status code (0 on error).
func (c *Cluster) LBCheck(name string) int {
	ok, err := c.API.LBCheck(context.Background(), c.Node(name).API)
	var ce *api.CallError
	switch {
	case ok:
		return http.StatusOK
	case err == nil:
		return http.StatusServiceUnavailable
	case errors.As(err, &ce):
		return ce.Status
	}
	return 0
}

// ServiceReply asks node name's sample service who it is.
func (c *Cluster) ServiceReply(name string) (int, sample.Reply) {
	var r sample.Reply
	resp, err := httpc.Get("http://" + c.Node(name).Service + "/")
	if err != nil {
		return 0, r
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

// WaitActive waits until exactly one node other than the excluded ones
// answers 200 on /lb-check and its service answers as active; it returns
// that node and its epoch.
func (c *Cluster) WaitActive(d time.Duration, exclude ...string) (string, ha.Epoch) {
	c.t.Helper()
	var name string
	var epoch ha.Epoch
	e2etest.WaitFor(c.t, d, "an active node", func() bool {
		var found []string
		for _, n := range c.Nodes {
			if n.Witness || slices.Contains(exclude, n.Name) {
				continue
			}
			if c.LBCheck(n.Name) == http.StatusOK {
				found = append(found, n.Name)
			}
		}
		if len(found) != 1 {
			return false
		}
		code, r := c.ServiceReply(found[0])
		if code != http.StatusOK || r.Role != ha.RoleActive {
			return false
		}
		name, epoch = found[0], r.Epoch
		return true
	})
	return name, epoch
}

// NodeView returns node name's entry in the status reported by from.
func (c *Cluster) NodeView(from, name string) (api.NodeView, bool) {
	st, err := c.Status(from)
	if err != nil {
		return api.NodeView{}, false
	}
	for _, n := range st.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return api.NodeView{}, false
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// runHaven runs the binary with args and returns its exit code and output.
func runHaven(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, havenBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run haven %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
