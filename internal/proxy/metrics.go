package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics, in a registry of their own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	errs     *prometheus.CounterVec
	retries  prometheus.Counter
	hold     prometheus.Histogram
	latency  *prometheus.HistogramVec
	targetG  *prometheus.GaugeVec

	// byCode holds each node's request counters by status code (and ""'s,
	// for the proxy's own answers), filled as codes appear, so that the
	// hot path neither builds a label key nor looks one up. Read-only map.
	byCode map[string]*codeCounters
}

// codeCounters are one backend's request counters, indexed by status code
// (0 for a TCP connection).
type codeCounters [600]atomic.Pointer[prometheus.Counter]

func newMetrics(p *Proxy) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haven_proxy_requests_total", Help: "Requests answered, by backend node and status code (backend \"\" when none was reached).",
		}, []string{"backend", "code"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haven_proxy_errors_total", Help: "Failures, by kind: connect, no_response, mid_response, hold_timeout, queue_full, body_too_large, panic, tcp_dial.",
		}, []string{"kind"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haven_proxy_retries_total", Help: "Requests sent again after a failure.",
		}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haven_proxy_hold_seconds", Help: "Time requests waited for a target.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "haven_proxy_request_seconds", Help: "Time to the response's headers from the backend, by node.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend"}),
		targetG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haven_proxy_target_info", Help: "1 for each node the proxy sends traffic to now.",
		}, []string{"node"}),
	}
	m.reg.MustRegister(m.requests, m.errs, m.retries, m.hold, m.latency, m.targetG,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "haven_proxy_held_requests", Help: "Requests and connections waiting for a target now.",
		}, func() float64 { return float64(p.held.Load()) }))
	m.byCode = map[string]*codeCounters{"": new(codeCounters)}
	for _, n := range p.names {
		m.targetG.WithLabelValues(n).Set(0)
		m.byCode[n] = new(codeCounters)
	}
	return m
}

func (m *metrics) request(backend string, code int) {
	cc := m.byCode[backend]
	if cc == nil || code < 0 || code >= len(cc) {
		m.requests.WithLabelValues(backend, strconv.Itoa(code)).Inc()
		return
	}
	c := cc[code].Load()
	if c == nil {
		ctr := m.requests.WithLabelValues(backend, strconv.Itoa(code))
		cc[code].CompareAndSwap(nil, &ctr)
		c = cc[code].Load()
	}
	(*c).Inc()
}

func (m *metrics) fail(kind string) { m.errs.WithLabelValues(kind).Inc() }

func (m *metrics) target(node string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.targetG.WithLabelValues(node).Set(v)
}
