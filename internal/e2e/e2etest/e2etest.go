// Package chaos holds the chaos suite: random faults on the drill's
// sandbox (internal/drill) under client load, then the whole history
// checked for safety. It is a package of its own, apart from internal/e2e
// and internal/e2e/sandbox, so that `go test -p 2 ./...` runs its 100 s
// of faults beside the other end-to-end tests instead of after them.
package chaos

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

// newDrillSandbox builds the drill's sandbox from the binary under test, in
// network namespaces (the tests run as root in CI), with the timings loosened
// for a loaded machine.
func newDrillSandbox(t *testing.T) *drill.Sandbox {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the drill tests need root to create network namespaces; run ./scripts/test as root (CI does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := drill.NewSandbox(ctx, drill.SandboxOptions{Bin: havenBin, Dir: t.TempDir(), Netns: true, Timing: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sandbox logs:\n%s", sb.LogTail(6000))
		}
		sb.Close()
	})
	return sb
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !harness.Until(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// artifactsDir is where a failed run's history is kept after the test:
// $HAVEN_ARTIFACTS, or internal/e2e/chaos/artifacts (ignored by git).
func artifactsDir(t *testing.T) string {
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
