// Package chaos holds the chaos suite: random faults on the drill's
// sandbox (internal/drill) under client load, then the whole history
// checked for safety. It is a package of its own, apart from internal/e2e
// and internal/e2e/sandbox, so that `go test -p 2 ./...` runs its 100 s
// of faults beside the other end-to-end tests instead of after them.
package chaos

import (
	"testing"

	"github.com/haven-ha/haven/internal/testbin"
)

// havenBin is the binary under test, built once by TestMain.
var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }
