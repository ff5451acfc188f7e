package testbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDump(t *testing.T) {
	log := strings.Repeat("time=... level=INFO msg=x\n", 5000) + "SIGQUIT: quit\nPC=0x1 m=0\n\ngoroutine 1 [chan receive]:\nmain.main()\n"
	if d := dump(log); !strings.HasPrefix(d, "SIGQUIT: quit\n") || !strings.HasSuffix(d, "main.main()\n") {
		t.Fatalf("dump = %q", d)
	}
	if d := dump("time=... msg=no dump\n"); d != "" {
		t.Fatalf("dump of a log without one = %q", d)
	}
}

func TestStuckKeepsTheWholeLog(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HAVEN_TEST_OUT", dir)
	log := strings.Repeat("line\n", 100000) + "SIGQUIT: quit\n"
	Stuck(t, "n1", log)
	files, _ := filepath.Glob(filepath.Join(dir, "TestStuckKeepsTheWholeLog-n1-*.log"))
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || string(b) != log {
		t.Fatalf("the file holds %d bytes (%v), want the whole log (%d)", len(b), err, len(log))
	}
}
