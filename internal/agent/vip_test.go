package agent

import (
	"testing"
	"time"
)

func TestVIPLifetime(t *testing.T) {
	now := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tt := range []struct {
		left, margin time.Duration
		ipv6         bool
		want         time.Duration
	}{
		{2 * time.Second, 300 * ms, false, time.Second},     // lan preset, just renewed
		{3 * time.Second, 500 * ms, false, 2 * time.Second}, // 3s lease
		{3 * time.Second, 500 * ms, true, 2 * time.Second},
		{1549 * ms, 300 * ms, false, 0}, // under a second would be left: keep the last lifetime
		{1550 * ms, 300 * ms, false, time.Second},
		{1799 * ms, 300 * ms, true, 0},
		{10 * time.Second, 2 * time.Second, false, 7 * time.Second}, // wan preset
		{-time.Second, 300 * ms, false, 0},
	} {
		got := vipLifetime(now.Add(tt.left), now, tt.margin, tt.ipv6)
		if got != tt.want {
			t.Errorf("left %s, margin %s, ipv6 %v: lifetime %s, want %s", tt.left, tt.margin, tt.ipv6, got, tt.want)
		}
		// The kernel may keep it lifetime + slack: still before the fence deadline.
		if slack := map[bool]time.Duration{false: 250 * ms, true: 500 * ms}[tt.ipv6]; got > 0 && got+slack > tt.left-tt.margin {
			t.Errorf("left %s: lifetime %s + slack %s outlives the fence deadline", tt.left, got, slack)
		}
	}
}
