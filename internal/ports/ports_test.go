package ports

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// childEnv makes the test binary a second process that tries to claim the
// port it names and says whether it could.
const childEnv = "HAVEN_PORTS_TEST_CLAIM"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		p, _ := strconv.Atoi(v)
		if claim(p) {
			os.Stdout.WriteString("claimed\n")
		} else {
			os.Stdout.WriteString("taken\n")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A port handed out here cannot be handed out by another process while
// this one runs (go test runs packages' binaries in parallel), and ports
// never come twice within a process.
func TestFreeClaimsAcrossProcesses(t *testing.T) {
	ps, err := Free(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] || p < low || p >= high() {
			t.Fatalf("port %d handed out twice or out of range: %v", p, ps)
		}
		seen[p] = true
	}
	other := func(p int) string {
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(p))
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := other(ps[0]); got != "taken" {
		t.Fatalf("another process claiming port %d that this one handed out: %q, want taken", ps[0], got)
	}
	if claims == nil {
		t.Fatalf("no lock file at %s", claimFile())
	}
	// A port nobody claimed is the other process's to take.
	free := low
	for seen[free] || used[free] {
		free++
	}
	if got := other(free); got != "claimed" {
		t.Fatalf("another process claiming unclaimed port %d: %q, want claimed", free, got)
	}
}
