// Package e2etest is the harness that haven's end-to-end tests share
// (internal/e2e and its chaos and sandbox packages, and the packages that
// test themselves on a whole cluster: folders, sessions/clients): the
// drill's sandbox built from the binary under test, waiting on a
// condition, and where a failed run's files are kept.
package e2etest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/harness"
)

// NewSandbox builds the drill's sandbox with o (o.Dir, when empty: a
// temporary folder of t's), giving it three minutes, and closes it at the
// end of t, after logging the tail of its logs if t failed. A sandbox that
// does not come up fails t with the tail of each process's log (the
// sandbox has stopped them; their logs stay in o.Dir until t ends), so a
// failure at the start says why. With o.Netns it needs root to create the
// network namespaces (CI runs the tests as root).
func NewSandbox(t *testing.T, o drill.SandboxOptions) *drill.Sandbox {
	t.Helper()
	if o.Netns && os.Geteuid() != 0 {
		t.Fatal("the drill tests need root to create network namespaces; run ./scripts/test as root (CI does)")
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := drill.NewSandbox(ctx, o)
	if err != nil {
		t.Fatalf("%v\nsandbox logs:\n%s", err, drill.LogTails(o.Dir, 6000))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sandbox logs:\n%s", sb.LogTail(6000))
		}
		sb.Close()
	})
	return sb
}

// WaitFor polls cond every 20ms until it holds or d passes, and fails t
// then.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !harness.Until(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// ArtifactsDir is an empty folder for what a test keeps after it ends
// (screenshots, downloads, a failed run's history): $HAVEN_ARTIFACTS/<test
// name>, or artifacts/<test name> in the test's package folder (ignored
// by git).
func ArtifactsDir(t *testing.T) string {
	dir := os.Getenv("HAVEN_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	dir, _ = filepath.Abs(filepath.Join(dir, t.Name()))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
