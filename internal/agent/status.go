package agent

import (
	"net/http"
	"sort"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
)

// Status assembles the cluster view: this node from its own state, the
// others from their records in the store, and configured nodes that have no
// record as down.
func (a *Agent) Status() api.Status {
	snap := a.Snapshot()
	st := api.Status{
		Cluster:  a.cfg.Cluster,
		Mode:     string(a.cfg.Mode),
		Reporter: a.node.Name,
		Leader:   snap.Leader,
		Time:     a.clk.Now(),
		// Every agent tracks losses, so any of them can answer.
		LastFailover: a.lastFailover(),
		Warnings:     append(a.securityWarnings(a.clk.Now()), a.storeWarnings()...),
	}
	st.LeaderUnknown = a.leaderUnknown(st.Time)
	st.LeaderKnown = st.LeaderUnknown == ""
	if !st.LeaderKnown {
		st.Leader = ha.Leader{} // not "none": unknown
	}
	for _, n := range a.cfg.Nodes {
		var rec ha.NodeStatus
		var ok bool
		if n.Name == a.node.Name {
			rec, ok = a.Record(), true
		} else {
			rec, ok = snap.Nodes[n.Name]
		}
		v := api.NodeView{Name: n.Name, Role: ha.RoleDown, API: a.cfg.APIURL(n.API), Witness: n.Witness, Why: "no agent seen in the store"}
		if at, lost := a.lostSince(n.Name); lost {
			v.Why = "lost at " + at.Format("15:04:05.000") + " (its session expired); see haven events"
		}
		if n.Witness {
			v.API = ""
		}
		if ok {
			v = viewOf(rec)
			v.Witness = n.Witness
		}
		// The site and alias are known for a node that is down too: the
		// site from the shared config, the alias from the store.
		v.Site = n.Site
		v.Alias = snap.Props[n.Name].Alias
		st.Nodes = append(st.Nodes, v)
	}
	// Nodes that joined after this agent read its config (members add).
	var extra []string
	for name := range snap.Nodes {
		if _, ok := a.cfg.NodeByName(name); !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		v := viewOf(snap.Nodes[name])
		v.Alias = snap.Props[name].Alias
		st.Nodes = append(st.Nodes, v)
	}
	st.Redundancy = a.redundancy(st)
	if v := a.cfg.VIP; v.Enabled() {
		follows := config.FollowActive
		if v.FollowsProxy() {
			follows = config.FollowProxy
		}
		st.VIP = &api.VIPView{Address: v.Address.String(), Follows: follows, Holders: []string{}}
		for _, n := range st.Nodes {
			if n.VIP != "" {
				st.VIP.Holders = append(st.VIP.Holders, n.Name)
			}
		}
	}
	return st
}

// viewOf turns a node's published record into its status entry.
func viewOf(rec ha.NodeStatus) api.NodeView {
	return api.NodeView{
		Name: rec.Name, Site: rec.Site, Role: rec.Role, Healthy: rec.Healthy, Health: rec.Health,
		Eligible: rec.Eligible, Why: rec.Why, HeldBy: rec.HeldBy, Epoch: rec.Epoch, Since: rec.Since, Reason: rec.Reason,
		AgentPID: rec.AgentPID, ServicePID: rec.ServicePID, API: rec.API,
		Heartbeat: rec.Heartbeat, StartedAt: rec.StartedAt, Version: rec.Version, Failovers: rec.Failovers,
		Containment:  rec.Containment,
		VIP:          rec.VIP,
		Sessions:     rec.Sessions,
		Folders:      rec.Folders,
		LockDelay:    rec.LockDelay,
		VIPLockDelay: rec.VIPLockDelay,
	}
}

// Role is this node's own role, for the supervised service.
func (a *Agent) Role() api.RoleView {
	s := a.State()
	now := a.clk.Now()
	v := api.RoleView{Node: a.node.Name, Role: s.Role, Serving: s.Serving(a.mcfg, now)}
	if s.Holding() {
		v.Epoch = s.Epoch
	}
	v.LeaderUnknown = a.leaderUnknown(now)
	if v.LeaderKnown = v.LeaderUnknown == ""; v.LeaderKnown {
		v.Leader = a.Snapshot().Leader.Node
		if v.Serving {
			v.Leader = a.node.Name // the watch may not have shown our own win yet
		}
	}
	if v.Serving {
		v.ValidForMS = s.ValidUntil.Add(-a.cfg.Timing.FenceMargin).Sub(now).Milliseconds()
	}
	return v
}

// Metrics serves the agent's Prometheus metrics.
func (a *Agent) Metrics() http.Handler { return a.metrics.Handler() }

var _ api.Source = (*Agent)(nil)

// RedirectTarget is where users of the redirect paths go: the configured
// load balancer, or the active node's backend.
func (a *Agent) RedirectTarget() (string, bool) {
	if a.cfg.Redirect.To != "" {
		return a.cfg.Redirect.To, true
	}
	l := a.Snapshot().Leader
	if a.Serving() {
		l.Node = a.node.Name // the watch may not have shown our own win yet
	}
	if l.None() {
		return "", false
	}
	n, ok := a.cfg.NodeByName(l.Node)
	if !ok || n.Backend == "" {
		return "", false
	}
	return "http://" + n.Backend, true
}
