package check

import (
	"context"
	"fmt"
	"syscall"

	"github.com/haven-ha/haven/internal/expand"
)

// diskCheck passes while the file system holding path has enough free
// space for unprivileged writers (statfs's f_bavail): a nearly full node is
// not eligible, and an active hands over before its disk fills.
type diskCheck struct {
	probe
	path     string
	minBytes int64
	minPct   float64
	statfs   func(path string, st *syscall.Statfs_t) error
}

func newDiskCheck(c Options, vars map[string]string) (Checker, error) {
	p := expand.String(c.Disk.Path, vars)
	if p == "" {
		return nil, fmt.Errorf("check %q: disk path is empty", c.Name)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = c.Interval
	}
	base := probe{name: c.Name, timeout: timeout}
	if base.name == "" {
		base.name = "disk " + p
	}
	return &diskCheck{probe: base, path: p, minBytes: c.Disk.MinFreeBytes, minPct: c.Disk.MinFreePercent, statfs: syscall.Statfs}, nil
}

// Check asks statfs in a goroutine of its own: on a hung mount (NFS, a
// dead FUSE daemon) statfs never returns, and the check must still fail at
// its timeout rather than keep its last pass for ever (and hold up the
// agent's shutdown). A hung call's goroutine stays until the kernel lets it go.
func (d *diskCheck) Check(ctx context.Context) error {
	type answer struct {
		st  syscall.Statfs_t
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		var a answer
		a.err = d.statfs(d.path, &a.st)
		ch <- a
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		return d.fail(ctx, "disk "+d.path, ctx.Err())
	}
	if a.err != nil {
		return d.fail(ctx, "disk "+d.path, a.err)
	}
	free, total := diskSpace(a.st)
	return diskVerdict(d.path, free, total, d.minBytes, d.minPct)
}

func diskSpace(st syscall.Statfs_t) (free, total uint64) {
	bs := uint64(st.Bsize) //nolint:gosec // never negative
	return st.Bavail * bs, st.Blocks * bs
}

// diskVerdict is the pure rule: nil when free bytes of total meet both limits.
func diskVerdict(path string, free, total uint64, minBytes int64, minPct float64) error {
	pct := 100.0
	if total > 0 {
		pct = float64(free) * 100 / float64(total)
	}
	if minBytes > 0 && free < uint64(minBytes) {
		return fmt.Errorf("disk %s: %s free (%.1f%%), below min_free_bytes %s; free space there", path, human(free), pct, human(uint64(minBytes)))
	}
	if minPct > 0 && pct < minPct {
		return fmt.Errorf("disk %s: %s free (%.1f%%), below min_free_percent %g; free space there", path, human(free), pct, minPct)
	}
	return nil
}

func human(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
