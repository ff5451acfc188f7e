package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/redundancy"
)

// monitorEvery is how often the agent judges the cluster's redundancy.
const monitorEvery = 2 * time.Second

// monitor judges the cluster's redundancy every monitorEvery until ctx
// ends: it lists the store's members (embedded etcd), keeps the judgement
// for /status, feeds the metrics, and records a change in the history.
// Only the active node records it, so the history holds one line per
// change and not one per node; a node that takes over in a degraded
// cluster records that once.
func (a *Agent) monitor(ctx context.Context) {
	var prev redundancy.State
	wasActive := false
	for {
		var members []ha.Member
		if a.cfg.Store.Backend == config.BackendEmbedded {
			mctx, cancel := context.WithTimeout(ctx, time.Second)
			ms, err := a.Members(mctx)
			cancel()
			if err == nil {
				members = ms
			}
		}
		a.members.Store(&members)
		r := *a.Status().Redundancy
		a.metrics.cluster.set(r, members)
		active := a.State().Role == ha.RoleActive
		switch {
		case !active || prev == "":
		case r.State != prev:
			a.record(ha.Event{Kind: "redundancy", From: string(prev), To: string(r.State), Reason: strings.Join(r.Reasons, "; ")})
		case !wasActive && r.State != redundancy.OK:
			// Just took over, in a cluster already short of redundancy
			// (the change may have happened while the old active was
			// going): say so once from here.
			a.record(ha.Event{Kind: "redundancy", To: string(r.State), Reason: strings.Join(r.Reasons, "; ")})
		}
		prev, wasActive = r.State, active
		select {
		case <-ctx.Done():
			return
		case <-a.clk.After(monitorEvery):
		}
	}
}

// dbWarnAt: status warns when a store member's database reaches this
// share of its quota.
const dbWarnAt = 0.8

// storeWarnings are the warnings about the embedded etcd members monitor
// last listed: a database at dbWarnAt of its quota or more, and a raised
// NOSPACE alarm. At its quota etcd refuses every write (puts,
// transactions that write, new leases): no promotion, no session write,
// no status record, until the database is compacted and defragmented and
// the alarm disarmed (docs/sessions.md, "What bounds etcd's size").
func (a *Agent) storeWarnings() []string {
	p := a.members.Load()
	if p == nil {
		return nil
	}
	return dbWarnings(*p)
}

func dbWarnings(members []ha.Member) []string {
	var out []string
	for _, m := range members {
		name := m.Name
		if name == "" {
			name = m.Peer
		}
		nospace := false
		for _, al := range m.Alarms {
			nospace = nospace || strings.Contains(al, "NOSPACE")
		}
		switch {
		case nospace:
			out = append(out, fmt.Sprintf("etcd member %s raised the NOSPACE alarm: its database (%d MiB) reached its quota (%d MiB), and etcd refuses every write (no promotion, no session write) until it is compacted, defragmented and the alarm disarmed (docs/sessions.md, \"What bounds etcd's size\").", name, m.DBBytes>>20, m.DBQuotaBytes>>20))
		case m.DBQuotaBytes > 0 && float64(m.DBBytes) >= dbWarnAt*float64(m.DBQuotaBytes):
			out = append(out, fmt.Sprintf("etcd member %s's database is %d MiB, %.0f%% of its %d MiB quota (%d MiB in use): at the quota etcd refuses every write, the election's included (docs/sessions.md, \"What bounds etcd's size\").", name, m.DBBytes>>20, 100*float64(m.DBBytes)/float64(m.DBQuotaBytes), m.DBQuotaBytes>>20, m.DBInUseBytes>>20))
		}
	}
	return out
}

// redundancy judges st with the members monitor last listed.
func (a *Agent) redundancy(st api.Status) *redundancy.Report {
	var members []ha.Member
	if p := a.members.Load(); p != nil {
		members = *p
	}
	r := redundancy.Assess(redundancyInput(st, members))
	return &r
}

// redundancyInput turns a status into the redundancy judgement's input.
func redundancyInput(st api.Status, members []ha.Member) redundancy.Input {
	in := redundancy.Input{Active: st.Leader.Node, Members: members}
	for _, n := range st.Nodes {
		in.Nodes = append(in.Nodes, redundancy.Node{Name: n.Name, Role: n.Role, Eligible: n.Eligible, Witness: n.Witness, Why: n.Why})
	}
	return in
}

// clusterMetrics are the gauges of the cluster's redundancy and the
// store's members, set by monitor.
type clusterMetrics struct {
	state         *prometheus.GaugeVec
	degraded      prometheus.Gauge
	standbys      prometheus.Gauge
	wantStandbys  prometheus.Gauge
	memberHealthy *prometheus.GaugeVec
	memberLeader  *prometheus.GaugeVec
	quorum        prometheus.Gauge
	memberDB      *prometheus.GaugeVec
	memberDBInUse *prometheus.GaugeVec
	memberDBQuota *prometheus.GaugeVec
}

func newClusterMetrics(reg *prometheus.Registry, a *Agent, m *Metrics) *clusterMetrics {
	c := &clusterMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_cluster_redundancy", Help: "1 for the cluster's redundancy state now (ok, degraded, no-active), as this agent judges it.",
		}, []string{"state"}),
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_cluster_degraded", Help: "1 when the cluster has lost redundancy or has no active node: fewer eligible standbys than nodes, or the store's quorum at its minimum.",
		}),
		standbys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_cluster_standbys_ready", Help: "Nodes that are eligible standbys now.",
		}),
		wantStandbys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_cluster_standbys_configured", Help: "Nodes that should be eligible standbys: every node but the active and the witnesses.",
		}),
		memberHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_store_member_healthy", Help: "1 when the embedded etcd member answers a status request.",
		}, []string{"member"}),
		memberLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_store_member_leader", Help: "1 for the embedded etcd member that leads raft.",
		}, []string{"member"}),
		quorum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_store_quorum", Help: "Members the embedded etcd needs for a quorum (0: not embedded etcd).",
		}),
		memberDB: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_store_member_db_bytes", Help: "The embedded etcd member's database file, in bytes: what etcd checks against its quota (it refuses writes at the quota).",
		}, []string{"member"}),
		memberDBInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_store_member_db_in_use_bytes", Help: "The part of the embedded etcd member's database file in use (the rest is free pages, reused for new writes).",
		}, []string{"member"}),
		memberDBQuota: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_store_member_db_quota_bytes", Help: "The embedded etcd member's database quota, in bytes.",
		}, []string{"member"}),
	}
	v := buildLabels()
	reg.MustRegister(c.state, c.degraded, c.standbys, c.wantStandbys, c.memberHealthy, c.memberLeader, c.quorum, c.memberDB, c.memberDBInUse, c.memberDBQuota,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_lease_remaining_seconds", Help: "How long the store keeps this node's session without another renewal (0: no session). The active self-fences before it reaches 0.",
		}, func() float64 {
			st := a.State()
			if !st.SessionOK {
				return 0
			}
			return max(0, st.ValidUntil.Sub(a.clk.Now()).Seconds())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_store_reachable", Help: "1 when this node's last lease renewal reached the store.",
		}, func() float64 {
			if m.storeOK.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_leader_known", Help: "1 when this node knows who holds the active role: it has seen the store, reached it within the lease, and its watch of the store is not starting over (leader_known in /status).",
		}, func() float64 {
			if a.leaderUnknown(a.clk.Now()) == "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_build_info", Help: "1, with haven's version, VCS revision and Go version as labels.",
			ConstLabels: prometheus.Labels{"version": v.version, "revision": v.revision, "goversion": v.goVersion},
		}, func() float64 { return 1 }),
	)
	return c
}

func (c *clusterMetrics) set(r redundancy.Report, members []ha.Member) {
	for _, s := range []redundancy.State{redundancy.OK, redundancy.Degraded, redundancy.NoActive} {
		v := 0.0
		if r.State == s {
			v = 1
		}
		c.state.WithLabelValues(string(s)).Set(v)
	}
	if r.State == redundancy.OK {
		c.degraded.Set(0)
	} else {
		c.degraded.Set(1)
	}
	c.standbys.Set(float64(r.Standbys))
	c.wantStandbys.Set(float64(r.WantStandbys))
	c.quorum.Set(float64(r.Quorum))
	c.memberHealthy.Reset()
	c.memberLeader.Reset()
	c.memberDB.Reset()
	c.memberDBInUse.Reset()
	c.memberDBQuota.Reset()
	for _, m := range members {
		name := m.Name
		if name == "" {
			name = m.Peer
		}
		c.memberHealthy.WithLabelValues(name).Set(b2f(m.Healthy))
		c.memberLeader.WithLabelValues(name).Set(b2f(m.Leader))
		if m.DBQuotaBytes > 0 {
			c.memberDB.WithLabelValues(name).Set(float64(m.DBBytes))
			c.memberDBInUse.WithLabelValues(name).Set(float64(m.DBInUseBytes))
			c.memberDBQuota.WithLabelValues(name).Set(float64(m.DBQuotaBytes))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type buildVersion struct{ version, revision, goVersion string }

// buildLabels is what haven_build_info shows: Version as the CLI set it,
// and the VCS revision and Go version from the build info.
func buildLabels() buildVersion {
	v := buildVersion{version: Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.revision = s.Value
			}
		}
	}
	return v
}
