// Package testbin builds the haven binary once for a test package that runs
// it as real processes (the end-to-end tests, the VIP lab, the recipes, the
// session store's real clients).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main builds haven into a temporary folder, sets *bin to its path, runs
// the package's tests, removes the folder and exits with the tests' code.
// Call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "haven-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "haven")
	build := exec.Command("go", "build", "-o", *bin, "github.com/haven-ha/haven/cmd/haven")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haven:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Build builds haven into a temporary folder of t and returns its path:
// for a package whose real-process test sits among in-process ones, so
// that the others do not wait for a build (Main builds before any test).
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "haven")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/haven-ha/haven/cmd/haven").CombinedOutput()
	if err != nil {
		t.Fatalf("build haven: %v\n%s", err, out)
	}
	return bin
}
