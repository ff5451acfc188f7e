package harness

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/syncbuf"
)

// Stop ends a process that obeys SIGTERM within the grace and reports
// only the one that ignores it, which it still ends (kill of its group).
func TestStop(t *testing.T) {
	var out syncbuf.Buffer
	obeys, err := Start("", &out, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	// The shell ignores SIGTERM and SIGQUIT; its sleep is in its group.
	deaf, err := Start("", &out, "sh", "-c", `trap "" TERM QUIT; echo ready; sleep 60; echo woke`)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "ready"); {
		if time.Now().After(deadline) {
			t.Fatal("the shell never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var kids []int
	if !Until(10*time.Second, func() bool { kids = Descendants(deaf.Pid()); return len(kids) > 0 }) {
		t.Fatal("Descendants does not list the shell's sleep")
	}
	if d := Descendants(obeys.Pid()); len(d) != 0 {
		t.Fatalf("Descendants of a lone sleep: %v", d)
	}
	late := Stop(2*time.Second, obeys, deaf, nil)
	if !slices.Equal(late, []*Proc{deaf}) {
		t.Fatalf("late = %v, want only the shell that ignores SIGTERM", late)
	}
	if obeys.Running() || deaf.Running() {
		t.Fatalf("still running after Stop: sleep %v, shell %v", obeys.Running(), deaf.Running())
	}
	if !strings.Contains(deaf.Exit(), "killed") {
		t.Fatalf("the shell ended %q, want killed", deaf.Exit())
	}
	gone := func(pid int) bool { // a zombie counts as gone
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := bytes.LastIndexByte(b, ')')
		return err != nil || i < 0 || strings.HasPrefix(string(b[i+1:]), " Z")
	}
	if !Until(10*time.Second, func() bool { return gone(kids[0]) }) {
		t.Fatalf("the shell's sleep %d outlived the kill of its group", kids[0])
	}
}

// Loopback hands out distinct addresses, extra ports apart from them.
func TestLoopback(t *testing.T) {
	nodes, extra, err := Loopback(3, 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range nodes {
		for _, s := range []string{a.API, a.Peer, a.Client, a.Service} {
			if seen[s] || !strings.HasPrefix(s, "127.0.0.1:") {
				t.Fatalf("address %s twice or not on loopback: %+v", s, nodes)
			}
			seen[s] = true
		}
	}
	if len(extra) != 2 || extra[0] == extra[1] || seen[fmt.Sprintf("127.0.0.1:%d", extra[0])] || seen[fmt.Sprintf("127.0.0.1:%d", extra[1])] {
		t.Fatalf("extra ports %v", extra)
	}
}

// A process Start ran survives the end of the OS thread that forked it.
// The kernel sends Pdeathsig when the parent *thread* exits, and the Go
// runtime ends a thread whenever a goroutine returns locked to it (the
// service supervisor and exec checks of in-process agents do, for every
// process they run): an agent of a sandbox forked from such a thread was
// killed, and the sandbox never came up ("the agent of n1 is not running").
func TestStartSurvivesThreadExit(t *testing.T) {
	p, err := Start("", io.Discard, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	defer Stop(time.Second, p)
	// Goroutines that end locked to their threads, as the supervisor's
	// do: the runtime retires each thread, the one that ran Start among
	// them, most likely (this goroutine waits while they run).
	for range 50 {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
	if p.Wait(500 * time.Millisecond) {
		t.Fatalf("the process ended (%s) when threads of this process ended", p.Exit())
	}
}
