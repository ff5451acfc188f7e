package sessions

import (
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the session store's Prometheus metrics.
type Metrics struct {
	ops     *prometheus.CounterVec
	latency prometheus.Histogram
	commits prometheus.Histogram
	batch   prometheus.Histogram
	expired prometheus.Counter
	refused *prometheus.CounterVec
	keys    prometheus.GaugeFunc
	bytes   prometheus.GaugeFunc
	clients prometheus.GaugeFunc
}

func newMetrics(s *Server) *Metrics {
	return &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haven_sessions_commands_total", Help: "Commands answered by this node's session store, by command.",
		}, []string{"command"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haven_sessions_command_seconds", Help: "Time from reading a command to sending its reply (a write's includes the store's commit).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haven_sessions_commit_seconds", Help: "Latency of the active's fenced commits to the store.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 2.5},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haven_sessions_commit_keys", Help: "Keys written per commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haven_sessions_expired_total", Help: "Expired keys the active removed from the store.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haven_sessions_refused_total", Help: "Write commands refused before they ran because they could not fit one store request, by reason (too_many_keys, key_too_long, too_large).",
		}, []string{"reason"}),
		keys: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_sessions_keys", Help: "Keys in this node's copy of the session store.",
		}, func() float64 { return float64(s.Stats().Keys) }),
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_sessions_bytes", Help: "Bytes of keys and values in this node's copy of the session store.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		clients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_sessions_clients", Help: "Open client connections to this node's session store.",
		}, func() float64 { return float64(s.clients.Load()) }),
	}
}

// Collectors returns the metrics, for the agent's registry.
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.ops, m.latency, m.commits, m.batch, m.expired, m.refused, m.keys, m.bytes, m.clients}
}

func (m *Metrics) observe(cmd string, d time.Duration) {
	m.ops.WithLabelValues(cmd).Inc()
	m.latency.Observe(d.Seconds())
}

// LogCollector exports the packed layout's state (docs/sessions.md): the
// layout in use, the log's entries and bytes, the snapshot's keys, bytes
// and age, the compactions, and whether the rolling-upgrade gate is open.
// stats reads the backend's log (etcd), ready the gate (PackedReady), now
// the agent's clock.
func LogCollector(stats func() ha.SessionLogStats, ready func() bool, now func() time.Time) prometheus.Collector {
	return &logCollector{stats: stats, ready: ready, now: now}
}

type logCollector struct {
	stats func() ha.SessionLogStats
	ready func() bool
	now   func() time.Time
}

var (
	logLayoutDesc = prometheus.NewDesc("haven_sessions_layout",
		"1 for the session store's layout in use in the coordination store (keys: one key per session; packed: a log and snapshots), 0 for the other.", []string{"layout"}, nil)
	logEntriesDesc = prometheus.NewDesc("haven_sessions_log_entries",
		"Group commits in the packed layout's log, not yet folded into a snapshot.", nil, nil)
	logBytesDesc = prometheus.NewDesc("haven_sessions_log_bytes",
		"Bytes of the packed layout's log.", nil, nil)
	snapKeysDesc = prometheus.NewDesc("haven_sessions_snapshot_keys",
		"Keys in the packed layout's current snapshot.", nil, nil)
	snapBytesDesc = prometheus.NewDesc("haven_sessions_snapshot_bytes",
		"Bytes of the packed layout's current snapshot.", nil, nil)
	snapAgeDesc = prometheus.NewDesc("haven_sessions_snapshot_age_seconds",
		"Age of the packed layout's current snapshot (absent while there is none).", nil, nil)
	compactionsDesc = prometheus.NewDesc("haven_sessions_compactions_total",
		"Compactions of the packed layout's log into a snapshot by this node.", nil, nil)
	packedReadyDesc = prometheus.NewDesc("haven_sessions_packed_ready",
		"1 when every configured node runs a version that reads the packed layout (the active may migrate to it), else 0.", nil, nil)
)

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{logLayoutDesc, logEntriesDesc, logBytesDesc, snapKeysDesc, snapBytesDesc, snapAgeDesc, compactionsDesc, packedReadyDesc} {
		ch <- d
	}
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for _, l := range []string{LayoutKeys, LayoutPacked} {
		ch <- prometheus.MustNewConstMetric(logLayoutDesc, prometheus.GaugeValue, boolFloat(st.Layout == l), l)
	}
	ch <- prometheus.MustNewConstMetric(logEntriesDesc, prometheus.GaugeValue, float64(st.LogEntries))
	ch <- prometheus.MustNewConstMetric(logBytesDesc, prometheus.GaugeValue, float64(st.LogBytes))
	ch <- prometheus.MustNewConstMetric(snapKeysDesc, prometheus.GaugeValue, float64(st.SnapshotKeys))
	ch <- prometheus.MustNewConstMetric(snapBytesDesc, prometheus.GaugeValue, float64(st.SnapshotBytes))
	if st.SnapshotAt > 0 {
		age := c.now().Sub(time.UnixMilli(st.SnapshotAt)).Seconds()
		ch <- prometheus.MustNewConstMetric(snapAgeDesc, prometheus.GaugeValue, max(age, 0))
	}
	ch <- prometheus.MustNewConstMetric(compactionsDesc, prometheus.CounterValue, float64(st.Compactions))
	ch <- prometheus.MustNewConstMetric(packedReadyDesc, prometheus.GaugeValue, boolFloat(c.ready()))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
