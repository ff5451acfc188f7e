package viplab

import (
	"testing"
	"time"
)

// TestSamplerSeesOverlapBetweenLooks (review of the freeze tests): two
// nodes hold the VIP at once for 200 ms, each looked at every 10 ms (each
// look 0.3 ms), out of phase, as the per-node sampling goroutines are. The
// looks themselves never overlap, so held alone says nothing; the runs of
// looks (spans) must show it. A clean handover (the first node's address
// gone before the second's came) must not count.
func TestSamplerSeesOverlapBetweenLooks(t *testing.T) {
	t0 := time.Now()
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	// a holds [0, 500) ms; b from 300 ms (overlap) or 520 ms (handover).
	for _, tc := range []struct {
		bFrom   float64
		overlap bool
	}{{300, true}, {520, false}} {
		s := &sampler{}
		ra, rb := -1, -1
		for ms := 0.0; ms < 1000; ms += 10 {
			a, b := ms, ms+5 // out of phase
			s.record("a", &ra, at(a), at(a), at(a+0.3), a+0.3 < 500, false)
			s.record("b", &rb, at(b), at(b), at(b+0.3), b >= tc.bFrom, false)
		}
		_, _, byLooks := s.overlaps(s.held)
		_, _, bySpans := s.overlaps(s.spans)
		if bySpans != tc.overlap {
			t.Errorf("b from %v ms: spans %v, want %v (looks alone: %v)", tc.bFrom, bySpans, tc.overlap, byLooks)
		}
		t.Logf("b from %v ms: overlap by looks %v, by spans %v", tc.bFrom, byLooks, bySpans)
	}
}
