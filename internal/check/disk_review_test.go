package check

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiskCheckHungMountFails: a statfs that never returns (a hard NFS
// mount whose server is gone) fails the check at its timeout. Before, the
// probe waited for ever: the check kept its last pass, so a node whose
// recordings disk had gone stayed eligible, and the runner never stopped.
func TestDiskCheckHungMountFails(t *testing.T) {
	c, err := New(Options{Name: "d", Timeout: 50 * time.Millisecond, Disk: &Disk{Path: t.TempDir(), MinFreeBytes: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	defer close(hung)
	c.(*diskCheck).statfs = func(string, *syscall.Statfs_t) error { <-hung; return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Check(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("hung statfs: %v, want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the disk check still waits on a hung statfs after 20 s (timeout 50 ms)")
	}
}
