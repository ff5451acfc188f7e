package agent

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
)

// Metrics are the agent's Prometheus metrics, in a registry of their own so
// that the embedded etcd's metrics do not flood the endpoint.
type Metrics struct {
	reg          *prometheus.Registry
	roleChanges  *prometheus.CounterVec
	promotions   prometheus.Counter
	renewSeconds prometheus.Histogram
	renewFails   prometheus.Counter
	healthyG     prometheus.Gauge
	leaderEpoch  prometheus.Gauge
	revokeAfter  prometheus.Histogram // revoke at expiry (#19)
	lockDelay    prometheus.Histogram // promotions that waited on the lock-delay (lockdelay.go)
	// confirmed: renewals sent after a pause of this process, which count
	// only once the store confirms them (package lease), by outcome.
	confirmed *prometheus.CounterVec

	// Monitoring (#17): elections apart from failovers, the store's
	// reachability, the cluster's redundancy (monitor.go).
	elections prometheus.Counter
	cluster   *clusterMetrics
	storeOK   atomic.Bool
	// otherLeader: this agent has seen another node active, so its next
	// promotion replaces one (a failover), unless it is a switchover.
	otherLeader  atomic.Bool
	self         string
	switchoverIn func() bool
}

func newMetrics(a *Agent) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		roleChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haven_role_changes_total", Help: "Role changes of this node, by new role.",
		}, []string{"role"}),
		promotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haven_failovers_total", Help: "Times this node took over from another active node unplanned (not the first election, not a switchover).",
		}),
		renewSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haven_lease_renewal_seconds", Help: "Latency of successful lease renewals.",
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		renewFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haven_lease_renewal_failures_total", Help: "Lease renewals that failed.",
		}),
		healthyG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_service_healthy", Help: "1 when every health check of the local service passes.",
		}),
		leaderEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haven_leader_epoch", Help: "Epoch of the current leader as seen in the store (0: none).",
		}),
	}
	m.revokeAfter = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "haven_lease_revoked_at_expiry_seconds",
		Help:    "How long after a dead active's lease expired this node's etcd member, leading raft, revoked it (embedded etcd; the count is the number of such revocations).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	reg.MustRegister(m.revokeAfter)
	m.lockDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "haven_lock_delay_seconds",
		Help:    "How long a promotion of this node waited for the old active's lease to run out (lock_delay: the key went without a record of resign or expiry; the count is the number of such waits).",
		Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 16, 32},
	})
	reg.MustRegister(m.lockDelay)
	m.confirmed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "haven_lease_renewals_confirmed_total",
		Help: "Lease renewals sent after a pause of this process (a gap over 4/5 of etcd_election), which count only once the store confirms them, by result: confirmed (granted and proved current), unconfirmed (answered but not proved: the read after the keep-alive failed or came in another raft term; not counted), lost (the session had expired), error (no answer).",
	}, []string{"result"})
	for _, r := range confirmResults {
		m.confirmed.WithLabelValues(r)
	}
	reg.MustRegister(m.confirmed)
	m.self = a.node.Name
	m.switchoverIn = func() bool {
		sw := a.State().Switchover
		return sw.ID != "" && sw.To == a.node.Name
	}
	m.elections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "haven_elections_total", Help: "Times this node was promoted to active, for any reason (first election, failover, switchover, promote).",
	})
	reg.MustRegister(m.elections)
	m.cluster = newClusterMetrics(reg, a, m)
	roles := []ha.Role{ha.RoleStarting, ha.RoleStandby, ha.RolePromoting, ha.RoleActive, ha.RoleDemoting, ha.RoleStopped}
	for _, r := range roles {
		r := r
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_role", Help: "1 for the role this node is in now.", ConstLabels: prometheus.Labels{"role": string(r)},
		}, func() float64 {
			if a.State().Role == r {
				return 1
			}
			return 0
		}))
	}
	reg.MustRegister(m.roleChanges, m.promotions, m.renewSeconds, m.renewFails, m.healthyG, m.leaderEpoch,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_epoch", Help: "Epoch this node holds the active role at (0 when not holding it).",
		}, func() float64 {
			st := a.State()
			if st.Holding() {
				return float64(st.Epoch)
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_serving", Help: "1 when /lb-check answers 200 on this node.",
		}, func() float64 {
			if a.Serving() {
				return 1
			}
			return 0
		}),
		newCheckCollector(a),
		containmentMetric(a),
		certCollector{a},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *Metrics) roleChanged(_, to ha.Role) {
	m.roleChanges.WithLabelValues(string(to)).Inc()
	if to == ha.RolePromoting {
		m.elections.Inc()
		if m.otherLeader.Load() && !m.switchoverIn() {
			m.promotions.Inc()
		}
	}
}

// answered counts one answer to a renewal (lease.Options.Answered).
func (m *Metrics) answered(r lease.Renewal) {
	m.renewal(r.Took, r.Err)
	if r.Confirmed {
		m.confirmed.WithLabelValues(confirmResult(r.Err)).Inc()
	}
}

// The results of haven_lease_renewals_confirmed_total.
var confirmResults = []string{"confirmed", "unconfirmed", "lost", "error"}

// confirmResult is the result label of a confirmed renewal that ended
// with err.
func confirmResult(err error) string {
	switch {
	case err == nil:
		return "confirmed"
	case errors.Is(err, ha.ErrUnconfirmed):
		return "unconfirmed"
	case errors.Is(err, ha.ErrSessionLost):
		return "lost"
	default:
		return "error"
	}
}

func (m *Metrics) renewal(d interface{ Seconds() float64 }, err error) {
	m.storeOK.Store(err == nil)
	if err != nil {
		m.renewFails.Inc()
		return
	}
	m.renewSeconds.Observe(d.Seconds())
}

func (m *Metrics) healthy(ok bool) {
	if ok {
		m.healthyG.Set(1)
	} else {
		m.healthyG.Set(0)
	}
}

func (m *Metrics) leader(l ha.Leader) {
	m.leaderEpoch.Set(float64(l.Epoch))
	if !l.None() && l.Node != m.self {
		m.otherLeader.Store(true)
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// checkCollector reports each health check's state at scrape time.
type checkCollector struct {
	a        *Agent
	up, fail *prometheus.Desc
}

func newCheckCollector(a *Agent) *checkCollector {
	return &checkCollector{
		a:    a,
		up:   prometheus.NewDesc("haven_check_up", "1 when the health check is passing (after rise/fall).", []string{"check"}, nil),
		fail: prometheus.NewDesc("haven_check_failures_total", "Failed runs of the health check.", []string{"check"}, nil),
	}
}

func (c *checkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up; ch <- c.fail }

func (c *checkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.a.health.Checks() {
		up := 0.0
		if s.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(c.fail, prometheus.CounterValue, float64(s.TotalFailures), s.Name)
	}
}

// RevokedAtExpiry records a revocation of the leader key's lease by this
// node's etcd member, after its expiry (etcdstore.Member.RevokeAtExpiry).
func (a *Agent) RevokedAtExpiry(after time.Duration) { a.metrics.revokeAfter.Observe(after.Seconds()) }
