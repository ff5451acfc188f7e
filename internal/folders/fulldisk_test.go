package folders

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestFullDiskMarksStandbyBehind: a standby whose disk is full (a 1 MiB
// tmpfs) refuses a file with "disk full"; the active marks it behind
// max_lag with that error (status and an event) and goes on; the partial
// file is not left taking the space; once the file is gone the standby
// catches up. A real ENOSPC, not a simulated one.
func TestFullDiskMarksStandbyBehind(t *testing.T) {
	t.Parallel()
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 50 * time.Millisecond}, time.Second, func(_, b string) {
		if err := os.MkdirAll(b, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", b).CombinedOutput(); err != nil {
			t.Fatalf("mount a 1 MiB tmpfs (the test needs root): %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", "-l", b).Run() })
	})
	if err := os.WriteFile(filepath.Join(p.dirA, "small"), []byte("fits"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the small file on n2", 20*time.Second, func() bool { return sameContent(filepath.Join(p.dirA, "small"), filepath.Join(p.dirB, "small")) })
	if err := os.WriteFile(filepath.Join(p.dirA, "big"), bytes.Repeat([]byte{7}, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-drainTo(p.events, func(ev ha.Event) bool { return strings.Contains(ev.Reason, "is behind") }):
		if !strings.Contains(ev.Reason, "disk full") || !strings.Contains(ev.Reason, "free space") {
			t.Errorf("behind event %q does not say the disk is full", ev.Reason)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no event for the standby falling behind; stats %+v", p.a.Stats())
	}
	st := p.a.Stats()
	if len(st) != 1 || !st[0].Behind || !strings.Contains(st[0].Error, "disk full") {
		t.Errorf("stats %+v; want n2 behind with the disk-full error", st)
	}
	partials, _ := os.ReadDir(p.dirB)
	for _, d := range partials {
		if !isPartial(d.Name()) {
			continue
		}
		if fi, err := d.Info(); err == nil && fi.Size() > 0 {
			t.Errorf("partial file %s (%d bytes) left taking the full disk's space", d.Name(), fi.Size())
		}
	}
	if err := os.Remove(filepath.Join(p.dirA, "big")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drainTo(p.events, func(ev ha.Event) bool { return strings.Contains(ev.Reason, "caught up") }):
	case <-time.After(20 * time.Second):
		t.Fatalf("no event for the standby catching up; stats %+v", p.a.Stats())
	}
}
