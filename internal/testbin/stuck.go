package testbin

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// stuckDir is where Stuck and KeepLog keep the whole log of a process that did not
// stop, unless HAVEN_TEST_OUT names another folder.
const stuckDir = "haven-stuck"

// dumpStart finds the start of the Go runtime's goroutine dump that
// SIGQUIT writes to stderr.
var dumpStart = regexp.MustCompile(`(?m)^(SIGQUIT: quit|goroutine \d+ \[)`)

// Stuck reports a process that did not stop when asked, after the caller
// sent it SIGQUIT and waited for it to exit: it writes log (the process's
// whole output) to a file that outlives the test and logs its path, and
// logs the goroutine dump at the end of log in full, so that the failure
// can be diagnosed from the test's output alone. The test's own log of
// the process may then show only a tail.
func Stuck(t testing.TB, name, log string) {
	t.Helper()
	KeepLog(t, name, log)
	d := dump(log)
	if d == "" {
		t.Logf("---- %s wrote no goroutine dump ----", name)
		return
	}
	t.Logf("---- goroutine dump of %s (whole) ----\n%s", name, d)
}

// dump is the goroutine dump at the end of log, "" if there is none.
func dump(log string) string {
	loc := dumpStart.FindStringIndex(log)
	if loc == nil {
		return ""
	}
	return log[loc[0]:]
}

// KeepLog writes log, the whole output of the process called name, to a
// file that outlives the test (in HAVEN_TEST_OUT, else a folder under the
// temporary directory) and logs its path: a failed test's own output may
// show only a tail.
func KeepLog(t testing.TB, name, log string) {
	t.Helper()
	dir := os.Getenv("HAVEN_TEST_OUT")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), stuckDir)
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.log",
		strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()), name, time.Now().UTC().Format("20060102T150405.000")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep the log of %s: %v", name, err)
	} else if err := os.WriteFile(file, []byte(log), 0o644); err != nil {
		t.Logf("keep the log of %s: %v", name, err)
	} else {
		t.Logf("the whole log of %s (%d bytes) is in %s", name, len(log), file)
	}
}
