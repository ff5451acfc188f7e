package drill

import (
	"testing"
	"time"
)

// TestMonitorSeesOverlapBetweenSamples (review of the freeze tests): two
// nodes serve at once for 200 ms, each sampled every 10 ms (each answer
// 2 ms), out of phase, as the monitor's per-node goroutines are. The
// samples' windows never overlap, so the samples alone say nothing; their
// runs must. A clean handover must not count.
func TestMonitorSeesOverlapBetweenSamples(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, tc := range []struct {
		bFrom   float64 // a serves [0, 500) ms
		overlap bool
	}{{300, true}, {520, false}} {
		m := &monitor{t0: time.Now()}
		ra, rb := -1, -1
		add := func(node string, run *int, at float64, ok bool) {
			sent, recv := ms(at), ms(at+2)
			if ok {
				m.samples = append(m.samples, lbSample{node, sent, recv})
			}
			m.extend(node, run, sent, recv, ok)
		}
		for v := 0.0; v < 1000; v += 10 {
			add("a", &ra, v, v+2 < 500)
			add("b", &rb, v+5, v+5 >= tc.bFrom)
		}
		if got := m.overlap() != ""; got != tc.overlap {
			t.Errorf("b from %v ms: overlap %q, want one: %v", tc.bFrom, m.overlap(), tc.overlap)
		}
	}
}
