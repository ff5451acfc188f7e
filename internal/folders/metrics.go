package folders

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the folders' Prometheus series.
type metrics struct {
	files, bytes, oldest, behind *prometheus.GaugeVec
	lost, watchOK                *prometheus.GaugeVec
	sentFiles, sentBytes         *prometheus.CounterVec
}

func newMetrics() *metrics {
	fp := []string{"folder", "peer"}
	return &metrics{
		files:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_lag_files", Help: "Files of a replicated folder a standby lacks (on the active)."}, fp),
		bytes:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_lag_bytes", Help: "Bytes of the files a standby lacks (on the active)."}, fp),
		oldest:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_oldest_unshipped_seconds", Help: "Age of the oldest file a standby lacks (on the active)."}, fp),
		behind:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_behind", Help: "1 while a standby is behind sync.max_lag (on the active)."}, fp),
		lost:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_lost_files", Help: "Complete files of the old active this node lacked at its last promotion."}, []string{"folder"}),
		watchOK:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "haven_folder_watched", Help: "1 while the active watches every directory of a replicated folder with inotify; 0: it cannot (see the folder's status and events: raise fs.inotify.max_user_watches), changes are seen only by the periodic scan."}, []string{"folder"}),
		sentFiles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "haven_folder_shipped_files_total", Help: "Files shipped to a standby."}, fp),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "haven_folder_shipped_bytes_total", Help: "Bytes of the files shipped to a standby."}, fp),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.files, m.bytes, m.oldest, m.behind, m.lost, m.watchOK, m.sentFiles, m.sentBytes}
}

func (m *metrics) set(folder, peer string, lag Lag, behind bool) {
	m.files.WithLabelValues(folder, peer).Set(float64(lag.Files))
	m.bytes.WithLabelValues(folder, peer).Set(float64(lag.Bytes))
	m.oldest.WithLabelValues(folder, peer).Set(lag.Oldest.Seconds())
	b := 0.0
	if behind {
		b = 1
	}
	m.behind.WithLabelValues(folder, peer).Set(b)
}

func (m *metrics) drop(folder, peer string) {
	for _, g := range []*prometheus.GaugeVec{m.files, m.bytes, m.oldest, m.behind} {
		g.DeleteLabelValues(folder, peer)
	}
}

func (m *metrics) shipped(folder, peer string, n int64) {
	m.sentFiles.WithLabelValues(folder, peer).Inc()
	m.sentBytes.WithLabelValues(folder, peer).Add(float64(n))
}

// MetricNames lists the names of the folders' metrics (for tests of the
// monitoring files: the series exist only once a folder has a receiver).
func MetricNames() []string {
	ch := make(chan *prometheus.Desc, 16)
	go func() {
		for _, c := range newMetrics().collectors() {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		s := d.String() // Desc{fqName: "name", ...}
		if i := strings.Index(s, `fqName: "`); i >= 0 {
			rest := s[i+len(`fqName: "`):]
			names = append(names, rest[:strings.Index(rest, `"`)])
		}
	}
	return names
}
