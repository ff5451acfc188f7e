package drill

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/dbserver"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/harness"
)

// SandboxOptions configure a sandbox cluster.
type SandboxOptions struct {
	Bin   string // the haven binary; default: this executable
	Dir   string // where configs, data and logs go; default: a new temporary directory
	Netns bool   // put each node in its own network namespace (needs root)
	// Timing is "lan" (the preset), "lan-fast" (the preset with a 1s
	// lease) or "ci" (the lan preset with a 3s lease and a wider renew
	// window, for a loaded machine; what the tests use).
	Timing string
	// Store is where the agents coordinate: "embedded" (the default: an
	// etcd member in every agent), or "postgres" or "mariadb": a throwaway
	// database server the sandbox starts on loopback (dbserver), which
	// the db-restart and db-loss scenarios stop and start. A database
	// sandbox runs on loopback only.
	Store string
	Log   io.Writer // progress lines; nil: none
	// VIP gives the cluster a virtual IP on the client network and sends
	// the drill's clients to it instead of the proxy (needs Netns).
	VIP bool
	// VIPFollowProxy (with VIP): every agent runs a proxy on port 8081 and
	// the VIP follows a node whose proxy is healthy (vip.follow: proxy);
	// the drill's clients go to the VIP's port 8081, through the proxies.
	VIPFollowProxy bool
	// Sessions: every node serves the session store (sessions:) on a port
	// of its own (Node.Sessions), with the password SessionsPassword.
	Sessions bool
	// Folders: every node replicates the folder "files" (sync:), kept at
	// Node.Files, with SandboxMaxLag.
	Folders bool
	// Extra is more top-level YAML for the cluster's config (the agents'
	// and the proxy's), e.g. "lock_delay: off" to show what a guard
	// guards against.
	Extra string
	// Held names nodes whose agents NewSandbox does not start (StartAgent
	// starts them later): nodes down since the cluster began, such as one
	// not yet upgraded. NewSandbox then waits for an active node only.
	Held []string
}

// SandboxMaxLag is sync.max_lag in a sandbox with Folders.
const SandboxMaxLag = 2 * time.Second

// SessionsPassword is the session store's password in a sandbox.
const SessionsPassword = "drill-sandbox-sessions-0123456789"

// Sandbox stores.
const (
	StoreEmbedded = "embedded"
	StorePostgres = "postgres"
	StoreMariaDB  = "mariadb"
)

// Stores lists the stores a sandbox can use.
var Stores = []string{StoreEmbedded, StorePostgres, StoreMariaDB}

// Timing lines of the sandbox's config.
var timings = map[string]string{
	"lan":      "timing: lan",
	"lan-fast": "timing: lan-fast",
	"ci":       harness.CITimings,
}

// leaseOf is the lease_ttl of a Timing name.
func leaseOf(timing string) time.Duration {
	if timing == "ci" {
		return harness.CILease
	}
	t, _ := config.Preset(timing)
	return t.LeaseTTL
}

const sandboxToken = "drill-sandbox-token-0123456789"

// Node is one node of a sandbox.
type Node struct {
	Name, API, Service string
	Index              int    // 1-based
	NS                 string // its network namespace, if any
	Sessions           string // host:port of its session store (SandboxOptions.Sessions)
	Files              string // its copy of the replicated folder (SandboxOptions.Folders)
	agent              *harness.Proc
}

// Sandbox is a 3-node haven cluster on this machine — real agent processes
// supervising the sample service, with embedded etcd members or a shared
// throwaway database — and a standalone `haven proxy` in front of it.
type Sandbox struct {
	// TLS is the operator\'s client configuration for the cluster\'s mutual
	// TLS (the agent API and the session store verify with it).
	TLS    *tls.Config
	Opts   SandboxOptions
	Dir    string
	Config string
	Nodes  []*Node
	Proxy  string // host:port clients use
	VIP    string // host:port of the service on the virtual IP, with SandboxOptions.VIP
	Lease  time.Duration
	DB     *dbserver.Server // the database of a postgres or mariadb sandbox

	lab   *lab
	proxy *harness.Proc
	ownD  bool
	mu    sync.Mutex
	hc    *api.Client
}

// NewSandbox writes the config and starts the cluster and the proxy; it
// returns once one node is active and the proxy serves.
func NewSandbox(ctx context.Context, o SandboxOptions) (*Sandbox, error) {
	if o.Bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the haven binary: %w", err)
		}
		o.Bin = exe
	}
	if o.Timing == "" {
		o.Timing = "lan"
	}
	if _, ok := timings[o.Timing]; !ok {
		return nil, fmt.Errorf("unknown timing %q; use lan, lan-fast or ci", o.Timing)
	}
	if o.Store == "" {
		o.Store = StoreEmbedded
	}
	if !slices.Contains(Stores, o.Store) {
		return nil, fmt.Errorf("unknown store %q; use one of %s", o.Store, strings.Join(Stores, ", "))
	}
	if o.Store != StoreEmbedded && o.Netns {
		return nil, fmt.Errorf("a %s sandbox runs on loopback: its database is not reachable from network namespaces (drop the namespaces, e.g. --no-netns)", o.Store)
	}
	s := &Sandbox{Opts: o, Dir: o.Dir, Lease: leaseOf(o.Timing)}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "haven-drill-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.ownD = d, true
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if err := s.startDB(); err != nil {
		return nil, err
	}
	if o.VIP && !o.Netns {
		return nil, fmt.Errorf("a virtual IP needs the network namespaces (run as root, without --no-netns, on the embedded store)")
	}
	if o.Netns {
		l, err := newLab(3)
		if err != nil {
			return nil, fmt.Errorf("network namespaces: %w", err)
		}
		s.lab = l
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	for _, n := range s.Nodes {
		if slices.Contains(o.Held, n.Name) {
			continue
		}
		if err := s.StartAgent(n.Name); err != nil {
			return nil, err
		}
	}
	if err := s.startProxy(); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range s.Nodes {
		if !n.agent.Running() && !slices.Contains(o.Held, n.Name) {
			return nil, fmt.Errorf("the agent of %s exited at once (%s):\n%s", n.Name, n.agent.Exit(), s.logTail(n.Name, 2000))
		}
	}
	if len(o.Held) > 0 {
		if _, err := s.WaitActive(90*time.Second, ""); err != nil {
			return nil, fmt.Errorf("the sandbox did not come up without %v: %w (logs in %s)", o.Held, err, filepath.Join(s.Dir, "logs"))
		}
	} else if err := s.WaitWhole(ctx, 90*time.Second); err != nil {
		return nil, fmt.Errorf("the sandbox did not come up: %w (logs in %s)", err, filepath.Join(s.Dir, "logs"))
	}
	ok = true
	return s, nil
}

func (s *Sandbox) writeConfig() error {
	addrs, ports, err := harness.Loopback(3, 2+3) // the proxy, its metrics, the session stores
	if err != nil {
		return err
	}
	var b strings.Builder
	certDir := filepath.Join(s.Dir, "certs")
	fmt.Fprintf(&b, "cluster: drill\ndata_dir: %s\n%s\napi: {token: %s}\nlog: {level: info}\n",
		filepath.Join(s.Dir, "data"), timings[s.Opts.Timing], sandboxToken)
	if s.Opts.Extra != "" {
		b.WriteString(strings.TrimRight(s.Opts.Extra, "\n") + "\n")
	}
	// Mutual TLS, as a real cluster runs: the same certificates code as
	// `haven certs init`.
	fmt.Fprintf(&b, "tls: {ca_file: %q, cert_file: %q, key_file: %q}\n", filepath.Join(certDir, "ca.crt"), filepath.Join(certDir, "${NODE}.crt"), filepath.Join(certDir, "${NODE}.key"))
	switch s.Opts.Store {
	case StorePostgres:
		fmt.Fprintf(&b, "store: {backend: postgres, dsn: %q}\n", s.DB.DSN+"&connect_timeout=2")
	case StoreMariaDB:
		fmt.Fprintf(&b, "store: {backend: mysql, dsn: %q}\n", s.DB.DSN)
	}
	b.WriteString("nodes:\n")
	listen := "" // the sample service's own address (SERVICE_ADDR)
	for i := 1; i <= 3; i++ {
		n := &Node{Name: fmt.Sprintf("n%d", i), Index: i}
		var peer, client string
		if s.lab != nil {
			n.NS = s.lab.ns[i-1]
			n.API, n.Service = s.lab.clientIP(i)+":7400", s.lab.clientIP(i)+":8080"
			peer, client = s.lab.clusterIP(i)+":7401", s.lab.clusterIP(i)+":7402"
		} else {
			a := addrs[i-1]
			n.API, n.Service, peer, client = a.API, a.Service, a.Peer, a.Client
		}
		env := fmt.Sprintf("{SERVICE_ADDR: %q}", n.Service)
		if s.Opts.Sessions {
			n.Sessions = fmt.Sprintf("127.0.0.1:%d", ports[2+i-1])
			if s.lab != nil {
				n.Sessions = s.lab.clientIP(i) + ":6379"
			}
			env = fmt.Sprintf("{SERVICE_ADDR: %q, SESSIONS_ADDR: %q}", n.Service, n.Sessions)
		}
		if s.Opts.Folders {
			n.Files = filepath.Join(s.Dir, "files", n.Name)
			env = strings.TrimSuffix(env, "}") + fmt.Sprintf(", FILES_DIR: %q}", n.Files)
		}
		if s.DB != nil { // the database arbitrates: no etcd members
			fmt.Fprintf(&b, "  - name: %s\n    api: %s\n    backend: %s\n    env: %s\n",
				n.Name, n.API, n.Service, env)
		} else {
			fmt.Fprintf(&b, "  - name: %s\n    api: %s\n    peer: %s\n    client: %s\n    backend: %s\n    env: %s\n",
				n.Name, n.API, peer, client, n.Service, env)
		}
		s.Nodes = append(s.Nodes, n)
	}
	agentOnly := "" // what haven.yaml has and proxy.yaml must not
	switch {
	case s.Opts.VIP && s.lab != nil && s.Opts.VIPFollowProxy:
		// A proxy in every agent, on every address of its namespace, and
		// the VIP in front of them.
		vip := s.lab.clientIP(100)
		agentOnly = fmt.Sprintf("vip: {address: %s/24, interface: eth1, follow: proxy}\nproxy: {listen: '0.0.0.0:8081'}\n", vip)
		s.VIP = vip + ":8081"
	case s.Opts.VIP && s.lab != nil:
		// On the client network, beside the nodes; the host reaches it
		// there. The services listen on every address (SERVICE_ADDR of the
		// agents stays the node's own, for the checks and the proxy).
		vip := s.lab.clientIP(100)
		fmt.Fprintf(&b, "vip: {address: %s/24, interface: eth1}\n", vip)
		s.VIP = vip + ":8080"
		listen = `, "--listen", ":8080"`
	}
	// The health check gives the sample 500 ms to answer: no scenario hangs
	// the service (a crash is seen at once by the supervisor), and with
	// 200 ms the checks timed out on a loaded machine and failed healthy
	// actives over, most of all with lan-fast (#19). The "ci" timings give
	// it 1 s, and fail it after three misses: at a load of 30 on 2 cores
	// the checks of every new active timed out at 500 ms within 3 s of its
	// promotion, and the role went round the nodes for the 30 s that
	// TestChaos then allowed a recovery. At load 31–36 it still does with
	// 1 s (three timeouts per new active, agents stalled 1.2 s): TestChaos
	// counts its bound in the CPU time the machine leaves (chaos package).
	check := "interval: 500ms\n    timeout: 500ms\n    rise: 1\n    fall: 2"
	if s.Opts.Timing == "ci" {
		check = "interval: 1s\n    timeout: 1s\n    rise: 1\n    fall: 3"
	}
	fmt.Fprintf(&b, `service:
  command: [%q, "sample-service"%s]
  env: {HAVEN_API_TOKEN: %q}
  stop_grace: 2s
  restart: always
  restart_delay: 100ms
checks:
  - name: sample
    http: {url: "http://${SERVICE_ADDR}/healthz"}
    %s
drill: {enabled: true}
`, s.Opts.Bin, listen, sandboxToken, check)
	if s.Opts.Sessions {
		fmt.Fprintf(&b, "sessions: {listen: \"${SESSIONS_ADDR}\", password: %q}\n", SessionsPassword)
	}
	if s.Opts.Folders {
		fmt.Fprintf(&b, "sync: {max_lag: %s, quiet: 200ms, folders: [{name: files, path: \"${FILES_DIR}\", delete: mirror}]}\n", SandboxMaxLag)
	}
	s.Config = filepath.Join(s.Dir, "haven.yaml")
	if err := os.WriteFile(s.Config, []byte(b.String()+agentOnly), 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(s.Config)
	if err != nil {
		return err
	}
	_ = os.RemoveAll(certDir)
	if err := certs.InitFor(certDir, cfg); err != nil {
		return fmt.Errorf("sandbox certificates: %w", err)
	}
	tc, err := certs.ClientTLS(certs.Files(cfg.TLS.For(certs.Operator)))
	if err != nil {
		return err
	}
	s.hc = api.NewClient(api.ClientOptions{Token: sandboxToken, Who: "haven drill", Timeout: 500 * time.Millisecond, TLS: tc})
	s.TLS = tc
	s.Proxy = fmt.Sprintf("127.0.0.1:%d", ports[0])
	proxyCfg := fmt.Sprintf("%s\nproxy:\n  listen: %s\n  metrics_listen: 127.0.0.1:%d\n", b.String(), s.Proxy, ports[1])
	return os.WriteFile(filepath.Join(s.Dir, "proxy.yaml"), []byte(proxyCfg), 0o644)
}

// start runs the haven binary with args as name, its output in
// logs/name.log.
func (s *Sandbox) start(name, ns string, args ...string) (*harness.Proc, error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p, err := harness.Start(ns, f, s.Opts.Bin, args...)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { <-p.Done(); f.Close() }()
	return p, nil
}

func (s *Sandbox) startProxy() error {
	p, err := s.start("proxy", "", "proxy", "--config", filepath.Join(s.Dir, "proxy.yaml"))
	if err != nil {
		return err
	}
	s.proxy = p
	return nil
}

// startDB starts the database of a postgres or mariadb sandbox.
func (s *Sandbox) startDB() error {
	var err error
	switch s.Opts.Store {
	case StorePostgres:
		s.DB, err = dbserver.StartPostgres()
	case StoreMariaDB:
		s.DB, err = dbserver.StartMariaDB()
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("start the sandbox's %s server: %w", s.Opts.Store, err)
	}
	if s.Opts.Log != nil {
		fmt.Fprintf(s.Opts.Log, "haven drill: %s on %s (data in %s)\n", s.Opts.Store, s.DB.Addr, s.DB.Dir)
	}
	return nil
}

// StopDB stops the sandbox's database (cleanly: committed rows stay).
func (s *Sandbox) StopDB() error {
	if s.DB == nil {
		return errNoDB
	}
	s.DB.Stop()
	return nil
}

// StartDB starts the sandbox's database again and waits until it accepts clients.
func (s *Sandbox) StartDB() error {
	if s.DB == nil {
		return errNoDB
	}
	return s.DB.Start()
}

var errNoDB = errors.New("needs a database store (--store postgres or mariadb)")

// Node returns the node called name, or nil.
func (s *Sandbox) Node(name string) *Node {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// StartAgent starts (or restarts) node name's agent.
func (s *Sandbox) StartAgent(name string) error {
	n := s.Node(name)
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.agent.Running() {
		return fmt.Errorf("the agent of %s is already running", name)
	}
	p, err := s.start(name, n.NS, "agent", "--config", s.Config, "--node", name)
	if err != nil {
		return err
	}
	n.agent = p
	return nil
}

// Signal sends sig to node name's agent.
func (s *Sandbox) Signal(name string, sig syscall.Signal) error {
	n := s.Node(name)
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	if !n.agent.Running() {
		return fmt.Errorf("the agent of %s is not running (%s)", name, n.agent.Exit())
	}
	return n.agent.Signal(sig)
}

// StopAgent sends sig (SIGTERM or SIGKILL) to node name's agent and waits
// for it to exit.
func (s *Sandbox) StopAgent(name string, sig syscall.Signal, wait time.Duration) error {
	if err := s.Signal(name, sig); err != nil {
		return err
	}
	if !s.Node(name).agent.Wait(wait) {
		return fmt.Errorf("the agent of %s did not exit within %s of %v", name, wait, sig)
	}
	return nil
}

// KillService kills node name's supervised service with SIGKILL.
func (s *Sandbox) KillService(name string) (int, error) {
	v, err := s.view(name, name)
	if err != nil {
		return 0, err
	}
	if v.ServicePID <= 0 {
		return 0, fmt.Errorf("%s reports no service process", name)
	}
	return v.ServicePID, syscall.Kill(v.ServicePID, syscall.SIGKILL)
}

// Cut isolates node name from the cluster network, both directions.
func (s *Sandbox) Cut(name string) error {
	n, err := s.netNode(name)
	if err != nil {
		return err
	}
	return s.lab.cut(n.Index)
}

// CutEgress drops what node name sends on the cluster network.
func (s *Sandbox) CutEgress(name string) error {
	n, err := s.netNode(name)
	if err != nil {
		return err
	}
	return s.lab.cutEgress(n.Index)
}

// Heal undoes Cut and CutEgress.
func (s *Sandbox) Heal(name string) error {
	n, err := s.netNode(name)
	if err != nil {
		return err
	}
	return s.lab.heal(n.Index)
}

func (s *Sandbox) netNode(name string) (*Node, error) {
	if s.lab == nil {
		return nil, errNoNetns
	}
	n := s.Node(name)
	if n == nil {
		return nil, fmt.Errorf("no node %q", name)
	}
	return n, nil
}

var errNoNetns = errors.New("needs network namespaces (run as root)")

// Haven runs the haven CLI against the sandbox's config.
func (s *Sandbox) Haven(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.Opts.Bin, args...)
	cmd.Env = append(os.Environ(), "HAVEN_CONFIG="+s.Config)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("haven %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Status asks node from for the cluster status.
func (s *Sandbox) Status(from string) (api.Status, error) {
	return s.hc.Status(context.Background(), s.Node(from).API)
}

// Metrics reads node from's /metrics.
func (s *Sandbox) Metrics(from string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.hc.Metrics(ctx, s.Node(from).API)
}

func (s *Sandbox) view(from, name string) (api.NodeView, error) {
	if s.Node(from) == nil {
		return api.NodeView{}, fmt.Errorf("no node %q", from)
	}
	st, err := s.Status(from)
	if err != nil {
		return api.NodeView{}, err
	}
	for _, v := range st.Nodes {
		if v.Name == name {
			return v, nil
		}
	}
	return api.NodeView{}, fmt.Errorf("%s does not list %s", from, name)
}

// Serving returns the nodes whose /lb-check answers 200 now.
func (s *Sandbox) Serving() []string {
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	for _, n := range s.Nodes {
		wg.Add(1)
		go func(n *Node) {
			defer wg.Done()
			if ok, _ := s.hc.LBCheck(context.Background(), n.API); ok {
				mu.Lock()
				out = append(out, n.Name)
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	return out
}

// Active returns the node serving as active and its epoch, or "" when not
// exactly one node serves.
func (s *Sandbox) Active() (string, ha.Epoch) {
	srv := s.Serving()
	if len(srv) != 1 {
		return "", 0
	}
	r, err := s.hc.Role(context.Background(), s.Node(srv[0]).API)
	if err != nil || !r.Serving {
		return "", 0
	}
	return srv[0], r.Epoch
}

// Role asks node name's agent for its role (GET /v1/role): whether it
// serves, at which epoch, and for how long at most without a renewal.
func (s *Sandbox) Role(name string) (api.RoleView, error) {
	n := s.Node(name)
	if n == nil {
		return api.RoleView{}, fmt.Errorf("no node %q", name)
	}
	return s.hc.Role(context.Background(), n.API)
}

// WaitActive waits up to d for exactly one active node, other than not
// when not is set, and names it.
func (s *Sandbox) WaitActive(d time.Duration, not string) (string, error) {
	deadline := time.Now().Add(d)
	for {
		if a, _ := s.Active(); a != "" && a != not {
			return a, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no active node other than %q within %s", not, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EtcdLeader names the embedded etcd member that leads raft as node from
// sees it, "" when it cannot tell (or the store is not embedded etcd).
func (s *Sandbox) EtcdLeader(from string) string {
	n := s.Node(from)
	if n == nil {
		return ""
	}
	return harness.EtcdLeader(context.Background(), s.hc, n.API)
}

// Standbys returns every node but active.
func (s *Sandbox) Standbys(active string) []string {
	var out []string
	for _, n := range s.Nodes {
		if n.Name != active {
			out = append(out, n.Name)
		}
	}
	return out
}

// VIPHolder is the node that holds the virtual IP as the running agents
// report it, "" when none does.
func (s *Sandbox) VIPHolder() string {
	for _, n := range s.Nodes {
		if !n.agent.Running() {
			continue
		}
		st, err := s.Status(n.Name)
		if err != nil {
			continue
		}
		for _, v := range st.Nodes {
			if v.VIP != "" {
				return v.Name
			}
		}
		return ""
	}
	return ""
}

// Whole reports why the cluster is not whole, or "" when it is: every
// agent running, exactly one active, every other node a healthy standby in
// the active's view, and a read through the proxy succeeding.
func (s *Sandbox) Whole(ctx context.Context) string {
	for _, n := range s.Nodes {
		if !n.agent.Running() {
			return "the agent of " + n.Name + " is not running (" + n.agent.Exit() + ")"
		}
	}
	active, _ := s.Active()
	if active == "" {
		return "not exactly one node serves"
	}
	st, err := s.Status(active)
	if err != nil {
		return "status: " + err.Error()
	}
	if len(st.Nodes) != len(s.Nodes) {
		return fmt.Sprintf("%s lists %d nodes", active, len(st.Nodes))
	}
	for _, v := range st.Nodes {
		switch {
		case v.Name == active && v.Role != ha.RoleActive:
			return v.Name + " is " + string(v.Role)
		case v.Name != active && (v.Role != ha.RoleStandby || !v.Healthy):
			return fmt.Sprintf("%s is %s (healthy %v)", v.Name, v.Role, v.Healthy)
		}
	}
	if s.Opts.VIPFollowProxy && s.VIPHolder() == "" {
		return "no node holds the virtual IP"
	}
	if !s.proxy.Running() {
		return "the proxy is not running"
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+s.Proxy+"/read?k=whole", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "proxy: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "proxy answered " + resp.Status
	}
	return ""
}

// WaitWhole waits until the cluster is whole (see Whole).
func (s *Sandbox) WaitWhole(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		why := s.Whole(ctx)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not whole after %s: %s", d, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops every process, removes the namespaces and, if the sandbox
// made its directory, the directory.
func (s *Sandbox) Close() {
	ps := []*harness.Proc{s.proxy}
	for _, n := range s.Nodes {
		ps = append(ps, n.agent)
	}
	harness.Stop(15*time.Second, ps...)
	if s.lab != nil {
		s.lab.close()
	}
	if s.DB != nil {
		s.DB.Close()
	}
	if s.ownD {
		_ = os.RemoveAll(s.Dir)
	}
}

// LogTail returns the last n bytes of every process's log, for failures.
func (s *Sandbox) LogTail(n int) string {
	var b strings.Builder
	b.WriteString(LogTails(s.Dir, n))
	if s.DB != nil {
		l := s.DB.Log()
		fmt.Fprintf(&b, "---- %s ----\n%s\n", s.DB.Kind, l[max(0, len(l)-n):])
	}
	return b.String()
}

func (s *Sandbox) logTail(name string, n int) string { return logTail(s.Dir, name, n) }

// LogTails returns the last n bytes of the log of every process a sandbox
// in dir (SandboxOptions.Dir) started — its agents and its proxy — for the
// failures of a sandbox that may not have come up (NewSandbox stops its
// processes then, and leaves their logs in a dir it was given).
func LogTails(dir string, n int) string {
	var b strings.Builder
	for _, name := range []string{"n1", "n2", "n3", "proxy"} {
		fmt.Fprintf(&b, "---- %s ----\n%s\n", name, logTail(dir, name, n))
	}
	return b.String()
}

func logTail(dir, name string, n int) string {
	data, _ := os.ReadFile(filepath.Join(dir, "logs", name+".log"))
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// CAFile is the cluster CA's certificate, for clients outside Go
// (curl --cacert, redis-cli --tls --cacert).
func (s *Sandbox) CAFile() string { return filepath.Join(s.Dir, "certs", "ca.crt") }

// LockDelays says which promotion after epoch waited on the lock-delay and
// for how long, as the running agents report it ("" when none did).
func (s *Sandbox) LockDelays(after ha.Epoch) string {
	for _, n := range s.Nodes {
		if !n.agent.Running() {
			continue
		}
		st, err := s.Status(n.Name)
		if err != nil {
			continue
		}
		var out []string
		for _, v := range st.Nodes {
			if d := v.LockDelay; d != nil && d.Epoch > after && d.Until.IsZero() {
				out = append(out, fmt.Sprintf("%s waited %s on the lock-delay before acting at epoch %d (the old key went without a record of resign or expiry)",
					v.Name, d.Waited.Round(time.Millisecond), d.Epoch))
			}
		}
		return strings.Join(out, "; ")
	}
	return ""
}
