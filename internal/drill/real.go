package drill

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/certs"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// RealScenarios are the scenarios that are safe on a real cluster: each
// interrupts the service at most as a planned operation or a single crash
// of a process the agent restarts would, and never touches the network.
var RealScenarios = []string{"switchover", "service-kill", "agent-restart", "maintenance"}

// RealOptions configure a drill on a real cluster.
type RealOptions struct {
	Config   *config.Config
	Scenario string
	Node     string // the node to act on (service-kill, agent-restart, maintenance); default the active
	Target   string // base URL clients use (default: the config's proxy.listen)
	Path     string // path to GET (default /)
	Clients  int
	Recover  time.Duration
	Log      func(format string, args ...any)
}

// ErrNotEnabled: the config does not allow drills.
var ErrNotEnabled = fmt.Errorf("drills are not enabled for this cluster")

// realCluster talks to a real cluster's agents.
type realCluster struct {
	cfg *config.Config
	api *api.Client
}

func (c *realCluster) nodes() []config.Node {
	var out []config.Node
	for _, n := range c.cfg.Nodes {
		if !n.Witness {
			out = append(out, n)
		}
	}
	return out
}

// status is the first answer from an agent that knows the leader, else
// the first answer (an agent that has not seen the store yet, e.g. one
// just restarted, would show no active while another is).
func (c *realCluster) status(ctx context.Context) (api.Status, error) {
	var last error
	var first *api.Status
	for _, n := range c.nodes() {
		st, err := c.api.WithTimeout(time.Second).Status(ctx, n.API)
		if err == nil && !st.LeaderIsUnknown() {
			return st, nil
		}
		if err == nil && first == nil {
			first = &st
		}
		if err != nil {
			last = err
		}
	}
	if first != nil {
		return *first, nil
	}
	return api.Status{}, fmt.Errorf("no agent answered /status: %w", last)
}

// whole: exactly one active, every other (non-witness) node a healthy standby.
func (c *realCluster) whole(ctx context.Context) (api.Status, string) {
	st, err := c.status(ctx)
	if err != nil {
		return st, err.Error()
	}
	actives := 0
	for _, v := range st.Nodes {
		if v.Witness {
			continue
		}
		switch {
		case v.Role == ha.RoleActive:
			actives++
		case v.Role != ha.RoleStandby || !v.Healthy:
			return st, fmt.Sprintf("%s is %s (healthy %v)", v.Name, v.Role, v.Healthy)
		}
	}
	if actives != 1 {
		return st, fmt.Sprintf("%d active nodes", actives)
	}
	return st, ""
}

func (c *realCluster) waitWhole(ctx context.Context, d time.Duration) (api.Status, error) {
	deadline := time.Now().Add(d)
	for {
		st, why := c.whole(ctx)
		if why == "" {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("the cluster is not whole after %s: %s", d, why)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return st, err
		}
	}
}

// localPID checks that pid is a process on this machine that belongs to
// node's agent, so that the drill never signals an unrelated process.
func localPID(pid int, node config.Node) error {
	host, _, err := net.SplitHostPort(node.API)
	if err != nil {
		return err
	}
	local := false
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		local = true
	} else if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == host {
				local = true
			}
		}
	}
	if !local {
		return fmt.Errorf("%s's agent (%s) is not on this machine; run the drill on %s", node.Name, node.API, node.Name)
	}
	if pid <= 0 {
		return fmt.Errorf("%s reports no process id", node.Name)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return fmt.Errorf("process %d of %s is not on this machine; run the drill on %s", pid, node.Name, node.Name)
	}
	return nil
}

// RunReal runs one real-cluster-safe scenario and measures it with read
// traffic to the target and samples of every node's /lb-check.
func RunReal(ctx context.Context, o RealOptions) (Result, error) {
	cfg := o.Config
	if !cfg.Drill.Enabled {
		return Result{}, fmt.Errorf("%w: %s has no `drill: {enabled: true}`; add it on purpose — a drill moves the active role and kills processes", ErrNotEnabled, cfg.Path)
	}
	if !slices.Contains(RealScenarios, o.Scenario) {
		return Result{}, fmt.Errorf("scenario %q cannot run on a real cluster; use one of %s (the others need the sandbox: haven drill --sandbox)", o.Scenario, strings.Join(RealScenarios, ", "))
	}
	if cfg.APIAuth.Token == "" {
		return Result{}, fmt.Errorf("%s has no api.token: the drill needs it for operator actions", cfg.Path)
	}
	if o.Target == "" {
		if cfg.Proxy.Listen == "" {
			return Result{}, fmt.Errorf("no --target and no proxy.listen in %s: give the URL clients use, e.g. --target http://lb.example.com", cfg.Path)
		}
		host, port, _ := net.SplitHostPort(cfg.Proxy.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		o.Target = "http://" + net.JoinHostPort(host, port)
	}
	if o.Recover <= 0 {
		o.Recover = 60 * time.Second
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	co := api.ClientOptions{Token: cfg.APIAuth.Token, Who: "haven drill", Timeout: 30 * time.Second}
	if cfg.TLS.Enabled() {
		tc, err := certs.ClientTLS(certs.Files(cfg.TLS.For(certs.Operator)))
		if err != nil {
			return Result{}, fmt.Errorf("TLS: %w", err)
		}
		co.TLS = tc
	}
	c := &realCluster{cfg: cfg, api: api.NewClient(co)}
	st, err := c.waitWhole(ctx, 10*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("not starting the drill: %w", err)
	}
	active := st.Leader.Node
	node := o.Node
	if node == "" {
		node = active
	}
	cn, ok := cfg.NodeByName(node)
	if !ok {
		return Result{}, fmt.Errorf("no node %q in %s", node, cfg.Path)
	}
	var view api.NodeView
	for _, v := range st.Nodes {
		if v.Name == node {
			view = v
		}
	}
	switch o.Scenario {
	case "service-kill":
		if err := localPID(view.ServicePID, cn); err != nil {
			return Result{}, err
		}
	case "agent-restart":
		if err := localPID(view.AgentPID, cn); err != nil {
			return Result{}, err
		}
	}

	res := Result{Name: o.Scenario, Title: o.Scenario + " on " + node}
	t0 := time.Now()
	res.Start = t0
	r := &run{t0: t0, active: active, epoch: st.Leader.Epoch}
	r.log = nil
	load := StartLoad(LoadOptions{Target: o.Target, Path: o.Path, Clients: o.Clients, ReadOnly: true}, t0)
	var addrs []lbNode
	for _, n := range c.nodes() {
		addrs = append(addrs, lbNode{n.Name, n.API})
	}
	mon := startMonitor(c.api.WithTimeout(300*time.Millisecond), addrs, t0)
	_ = sleepCtx(ctx, time.Second)
	logf("fault: %s on %s", o.Scenario, node)
	r.mark("fault")
	var ferr error
	switch o.Scenario {
	case "switchover":
		var sr api.SwitchoverResult
		sr, ferr = c.api.Switchover(ctx, cn.API, api.SwitchoverRequest{Reason: "haven drill"})
		if ferr == nil {
			r.note("%s → %s at epoch %d in %.0f ms", sr.From, sr.To, sr.Epoch, sr.TookMS)
		}
	case "maintenance":
		_, ferr = c.api.Maintenance(ctx, cn.API, api.MaintenanceRequest{Node: node, On: true})
		if ferr == nil {
			_ = sleepCtx(ctx, 3*time.Second)
			_, ferr = c.api.Maintenance(ctx, cn.API, api.MaintenanceRequest{Node: node, On: false})
			r.mark("heal (maintenance off)")
			r.note("%s in maintenance for 3 s", node)
		}
	case "service-kill":
		ferr = syscall.Kill(view.ServicePID, syscall.SIGKILL)
		r.note("killed %s's service (pid %d)", node, view.ServicePID)
	case "agent-restart":
		ferr = syscall.Kill(view.AgentPID, syscall.SIGTERM)
		r.note("sent SIGTERM to %s's agent (pid %d); its supervisor must start it again", node, view.AgentPID)
	}
	if ferr == nil {
		var after api.Status
		after, ferr = c.waitWhole(ctx, o.Recover)
		if ferr == nil {
			r.mark("whole")
			r.note("active: %s (epoch %d)", after.Leader.Node, after.Leader.Epoch)
		}
	}
	if ferr != nil {
		res.Failed = ferr.Error()
	}
	_ = sleepCtx(ctx, time.Second)
	load.Stop()
	mon.stop()
	ops := load.Ops()
	res.Ops, res.Marks = ops, r.marks
	fault, whole := r.at("fault"), r.at("whole")
	if whole < 0 {
		whole = r.now()
	}
	res.From, res.To = max(0, fault-time.Second), r.now()
	res.RTO, res.RTOAt = Outage(ops, fault, whole)
	res.FirstOK = FirstSuccess(ops, fault)
	for _, op := range ops {
		if op.End >= fault && op.Start <= whole {
			res.Requests++
		}
	}
	res.Errors, res.ByKind = Errors(ops, fault, whole)
	res.Split = mon.overlap()
	res.What = strings.Join(r.notes, "; ")
	res.Verdict = verdict(Scenario{ZeroErrors: o.Scenario == "switchover" || o.Scenario == "maintenance"}, res, 0)
	return res, nil
}
