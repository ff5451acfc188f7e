package folders

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/ha"
)

// TestSlowFileHoldsNothingBack: while one file's upload hangs (a big file
// whose fsync takes seconds on a busy disk), a small file that becomes
// complete meanwhile still reaches the standby, the standby is reported
// behind once the hung file is older than max_lag, and the list of complete
// files (a promotion's RPO report) still reaches it, naming the small
// file. Before, a sender waited for every upload of a round before it
// planned again: the small file, the lag and the list all waited for the
// slowest upload, and a kill -9 of the active then lost files closed more
// than max_lag before it without a "behind" and without naming them.
func TestSlowFileHoldsNothingBack(t *testing.T) {
	t.Parallel()
	const maxLag = 300 * time.Millisecond
	// The hung upload must outlast the waits below: no client timeout of 5 s.
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 20 * time.Millisecond}, maxLag, nil, func(o *Options) {
		o.Client = api.NewClient(api.ClientOptions{Token: pairToken, Timeout: 2 * time.Minute})
	})
	slow := "slow.bin"
	release := p.holdUpload(t, slow, 200<<10)
	if err := os.WriteFile(filepath.Join(p.dirA, "small.txt"), []byte("a small file closed after the slow one"), 0o644); err != nil {
		t.Fatal(err)
	}
	behind := drainTo(p.events, func(ev ha.Event) bool { return ev.To == "n2" && strings.Contains(ev.Reason, "is behind") })
	waitFor(t, "the small file on n2 while the slow one hangs", 10*time.Second, func() bool {
		return sameContent(filepath.Join(p.dirA, "small.txt"), filepath.Join(p.dirB, "small.txt"))
	})
	waitFor(t, "the list of complete files on n2, with the small file, while the slow one hangs", 10*time.Second, func() bool {
		src := p.b.recv["rec"].lastSource()
		if src == nil {
			return false
		}
		for _, e := range src.Entries {
			if e.Path == "small.txt" {
				return true
			}
		}
		return false
	})
	select {
	case ev := <-behind:
		if !strings.Contains(ev.Reason, slow) {
			t.Errorf("behind event %q does not name %s", ev.Reason, slow)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event for n2 falling behind while %s hangs; stats %+v", slow, p.a.Stats())
	}
	if st := p.a.Stats(); len(st) != 1 || !st[0].Behind || st[0].Files != 1 || st[0].OldestPath != slow {
		t.Errorf("stats while %s hangs: %+v; want n2 behind by that one file", slow, st)
	}
	// The metrics say the same.
	m := func(g *prometheus.GaugeVec) float64 { return testutil.ToFloat64(g.WithLabelValues("rec", "n2")) }
	if f, b, o, bh := m(p.a.m.files), m(p.a.m.bytes), m(p.a.m.oldest), m(p.a.m.behind); f != 1 || b != 200<<10 || o <= maxLag.Seconds() || bh != 1 {
		t.Errorf("metrics while %s hangs: lag %v files, %v bytes, oldest %vs, behind %v; want 1, %d, over %v, 1", slow, f, b, o, bh, 200<<10, maxLag.Seconds())
	}
	release()
	waitFor(t, "the slow file on n2 once let go", 20*time.Second, func() bool {
		return sameContent(filepath.Join(p.dirA, slow), filepath.Join(p.dirB, slow))
	})
	waitFor(t, "n2 in sync in the stats", 10*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Files == 0 && !st[0].Behind
	})
	if f, bh := m(p.a.m.files), m(p.a.m.behind); f != 0 || bh != 0 {
		t.Errorf("metrics once in sync: lag %v files, behind %v; want 0, 0", f, bh)
	}
}

// TestReceiverIsFedSoonOnceItSeesTheActive: a standby that answers but does
// not yet see this node as the active (an agent just restarted, whose
// member has not caught up with the store; a promotion not yet seen) is
// asked again at least every second, not after a backoff that doubled
// with each of its refusals up to 5 s: once it sees the active, the files
// follow within a second.
func TestReceiverIsFedSoonOnceItSeesTheActive(t *testing.T) {
	t.Parallel()
	var blind atomic.Bool // n2 does not see n1 as the active
	blind.Store(true)
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 20 * time.Millisecond}, time.Minute, nil, func(o *Options) {
		if o.Node == "n2" {
			leader := o.Leader
			o.Leader = func() ha.Leader {
				if blind.Load() {
					return ha.Leader{}
				}
				return leader()
			}
		}
	})
	if err := os.WriteFile(filepath.Join(p.dirA, "a.txt"), []byte("written while n2 does not see n1 active"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Six refusals: with a backoff doubling up to 5 s, 6.2 s of them and
	// the next try 5 s after the sixth; with tries every second at most,
	// 3.4 s and 1 s.
	waitFor(t, "six lists refused by n2", 20*time.Second, func() bool { return p.sources.Load() >= 6 })
	if _, err := os.Stat(filepath.Join(p.dirB, "a.txt")); err == nil {
		t.Fatal("n2 took a file while it did not see n1 as the active")
	}
	blind.Store(false)
	seen := time.Now()
	waitFor(t, "the file on n2 once it sees n1 active", 20*time.Second, func() bool {
		return sameContent(filepath.Join(p.dirA, "a.txt"), filepath.Join(p.dirB, "a.txt"))
	})
	if d := time.Since(seen); d > 3*time.Second {
		t.Errorf("the file reached n2 %s after it saw n1 active; want within 3 s (a try at least every second)", d.Round(time.Millisecond))
	}
}
