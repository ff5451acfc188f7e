package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/sample"
	"github.com/haven-ha/haven/internal/store/etcdstore"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// Fault tests against real external stores: real agents (two nodes, which a
// shared store allows) on a throwaway PostgreSQL, MariaDB or etcd server.
// Every agent reaches the store through its own storetest.Forwarder, so one
// agent can be cut off alone.

// storeTimings: a longer lease than the other tests, so that a store
// restart fits in it with room to spare on a loaded 2-core machine.
const storeTimings = `timing: lan
timings: {lease_ttl: 3s, renew_interval: 200ms, renew_timeout: 300ms, fence_margin: 500ms, etcd_heartbeat: 100ms, etcd_election: 1000ms}`

const storeLease = 3 * time.Second

type storeCluster struct {
	*Cluster
	srv *storetest.Server
	fw  map[string]*storetest.Forwarder // node -> its route to the store
}

// newStoreCluster starts a server of kind (postgres, mariadb, etcd) and n
// agents using it.
func newStoreCluster(t testing.TB, kind string, n int, timings string) *storeCluster {
	t.Helper()
	var srv *storetest.Server
	var section string
	switch kind {
	case "postgres":
		srv = storetest.StartPostgres(t)
		section = `store: {backend: postgres, dsn: "postgres://haven@${DB_ADDR}/postgres?sslmode=disable&connect_timeout=2"}`
	case "mariadb":
		srv = storetest.StartMariaDB(t)
		section = `store: {backend: mysql, dsn: "haven:haven@tcp(${DB_ADDR})/haven"}`
	case "etcd":
		srv = storetest.StartEtcd(t)
		section = `store: {backend: etcd, endpoints: ["${DB_ADDR}"]}`
	default:
		t.Fatalf("unknown store %s", kind)
	}
	c := newCluster(t, clusterOpts{nodes: n, timings: timings + "\n" + section, start: []string{}})
	sc := &storeCluster{Cluster: c, srv: srv, fw: map[string]*storetest.Forwarder{}}
	cfg, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfg)
	for _, node := range c.Nodes {
		fw := storetest.Forward(t, srv.Addr)
		sc.fw[node.Name] = fw
		old := fmt.Sprintf("env: {SERVICE_ADDR: %q}", node.Service)
		if !strings.Contains(text, old) {
			t.Fatalf("the harness config changed shape; no %q in:\n%s", old, text)
		}
		text = strings.Replace(text, old, fmt.Sprintf("env: {SERVICE_ADDR: %q, DB_ADDR: %q}", node.Service, fw.Addr), 1)
	}
	// The sample service writes its data through the agent's fenced routes.
	text = strings.Replace(text, "service:\n", "service:\n  env: {HAVEN_API_TOKEN: "+testToken+"}\n", 1)
	if err := os.WriteFile(c.Config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, node := range c.Nodes {
		c.Start(node.Name)
	}
	return sc
}

// servers reports whether any node other than except answers 200 on /lb-check.
func (c *storeCluster) servers(except string) []string {
	var out []string
	for _, n := range c.Nodes {
		if n.Name != except && c.LBCheck(n.Name) == http.StatusOK {
			out = append(out, n.Name)
		}
	}
	return out
}

func TestStoreFaults(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"postgres", "mariadb", "etcd"} {
		t.Run(kind, func(t *testing.T) {
			c := newStoreCluster(t, kind, 2, storeTimings)
			active, epoch := c.WaitActive(startTimeout)

			// 1. A restart shorter than the lease: no failover.
			took := c.srv.Restart()
			t.Logf("%s restart took %s", kind, took.Round(time.Millisecond))
			if took > storeLease-time.Second {
				t.Logf("the restart took longer than intended (%s); the no-failover check may not hold", took)
			}
			deadline := time.Now().Add(storeLease + time.Second)
			for time.Now().Before(deadline) {
				if others := c.servers(active); len(others) > 0 {
					t.Fatalf("%v answered 200 on /lb-check after a short %s restart; %s was active", others, kind, active)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if now, e := c.WaitActive(10 * time.Second); now != active || e != epoch {
				t.Fatalf("a short %s restart moved the active role: %s@%d, want %s@%d", kind, now, e, active, epoch)
			}

			// 2. An outage longer than the lease: the active demotes, nobody
			// promotes, and the cluster recovers on its own.
			c.srv.Stop()
			down := time.Now()
			e2etest.WaitFor(t, storeLease+2*time.Second, active+" to stop serving during the outage", func() bool {
				// Its own answer that it is not active: a check that timed
				// out on a loaded machine says nothing, and the active may
				// serve until its lease runs out.
				return c.LBCheck(active) == http.StatusServiceUnavailable
			})
			t.Logf("active stopped serving %s into the outage", time.Since(down).Round(time.Millisecond))
			for time.Since(down) < storeLease+time.Second {
				if s := c.servers(""); len(s) > 0 {
					t.Fatalf("%v serve while the store is down", s)
				}
				time.Sleep(50 * time.Millisecond)
			}
			c.srv.Start()
			up := time.Now()
			next, nextEpoch := c.WaitActive(30 * time.Second)
			t.Logf("after a %s outage: %s active at epoch %d (was %s@%d), %s after the store came back", up.Sub(down).Round(time.Millisecond), next, nextEpoch, active, epoch, time.Since(up).Round(time.Millisecond))
			if nextEpoch <= epoch {
				t.Fatalf("epoch %d after the outage, not greater than %d", nextEpoch, epoch)
			}

			// 3. The active alone cut off from the store: it loses the role
			// and the other node takes it.
			active, epoch = next, nextEpoch
			c.fw[active].Cut()
			cut := time.Now()
			other, otherEpoch := c.WaitActive(storeLease+15*time.Second, active)
			t.Logf("%s cut off: %s active after %s (epoch %d -> %d)", active, other, time.Since(cut).Round(time.Millisecond), epoch, otherEpoch)
			if otherEpoch <= epoch {
				t.Fatalf("epoch %d not greater than %d", otherEpoch, epoch)
			}
			if c.LBCheck(active) == http.StatusOK {
				t.Fatalf("the cut-off %s still answers 200 on /lb-check", active)
			}
			c.fw[active].Heal()
			e2etest.WaitFor(t, 30*time.Second, active+" back as a standby", func() bool {
				v, ok := c.NodeView(other, active)
				return ok && v.Role == ha.RoleStandby
			})
			if now, e := c.WaitActive(5 * time.Second); now != other || e != otherEpoch {
				t.Fatalf("the heal moved the active role: %s@%d, want %s@%d", now, e, other, otherEpoch)
			}
		})
	}
}

// TestStoreOperations: on a shared SQL store, the operator commands
// (switchover, maintenance, events) and the sample service's fenced writes
// work as on etcd: real agents, real haven commands, a real database.
func TestStoreOperations(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"postgres", "mariadb"} {
		t.Run(kind, func(t *testing.T) {
			c := newStoreCluster(t, kind, 2, storeTimings)
			active, epoch := c.WaitActive(startTimeout)
			c.waitHealthy(30 * time.Second)
			other := c.Nodes[0].Name
			if other == active {
				other = c.Nodes[1].Name
			}

			// A fenced write on the active commits once; its retry is
			// answered as the same write; the standby writes nothing.
			code, w1 := sampleKV(t, c.Node(active), http.MethodPost, "k=x&v=one&id=w1")
			if code != http.StatusOK || w1.Epoch != epoch || w1.Rev <= 0 {
				t.Fatalf("write on the active %s: HTTP %d %+v; want 200 at epoch %d", active, code, w1, epoch)
			}
			if code, again := sampleKV(t, c.Node(active), http.MethodPost, "k=x&v=two&id=w1"); code != http.StatusOK || again.Rev != w1.Rev {
				t.Fatalf("retry of w1: HTTP %d rev %d; want 200 with the first write's rev %d", code, again.Rev, w1.Rev)
			}
			if code, r := sampleKV(t, c.Node(other), http.MethodPost, "k=x&v=standby"); code != http.StatusServiceUnavailable {
				t.Fatalf("write on the standby %s: HTTP %d %+v; want 503", other, code, r)
			}

			// Switchover, with the command's report.
			code, out, errOut := runHaven(t, "switchover", "--config", c.Config, "--to", other, "--reason", "sql-ops")
			if code != 0 {
				t.Fatalf("switchover on %s: exit %d: %s", kind, code, errOut)
			}
			t.Log(strings.TrimSpace(out))
			if !strings.Contains(out, "from "+active+" to "+other) {
				t.Fatalf("switchover output: %s", out)
			}
			now, nowEpoch := c.WaitActive(5 * time.Second)
			if now != other || nowEpoch <= epoch {
				t.Fatalf("after switchover: %s@%d, want %s above epoch %d", now, nowEpoch, other, epoch)
			}
			// The data moved with the role; the old active's writes are refused.
			if code, r := sampleKV(t, c.Node(other), http.MethodGet, "k=x"); code != http.StatusOK || r.Value != "one" {
				t.Fatalf("read on the new active: HTTP %d %+v; want \"one\" (the retry must not have applied)", code, r)
			}
			if code, r := sampleKV(t, c.Node(active), http.MethodPost, "k=x&v=stale"); code != http.StatusServiceUnavailable {
				t.Fatalf("write on the old active: HTTP %d %+v; want 503", code, r)
			}
			if code, r := sampleKV(t, c.Node(other), http.MethodPost, "k=x&v=three"); code != http.StatusOK || r.Epoch != nowEpoch || r.Rev <= w1.Rev {
				t.Fatalf("write on the new active: HTTP %d %+v; want 200 at epoch %d above rev %d", code, r, nowEpoch, w1.Rev)
			}
			e2etest.WaitFor(t, 10*time.Second, active+" back as a standby", func() bool { return c.role(active) == ha.RoleStandby })

			// Maintenance on and off.
			if code, _, errOut := runHaven(t, "maintenance", "--config", c.Config, "on", active); code != 0 {
				t.Fatalf("maintenance on: exit %d: %s", code, errOut)
			}
			e2etest.WaitFor(t, 10*time.Second, active+" shown in maintenance", func() bool {
				v, ok := c.NodeView(other, active)
				return ok && v.Role == ha.RoleMaintenance && !v.Eligible
			})
			if code, _, errOut := runHaven(t, "switchover", "--config", c.Config, "--to", active); code == 0 || !strings.Contains(errOut, "maintenance") {
				t.Fatalf("switchover to a node in maintenance: exit %d, %q; want a refusal naming maintenance", code, errOut)
			}
			if code, _, errOut := runHaven(t, "maintenance", "--config", c.Config, "off", active); code != 0 {
				t.Fatalf("maintenance off: exit %d: %s", code, errOut)
			}
			e2etest.WaitFor(t, 10*time.Second, active+" back to standby", func() bool { return c.role(active) == ha.RoleStandby })

			// The history has it all.
			e2etest.WaitFor(t, 10*time.Second, "switchover and maintenance in `haven events`", func() bool {
				code, out, _ := runHaven(t, "events", "--config", c.Config)
				return code == 0 && strings.Contains(out, active+" -> "+other) && strings.Contains(out, "maintenance")
			})
			if now, e := c.WaitActive(5 * time.Second); now != other || e != nowEpoch {
				t.Fatalf("maintenance of the standby moved the active role: %s@%d, want %s@%d", now, e, other, nowEpoch)
			}
		})
	}
}

// kvClient waits longer than httpc: a fenced write is a store transaction.
var kvClient = &http.Client{Timeout: 10 * time.Second}

// sampleKV calls node's sample service: POST /write?query or GET /read?query.
func sampleKV(t *testing.T, n *Node, method, query string) (int, sample.KVReply) {
	t.Helper()
	path := "/read?"
	if method == http.MethodPost {
		path = "/write?"
	}
	req, err := http.NewRequest(method, "http://"+n.Service+path+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := kvClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path+query, n.Name, err)
	}
	defer resp.Body.Close()
	var r sample.KVReply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

// TestStoreExportImport moves a cluster from its embedded etcd to
// PostgreSQL with `haven store export` / `haven store import`: the epochs
// on the new store continue above the old ones and the node records come
// along.
func TestStoreExportImport(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{nodes: 3})
	active, epoch := c.WaitActive(startTimeout)
	// What operators set comes along: a node in maintenance and an alias.
	standby := "n1"
	if active == standby {
		standby = "n2"
	}
	if code, _, errOut := runHaven(t, "maintenance", "--config", c.Config, "on", standby); code != 0 {
		t.Fatalf("maintenance on %s: exit %d: %s", standby, code, errOut)
	}
	parsed, err := config.Load(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, n := range parsed.Nodes {
		eps = append(eps, n.Client)
	}
	op := parsed.TLS.For("operator")
	es, err := etcdstore.DialOptions("e2e", etcdstore.Options{Endpoints: eps, DialTimeout: 5 * time.Second, CAFile: op.CA, CertFile: op.Cert, KeyFile: op.Key})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.SetProps(t.Context(), standby, ha.NodeProps{Alias: "rack 7"}); err != nil {
		t.Fatal(err)
	}
	_ = es.Close()
	code, dump, errOut := runHaven(t, "store", "export", "--config", c.Config)
	if code != 0 {
		t.Fatalf("store export: exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"format": "haven-store-dump"`, `"name": "n1"`, `"cluster": "e2e"`,
		`"alias": "rack 7"`, fmt.Sprintf("\"maintenance\": [\n    %q\n  ]", standby)} {
		if !strings.Contains(dump, want) {
			t.Fatalf("dump lacks %s:\n%s", want, tail(dump, 3000))
		}
	}
	c.stopAll()

	srv := storetest.StartPostgres(t)
	cfg, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	pgConfig := filepath.Join(c.Dir, "pg.yaml")
	text := strings.Replace(string(cfg), "nodes:\n", fmt.Sprintf("store: {backend: postgres, dsn: %q}\nnodes:\n", srv.DSN), 1)
	if err := os.WriteFile(pgConfig, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	dumpFile := filepath.Join(c.Dir, "dump.json")
	if err := os.WriteFile(dumpFile, []byte(dump), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runHaven(t, "store", "import", "--config", pgConfig, "--file", dumpFile)
	if code != 0 {
		t.Fatalf("store import: exit %d: %s", code, errOut)
	}
	t.Logf("import: %s", strings.TrimSpace(errOut))
	if !strings.Contains(errOut, "1 node properties, 1 in maintenance") || strings.Contains(errOut, "keeps no") {
		t.Fatalf("the alias and the maintenance flag of %s were not both imported into postgres: %s", standby, errOut)
	}
	if out, err := srv.Psql(`SELECT props->>'alias' FROM haven_props WHERE node = '` + standby + `'`); err != nil || out != "rack 7" {
		t.Fatalf("the alias in postgres: %q, %v; want \"rack 7\"", out, err)
	}
	if out, err := srv.Psql("SELECT count(*) FROM haven_nodes WHERE session_id IS NULL"); err != nil || out != "3" {
		t.Fatalf("node records kept as history: %q, %v; want 3", out, err)
	}
	events, err := srv.Psql("SELECT count(*) FROM haven_events")
	if err != nil || events == "0" || !strings.Contains(dump, `"events"`) {
		t.Fatalf("events imported: %q, %v; want the dump's history", events, err)
	}
	// A second import changes nothing that matters (idempotent): no
	// event is added twice.
	if code, _, errOut = runHaven(t, "store", "import", "--config", pgConfig, "--file", dumpFile); code != 0 {
		t.Fatalf("second import: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, " 0 events") {
		t.Fatalf("second import: %q, want 0 events added", errOut)
	}
	if again, err := srv.Psql("SELECT count(*) FROM haven_events"); err != nil || again != events {
		t.Fatalf("events after a second import: %s, %v; want %s", again, err, events)
	}

	moved := &Cluster{t: t, Dir: c.Dir, Config: pgConfig, API: c.API, HTTP: c.HTTP}
	for _, n := range c.Nodes {
		moved.Nodes = append(moved.Nodes, &Node{Name: n.Name, API: n.API, Service: n.Service})
	}
	t.Cleanup(moved.stopAll)
	for _, n := range moved.Nodes {
		moved.Start(n.Name)
	}
	_, newEpoch := moved.WaitActive(startTimeout)
	t.Logf("epoch on etcd %d, first on postgres %d", epoch, newEpoch)
	if newEpoch <= epoch {
		t.Fatalf("epoch %d on the new store is not greater than %d on the old one", newEpoch, epoch)
	}
	// And back: export from postgres carries the counter.
	code, dump2, errOut := runHaven(t, "store", "export", "--config", pgConfig)
	if code != 0 || !strings.Contains(dump2, fmt.Sprintf(`"epoch": %d`, newEpoch)) {
		t.Fatalf("export from postgres: exit %d, %s\n%s", code, errOut, tail(dump2, 2000))
	}
}

// Store benchmarks (bench/store.sh): with three agents and the lan preset
// on each backend, the failover time after kill -9 of the active's agent,
// and the load the idle cluster puts on its store.

func BenchmarkStoreFailover(b *testing.B) {
	for _, kind := range []string{"embedded", "etcd", "postgres", "mariadb"} {
		b.Run(kind, func(b *testing.B) {
			c := benchCluster(b, kind)
			var rtos []time.Duration
			for i := 0; i < b.N; i++ {
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
				start := time.Now()
				c.Signal(active, syscall.SIGKILL)
				rtos = append(rtos, firstSuccess(b, c.Cluster, active, epoch, start))
				<-c.Node(active).done
				c.Start(active)
			}
			sort.Slice(rtos, func(i, j int) bool { return rtos[i] < rtos[j] })
			q := func(p float64) time.Duration { return rtos[min(len(rtos)-1, int(p*float64(len(rtos))))] }
			b.ReportMetric(float64(q(0.50).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(rtos[len(rtos)-1].Milliseconds()), "max-ms")
			b.Logf("%s: agent kill -9 failover times (n=%d): %v", kind, len(rtos), rtos)
		})
	}
}

func BenchmarkStoreIdleLoad(b *testing.B) {
	const window = 10 * time.Second
	for _, kind := range []string{"embedded", "etcd", "postgres", "mariadb"} {
		b.Run(kind, func(b *testing.B) {
			c := benchCluster(b, kind)
			for i := 0; i < b.N; i++ {
				c.WaitActive(startTimeout)
				time.Sleep(2 * time.Second) // let start-up writes settle
				before := c.storeOps(b)
				time.Sleep(window)
				after := c.storeOps(b)
				perNode := (after - before) / window.Seconds() / float64(len(c.Nodes))
				b.ReportMetric(perNode, "ops/s/node")
				b.Logf("%s idle: %.1f %s per second per node (%d agents, %s window)", kind, perNode, c.opsUnit(), len(c.Nodes), window)
			}
		})
	}
}

// benchCluster: three agents with the lan preset on kind's store.
func benchCluster(b *testing.B, kind string) *storeCluster {
	if kind == "embedded" {
		// Without TLS: the store ops are read from the member's client
		// port's /metrics, which a TLS member serves only on a loopback
		// port of its own (etcdstore); the op count does not depend on TLS.
		return &storeCluster{Cluster: newCluster(b, clusterOpts{timings: "lan", insecure: true})}
	}
	return newStoreCluster(b, kind, 3, "timing: lan")
}

func (c *storeCluster) opsUnit() string {
	switch {
	case c.srv == nil || c.srv.Kind == "etcd":
		return "gRPC requests"
	case c.srv.Kind == "postgres":
		return "committed transactions"
	}
	return "statements (Questions)"
}

// storeOps reads the store's own request counter.
func (c *storeCluster) storeOps(b *testing.B) float64 {
	b.Helper()
	var metricsFrom []string
	switch {
	case c.srv == nil:
		cfg, err := os.ReadFile(c.Config)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(cfg), "\n") {
			if i := strings.Index(line, "client: "); i >= 0 {
				metricsFrom = append(metricsFrom, strings.TrimSpace(line[i+len("client: "):]))
			}
		}
	case c.srv.Kind == "etcd":
		metricsFrom = []string{c.srv.Addr}
	case c.srv.Kind == "postgres":
		out, err := c.srv.Psql("SELECT sum(xact_commit) FROM pg_stat_database")
		if err != nil {
			b.Fatal(err, out)
		}
		v, err := strconv.ParseFloat(out, 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	default:
		out, err := c.srv.SQL("SHOW GLOBAL STATUS LIKE 'Questions'")
		if err != nil {
			b.Fatal(err, out)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(out, "Questions")), 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	total := 0.0
	for _, addr := range metricsFrom {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "grpc_server_handled_total{") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += v
			}
		}
	}
	return total
}
