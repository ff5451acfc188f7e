package lockdelay_test

import (
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
)

// Two vacant snapshots in a row with tenure records of different epochs are
// two vacancies (a key won and lost between them was coalesced away): the
// lock-delay counts from the second, not from the first.
func TestVacancyRestartsOnANewTenure(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	tr := lockdelay.NewTracker(clk)
	vacant := tr.NoteVacancy(ha.Snapshot{Tenure: ha.Tenure{Epoch: 10, Node: "n1", Ended: ha.TenureResigned}}, false, 10)
	first := clk.Now()
	clk.Advance(time.Hour) // the standby's watch was cut off; n2 won epoch 20 meanwhile
	vacant = tr.NoteVacancy(ha.Snapshot{Tenure: ha.Tenure{Epoch: 20, Node: "n2"}}, vacant, 10)
	if !vacant {
		t.Fatal("the key is vacant")
	}
	v, _ := tr.Vacancy()
	if !v.Since.After(first) {
		t.Fatalf("vacancy since %s: the vacancy of epoch 20 was first seen an hour after the first one", v.Since)
	}
	o := lockdelay.Options{Enabled: true, LeaseTTL: 2 * time.Second, FenceMargin: 500 * time.Millisecond}
	if d := lockdelay.Decide(o, "n3", v, clk.Now()); d.Wait < o.LeaseTTL-o.FenceMargin {
		t.Fatalf("wait %s, want at least lease_ttl − fence_margin: n2's key went without a record (%s)", d.Wait, d.Reason)
	}
	// The same vacancy seen again keeps its start.
	clk.Advance(time.Second)
	tr.NoteVacancy(ha.Snapshot{Tenure: ha.Tenure{Epoch: 20, Node: "n2"}}, true, 10)
	if got, _ := tr.Vacancy(); !got.Since.Equal(v.Since) {
		t.Fatalf("the same vacancy restarted at %s (was %s)", got.Since, v.Since)
	}
}
