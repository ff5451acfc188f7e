package sessions

import (
	"time"

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
