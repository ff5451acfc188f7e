package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// DemoConfig renders the configuration `haven demo` runs: n nodes on
// loopback, ports counted up from base, each supervising the sample service.
func DemoConfig(exe, dataDir string, n, base int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by haven demo. Every node reads this same file; each agent is
# started with --node NAME.
cluster: demo
mode: active-passive
data_dir: %s
timing: lan
api: {token: %q}    # operator commands read it from this file
log: {level: info, format: text}
# Mutual TLS on every port; haven demo made these with haven certs init.
tls: {ca_file: certs/ca.crt, cert_file: "certs/${NODE}.crt", key_file: "certs/${NODE}.key"}
nodes:
`, dataDir, demoToken())
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `  - name: n%d
    api: 127.0.0.1:%d
    peer: 127.0.0.1:%d
    client: 127.0.0.1:%d
    backend: 127.0.0.1:%d
    env: {SERVICE_ADDR: "127.0.0.1:%d", SESSIONS_ADDR: "127.0.0.1:%d"}
`, i, base+i, base+100+i, base+200+i, base+300+i, base+300+i, base+500+i)
	}
	fmt.Fprintf(&b, `service:
  command: [%q, "sample-service"]
  standby: hot
  stop_signal: SIGTERM
  stop_grace: 2s
  restart: always
  restart_delay: 200ms
checks:
  - name: sample-http
    http: {url: "http://${SERVICE_ADDR}/healthz", expect_status: 200}
    interval: 100ms
    timeout: 100ms
    rise: 2
    fall: 2
`, exe)
	return b.String()
}

// demoToken is a fresh random API token for the demo's operator commands.
func demoToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runDemo(args []string, out, errw io.Writer) int {
	fs := newFlags("demo", errw)
	dir := fs.String("dir", "", "folder for the demo's config, data and logs (default: a new temporary folder)")
	base := fs.Int("port", 17100, "base port: agents on PORT+1.., etcd on PORT+101.. and PORT+201.., services on PORT+301..")
	nodes := fs.Int("nodes", 3, "number of nodes: 1, 3 or 5")
	if code, ok := parse(fs, args, 0); !ok {
		return code
	}
	if *nodes != 1 && *nodes != 3 && *nodes != 5 {
		fmt.Fprintln(errw, "haven demo: --nodes must be 1, 3 or 5 (an etcd quorum needs an odd number of members)")
		return exitUsage
	}
	if *base < 1024 || *base > 65000 {
		fmt.Fprintln(errw, "haven demo: --port must be between 1024 and 65000")
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(errw, "haven demo: cannot find my own binary: %v\n", err)
		return exitFailure
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "haven-demo-"); err != nil {
			fmt.Fprintf(errw, "haven demo: %v\n", err)
			return exitFailure
		}
	}
	if *dir, err = filepath.Abs(*dir); err != nil {
		fmt.Fprintf(errw, "haven demo: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintf(errw, "haven demo: create %s: %v\n", *dir, err)
		return exitFailure
	}
	for i := 1; i <= *nodes; i++ {
		for _, p := range []int{*base + i, *base + 100 + i, *base + 200 + i, *base + 300 + i, *base + 500 + i} {
			if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err != nil {
				fmt.Fprintf(errw, "haven demo: port %d is in use (another demo running?); pick other ports with --port\n", p)
				return exitFailure
			} else {
				ln.Close()
			}
		}
	}
	cfgPath := filepath.Join(*dir, "haven.yaml")
	// The dashboard's operator gets a fresh password; only its hash is written.
	dashPassword := demoToken()[:20]
	sessPassword := demoToken()[:24]
	dashHash, err := bcrypt.GenerateFromPassword([]byte(dashPassword), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintf(errw, "haven demo: %v\n", err)
		return exitFailure
	}
	cfgText := DemoConfig(exe, filepath.Join(*dir, "data"), *nodes, *base) +
		fmt.Sprintf("dashboard:\n  users:\n    - {name: operator, role: operator, password_hash: %q}\n", dashHash) +
		fmt.Sprintf("sessions: {listen: \"${SESSIONS_ADDR}\", password: %q}   # Redis protocol on every node\n", sessPassword) +
		"sync: {max_lag: 5s, folders: [{name: files, path: \"files/${HAVEN_NODE}\", delete: mirror}]}   # replicated folder, one copy per node\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		fmt.Fprintf(errw, "haven demo: write config: %v\n", err)
		return exitFailure
	}
	cfg, code := loadConfig(cfgPath, errw)
	if cfg == nil {
		return code
	}
	certDir := filepath.Join(*dir, "certs")
	_ = os.RemoveAll(certDir) // a new CA for every demo
	if err := certs.InitFor(certDir, cfg); err != nil {
		fmt.Fprintf(errw, "haven demo: certificates: %v\n", err)
		return exitFailure
	}

	ctx, stop := signalContext()
	defer stop()
	var procs []*exec.Cmd
	defer func() { stopAll(procs, out) }()
	for _, n := range cfg.Nodes {
		logf, err := os.OpenFile(filepath.Join(*dir, n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(errw, "haven demo: %v\n", err)
			return exitFailure
		}
		cmd := exec.Command(exe, "agent", "--config", cfgPath, "--node", n.Name)
		cmd.Stdout, cmd.Stderr = logf, logf
		// Own process group, so Ctrl-C reaches the demo only and it stops
		// the agents in order; Pdeathsig so none outlives a killed demo.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			logf.Close()
			fmt.Fprintf(errw, "haven demo: start agent %s: %v\n", n.Name, err)
			return exitFailure
		}
		logf.Close()
		procs = append(procs, cmd)
	}
	// One standalone proxy in front of the cluster: it follows the active.
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", *base+400)
	if ln, err := net.Listen("tcp", proxyAddr); err != nil {
		fmt.Fprintf(errw, "haven demo: port %d is in use (another demo running?); pick other ports with --port\n", *base+400)
		return exitFailure
	} else {
		ln.Close()
	}
	if logf, err := os.OpenFile(filepath.Join(*dir, "proxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		cmd := exec.Command(exe, "proxy", "--config", cfgPath, "--listen", proxyAddr)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			fmt.Fprintf(errw, "haven demo: start proxy: %v\n", err)
			return exitFailure
		}
		procs = append(procs, cmd)
	}
	fmt.Fprintf(out, "haven demo: %d agents starting, each with an embedded etcd member and a sample service.\n", len(procs)-1)
	fmt.Fprintf(out, "  config: %s\n  logs:   %s/n*.log\n\n", cfgPath, *dir)

	urls := agentAddrs(cfg)
	client, err := apiClient(cfg, "", 2*time.Second)
	if err != nil {
		fmt.Fprintf(errw, "haven demo: %v\n", err)
		return exitFailure
	}
	st, err := waitForLeader(ctx, client, urls, 60*time.Second)
	if err != nil {
		fmt.Fprintf(errw, "haven demo: the cluster did not elect an active node: %v (see the logs in %s)\n", err, *dir)
		return exitFailure
	}
	printStatus(out, st)
	fmt.Fprintf(out, "\nDashboard: https://%s/ui/  (any node's API address works; the CA is %s)\n  user: operator  password: %s\n", cfg.Nodes[0].API, filepath.Join(certDir, "ca.crt"), dashPassword)
	self := demoSelf(out, os.Args[0])
	printDemoSessions(out, cfg, st, sessPassword, certDir)
	printDemoFolders(out, cfg, st, *dir)
	fmt.Fprintf(out, `
Try it (in another terminal):
  curl http://%[5]s/               # through haven's proxy: always the active, even across a failover
  %[1]s status --config %[2]s          # every node's role, health, epoch and pids
  curl http://%[3]s/               # the sample service of a node: 200 on the active, 503 elsewhere
  curl -i --cacert %[6]s/ca.crt https://%[4]s/lb-check
                                          # what a load balancer asks: 200 only on the active
  curl --cacert %[6]s/ca.crt --cert %[6]s/operator.crt --key %[6]s/operator.key https://%[4]s/status
                                          # the agent API over mutual TLS (certificates in %[6]s)
  kill -9 $(%[1]s status --config %[2]s --active-pid service)
                                          # crash the active's service: another node takes over at once
  kill -9 $(%[1]s status --config %[2]s --active-pid agent)
                                          # kill the active's agent: a standby takes over when its lease expires
  kill -STOP <agent pid> ... kill -CONT <agent pid>   # freeze an agent past its lease: it never serves again at its old epoch
  %[1]s switchover --config %[2]s       # a planned hand-over; prints how long traffic was held
  %[1]s events --config %[2]s           # the history: role changes, switchovers, operator actions
  curl -s --cacert %[6]s/ca.crt https://%[4]s/metrics   # haven_cluster_* is the redundancy for monitoring; status exits 0 ok, 1 degraded, 3 no active
  A virtual IP (vip: in the config) is not part of this demo: its nodes share this host's
  network, so an address cannot move between them. See it move between network namespaces
  (as root, from haven's source tree): go test ./internal/vip/viplab/ -run TestVIPFollowsActive -v
  (-run TestVIPFollowsProxy: the VIP in front of a proxy on every node, vip.follow: proxy)
  and compared with keepalived: bench/vip.sh (docs/vip.md explains both)

Role changes appear below (from the cluster's event history). Ctrl-C stops everything.
`, self, cfgPath, serviceAddr(cfg.Nodes[0].Env), cfg.Nodes[0].API, proxyAddr, certDir)
	watchRoleEvents(ctx, out, &opsClient{cfg: cfg, api: client}, st.Time)
	fmt.Fprintln(out, "\nhaven demo: stopping the agents...")
	return exitOK
}

func serviceAddr(env map[string]string) string { return env["SERVICE_ADDR"] }

// printDemoSessions says how to reach the session store with redis-cli.
func printDemoSessions(out io.Writer, cfg *config.Config, st api.Status, password, certDir string) {
	active := cfg.Nodes[0]
	if n, ok := cfg.NodeByName(st.Leader.Node); ok {
		active = n
	}
	_, port, _ := net.SplitHostPort(active.Env["SESSIONS_ADDR"])
	fmt.Fprintf(out, "\nSessions (Redis protocol, replicated and fenced; writes on the active, %s now; standbys answer READONLY):\n", active.Name)
	ca := filepath.Join(certDir, "ca.crt")
	fmt.Fprintf(out, "  redis-cli --tls --cacert %s -p %s -a %s --no-auth-warning SET session:1 hello EX 3600\n", ca, port, password)
	fmt.Fprintf(out, "  redis-cli --tls --cacert %s -p %s -a %s --no-auth-warning GET session:1   # still there after a failover, on the new active\n", ca, port, password)
}

// printDemoFolders says where the replicated folder of each node is.
func printDemoFolders(out io.Writer, cfg *config.Config, st api.Status, dir string) {
	if !cfg.Sync.Enabled() {
		return
	}
	active := st.Leader.Node
	fmt.Fprintf(out, "\nReplicated folder (sync:): the active ships its files to the standbys; %s is active now:\n", active)
	fmt.Fprintf(out, "  echo hello > %s/files/%s/note.txt     # on the active\n", dir, active)
	for _, n := range cfg.Nodes {
		if n.Name != active && !n.Witness {
			fmt.Fprintf(out, "  cat %s/files/%s/note.txt             # on standby %s, within a second\n", dir, n.Name, n.Name)
			break
		}
	}
}

func waitForLeader(ctx context.Context, client *api.Client, urls []string, limit time.Duration) (api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		st, err := fetchStatus(ctx, client, urls)
		if err == nil && !st.Leader.None() {
			for _, n := range st.Nodes {
				if n.Name == st.Leader.Node && n.Role == ha.RoleActive {
					return st, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return api.Status{}, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopAll sends SIGTERM to every agent and waits; stragglers get SIGKILL.
func stopAll(procs []*exec.Cmd, out io.Writer) {
	done := make(chan struct{}, len(procs))
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		go func(p *exec.Cmd) { _ = p.Wait(); done <- struct{}{} }(p)
	}
	deadline := time.After(15 * time.Second)
	for range procs {
		select {
		case <-done:
		case <-deadline:
			for _, p := range procs {
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			}
			return
		}
	}
	if len(procs) > 0 {
		fmt.Fprintln(out, "haven demo: all agents stopped.")
	}
}
