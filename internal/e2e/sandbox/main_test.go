// Package sandbox holds the end-to-end tests that run the drill's
// scenarios on its sandbox (internal/drill) and hold them to their
// targets. They are a package of their own, apart from internal/e2e and
// internal/e2e/chaos, so that `go test -p 2 ./...` runs them beside the
// other end-to-end tests instead of after them.
package sandbox

import (
	"testing"

	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }
