// Package sandbox holds the end-to-end tests that run on the drill's
// sandbox (internal/drill): the drill's scenarios held to their targets
// and the chaos suite. They are a package of their own, apart from
// internal/e2e, so that `go test -p 2 ./...` runs them beside the other
// end-to-end tests instead of after them.
package sandbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !harness.Until(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// artifactsDir is where a failed run's history is kept after the test:
// $HAVEN_ARTIFACTS, or internal/e2e/sandbox/artifacts (ignored by git).
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
