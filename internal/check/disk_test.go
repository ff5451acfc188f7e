package check

import (
	"context"
	"strings"
	"syscall"
	"testing"
)

func TestDiskVerdict(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		free, total uint64
		minB        int64
		minP        float64
		want        string
	}{
		{10 * gib, 100 * gib, gib, 5, ""},
		{gib / 2, 100 * gib, gib, 0, "512.0 MiB free (0.5%), below min_free_bytes 1.0 GiB"},
		{4 * gib, 100 * gib, 0, 5, "4.0 GiB free (4.0%), below min_free_percent 5"},
		{4 * gib, 100 * gib, 0, 0, ""},
		{0, 0, 0, 5, ""}, // a file system that reports no size: nothing to judge
	}
	for _, c := range cases {
		err := diskVerdict("/r", c.free, c.total, c.minB, c.minP)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%d of %d: %v, want a pass", c.free, c.total, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%d of %d: %v, want %q", c.free, c.total, err, c.want)
		}
	}
}

func TestDiskCheck(t *testing.T) {
	dir := t.TempDir()
	ok, err := New(Options{Name: "d", Disk: &Disk{Path: "${D}", MinFreeBytes: 1}}, map[string]string{"D": dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := ok.Check(context.Background()); err != nil {
		t.Errorf("1 byte free wanted: %v", err)
	}
	full, _ := New(Options{Name: "d", Disk: &Disk{Path: dir, MinFreeBytes: 1 << 60}}, nil)
	if err := full.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "below min_free_bytes") {
		t.Errorf("an exabyte free wanted: %v", err)
	}
	// A nearly full file system, as statfs reports it.
	d := full.(*diskCheck)
	d.minBytes, d.minPct = 0, 5
	d.statfs = func(_ string, st *syscall.Statfs_t) error {
		st.Bsize, st.Blocks, st.Bavail = 4096, 1000, 10
		return nil
	}
	if err := d.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "(1.0%)") {
		t.Errorf("1%% free: %v", err)
	}
	missing, _ := New(Options{Name: "d", Disk: &Disk{Path: dir + "/nope", MinFreeBytes: 1}}, nil)
	if err := missing.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing path: %v", err)
	}
}
