package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/config"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// TestLockDelay: an agent that wins the key after it went without a record
// (the previous holder n9's lease revoked by a frozen etcd leader, say)
// waits lease_ttl from when it saw the key vacant before it
// acts, and says so (log, event, metric, status record); with a record of
// the expiry, or lock_delay: off, it acts at once.
func TestLockDelay(t *testing.T) {
	t.Parallel()
	gone := ha.Tenure{Epoch: 5, Node: "n9"}
	for _, tc := range []struct {
		name   string
		tenure ha.Tenure
		extra  string
		waits  bool
	}{
		{"key gone without a record", gone, "", true},
		{"expiry recorded by the revoker", ha.Tenure{Epoch: 5, Node: "n9", Ended: ha.TenureExpired}, "", false},
		{"lock_delay off", gone, "lock_delay: off\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yaml := fmt.Sprintf("cluster: ld\ninsecure: true\ndata_dir: %s\n%snodes:\n  - {name: n1, api: '127.0.0.1:1', peer: '127.0.0.1:2', client: '127.0.0.1:3', backend: '127.0.0.1:4'}\n",
				t.TempDir(), tc.extra)
			cfg, err := config.Parse(filepath.Join(t.TempDir(), "haven.yaml"), []byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			var logs syncbuf.Buffer
			st := memstore.Early{Client: memstore.New(clock.Real{}).Client(), Tenure: tc.tenure}
			a, err := New(cfg, cfg.Nodes[0], st, clock.Real{}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = a.Run(ctx) }()
			defer func() { cancel(); <-done }()
			defer func() {
				if t.Failed() {
					t.Logf("log:\n%s", logs.String())
				}
			}()

			waitFor(t, 20*time.Second, "the key won", func() bool { return a.State().Holding() })
			won := time.Now()
			sawWait := false
			waitFor(t, 20*time.Second, "active", func() bool {
				if rec := a.Record(); rec.LockDelay != nil && !rec.LockDelay.Until.IsZero() && strings.Contains(rec.Why, "lock delay") {
					sawWait = true
				}
				return a.State().Role == ha.RoleActive
			})
			took := time.Since(won)
			delay := cfg.Timing.LeaseTTL
			waited := strings.Contains(logs.String(), "waiting for the old active's lease to run out")
			if !tc.waits {
				if waited || a.LastLockDelay() != nil {
					t.Fatalf("waited on the lock-delay (took %s)", took)
				}
				return
			}
			if !waited || !sawWait {
				t.Fatalf("no lock-delay wait logged (%t) or shown in the status record (%t)", waited, sawWait)
			}
			// The wait counts from when the key was seen vacant, before
			// the campaign: at most delay after the win, most of it.
			if took < delay/2 {
				t.Fatalf("active %s after winning, want about lease_ttl = %s", took, delay)
			}
			ld := a.LastLockDelay()
			if ld == nil || ld.Waited < delay/2 || ld.Waited > delay+500*time.Millisecond || !strings.Contains(ld.Reason, "n9") { // a timer fires late on a loaded machine
				t.Fatalf("LastLockDelay = %+v, want a wait of up to %s naming n9", ld, delay)
			}
			if rec := a.Record(); rec.LockDelay == nil || rec.LockDelay.Waited != ld.Waited {
				t.Fatalf("status record's lock delay = %+v, want %+v", rec.LockDelay, ld)
			}
			if n := a.metrics.lockDelay; histCount(t, a, "haven_lock_delay_seconds") != 1 || n == nil {
				t.Fatal("haven_lock_delay_seconds did not count the wait")
			}
		})
	}
}

// histCount is the sample count of the agent's histogram name.
func histCount(t *testing.T, a *Agent, name string) uint64 {
	t.Helper()
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
