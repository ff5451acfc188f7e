package lockdelay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
)

func TestDecide(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	on := lockdelay.Options{Enabled: true, LeaseTTL: 2 * time.Second, FenceMargin: 200 * time.Millisecond}
	seen := clk.Now()
	clk.Advance(300 * time.Millisecond) // the campaign took this long after the key was seen vacant
	now := clk.Now()
	old := ha.Tenure{Epoch: 7, Node: "n1"}
	for _, tc := range []struct {
		name string
		o    lockdelay.Options
		node string
		t    ha.Tenure
		wait time.Duration
		why  string
	}{
		{"off", lockdelay.Options{LeaseTTL: 2 * time.Second}, "n2", old, 0, "off"},
		{"no record, a key seen (held by an older haven)", on, "n2", ha.Tenure{}, 1700 * time.Millisecond, "record is of epoch 0"},
		{"resigned", on, "n2", ha.Tenure{Epoch: 7, Node: "n1", Ended: ha.TenureResigned}, 0, "resigned"},
		{"expired by haven's revoker", on, "n2", ha.Tenure{Epoch: 7, Node: "n1", Ended: ha.TenureExpired}, 0, "expired"},
		{"own earlier tenure", on, "n1", old, 0, "own"},
		{"no record: wait", on, "n2", old, 1700 * time.Millisecond, "waiting for the old active's lease to run out"},
		{"resigned but unsettled", on, "n2", ha.Tenure{Epoch: 7, Node: "n1", Ended: ha.TenureResigned, Unsettled: true}, 1700 * time.Millisecond, "never settled"},
		{"expired but unsettled", on, "n2", ha.Tenure{Epoch: 7, Node: "n1", Ended: ha.TenureExpired, Unsettled: true}, 1700 * time.Millisecond, "never settled"},
		{"record older than the key that went", on, "n2", ha.Tenure{Epoch: 3, Node: "n1", Ended: ha.TenureResigned}, 1700 * time.Millisecond, "record is of epoch 3"},
		{"own but unsettled", on, "n1", ha.Tenure{Epoch: 7, Node: "n1", Unsettled: true}, 1700 * time.Millisecond, "never settled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := lockdelay.Decide(tc.o, tc.node, lockdelay.Vacancy{Tenure: tc.t, Since: seen, Epoch: 7}, now)
			if d.Wait != tc.wait || !d.Until.Equal(now.Add(tc.wait)) || !strings.Contains(d.Reason, tc.why) {
				t.Fatalf("Decide = %+v, want wait %s and a reason with %q", d, tc.wait, tc.why)
			}
		})
	}
	if d := lockdelay.Decide(on, "n2", lockdelay.Vacancy{Since: seen}, now); d.Wait != 0 || d.Reason != "no earlier tenure" {
		t.Fatalf("Decide on a new cluster = %+v, want no wait", d)
	}
	// Long after the vacancy: nothing left to wait.
	clk.Advance(5 * time.Second)
	if d := lockdelay.Decide(on, "n2", lockdelay.Vacancy{Tenure: old, Since: seen}, clk.Now()); d.Wait != 0 {
		t.Fatalf("Decide long after the vacancy = %+v, want no wait", d)
	}
}
