package folders

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/haven-ha/haven/internal/ha"
)

// TestWatchLimitIsSurfaced: when inotify's watch limit is reached the
// folder's status, an event, the log and haven_folder_watched say so and
// what to do (raise fs.inotify.max_user_watches); files still ship, found
// by the scan. Before, the error was dropped and the files came up to a
// scan interval late with no word why.
func TestWatchLimitIsSurfaced(t *testing.T) {
	t.Parallel()
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond}, time.Minute, func(a, _ string) {
		if err := os.MkdirAll(filepath.Join(a, "many"), 0o755); err != nil {
			t.Fatal(err)
		}
	}, func(o *Options) {
		o.addWatch = func(dir string) error {
			if filepath.Base(dir) == "many" {
				return fmt.Errorf("inotify_add_watch: %w", syscall.ENOSPC)
			}
			return nil
		}
	})
	select {
	case ev := <-drainTo(p.events, func(ev ha.Event) bool { return strings.Contains(ev.Reason, "watch limit") }):
		if !strings.Contains(ev.Reason, "fs.inotify.max_user_watches") || !strings.Contains(ev.Reason, "sysctl") {
			t.Errorf("event %q does not say what to raise", ev.Reason)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no event for the watch limit")
	}
	var warned bool
	for _, st := range p.a.Stats() {
		if st.Peer == "" && strings.Contains(st.Error, "max_user_watches") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("status does not show the watch limit: %+v", p.a.Stats())
	}
	if v := testutil.ToFloat64(p.a.m.watchOK.WithLabelValues("rec")); v != 0 {
		t.Errorf("haven_folder_watched = %v, want 0", v)
	}
	if err := os.WriteFile(filepath.Join(p.dirA, "many", "x"), []byte("found by the scan"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unwatched directory's file on n2", 20*time.Second, func() bool {
		return sameContent(filepath.Join(p.dirA, "many", "x"), filepath.Join(p.dirB, "many", "x"))
	})
}
