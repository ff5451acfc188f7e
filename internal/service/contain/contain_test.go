package contain

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const wait = 10 * time.Second

func TestOwnCgroup(t *testing.T) {
	hybrid := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	unified := `25 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	nested := `25 30 0:22 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`
	spaced := `25 30 0:22 / /mnt/cg\040two rw - cgroup2 cgroup2 rw
`
	none := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
`
	for _, tc := range []struct {
		name, mountinfo, cgroup, want, err string
	}{
		{"hybrid root", hybrid, "1:cpu:/\n0::/\n", "/sys/fs/cgroup/unified", ""},
		{"unified under systemd", unified, "0::/system.slice/haven@n1.service\n", "/sys/fs/cgroup/system.slice/haven@n1.service", ""},
		{"mount root inside a namespace", nested, "0::/system.slice/haven.service\n", "/sys/fs/cgroup/haven.service", ""},
		{"escaped mount point", spaced, "0::/a\n", "/mnt/cg two/a", ""},
		{"no cgroup2", none, "0::/\n", "", "no cgroup2 file system is mounted"},
		{"v1 only process", hybrid, "1:cpu:/\n", "", "no cgroup v2 entry"},
		{"outside the root", nested, "0::/user.slice\n", "", "outside the cgroup2 mount's root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mi, cg := filepath.Join(dir, "mountinfo"), filepath.Join(dir, "cgroup")
			if err := os.WriteFile(mi, []byte(tc.mountinfo), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cg, []byte(tc.cgroup), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ownCgroup(mi, cg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// modes returns the modes this machine can test: process-group always,
// cgroup where this process may create one.
func modes(t *testing.T) []string {
	m := []string{string(ModeProcessGroup)}
	if _, err := makeCgroup(Options{Name: "probe"}, "probeprobeprobe"); err == nil {
		p, _ := makeCgroup(Options{Name: "probe"}, "probeprobeprobe")
		_ = os.Remove(p)
		m = append(m, string(ModeCGroup))
	} else {
		t.Logf("cgroup mode not tested here: %v", err)
	}
	return m
}

// startIn starts a shell in g that forks a worker in its group and a
// daemon that leaves it with setsid, and returns their pids.
func startIn(t *testing.T, g *Group, dir string) []int {
	t.Helper()
	pidf := filepath.Join(dir, "pids")
	cmd := exec.Command("sh", "-c", `sleep 1000 & echo $! >> "$1"; setsid sh -c 'echo $$ >> "$1"; exec sleep 1000' sh "$1" & echo $$ >> "$1"; exec sleep 1000`, "sh", pidf)
	cmd.Env = append(os.Environ(), g.Env())
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if err := g.Prepare(cmd.SysProcAttr); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.Started(cmd.Process.Pid)
	go func() { _ = cmd.Wait() }()
	// The daemon writes its pid after setsid: once all three are written,
	// it has left the process group.
	var pids []int
	deadline := time.Now().Add(wait)
	for len(pids) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the test service did not start its processes: %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(pidf)
		pids = pids[:0]
		for f := range strings.FieldsSeq(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

func alive(pid int) bool {
	st, _, ok := ProcStat(pid)
	return ok && st != 'Z'
}

func waitAllGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still run", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killAll(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// openStarted opens a group with o and starts processes in it (startIn,
// with dir); they are killed at the end of t, whatever the group did.
func openStarted(t *testing.T, o Options, dir string) (*Group, []int) {
	t.Helper()
	g, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	pids := startIn(t, g, dir)
	t.Cleanup(func() { killAll(pids) })
	return g, pids
}

// guardOf returns g's guard; with detach, g forgets it, as when the agent
// that holds the guard's pipe is gone.
func guardOf(g *Group, detach bool) *guard {
	g.mu.Lock()
	defer g.mu.Unlock()
	gd := g.guard
	if detach {
		g.guard = nil
	}
	return gd
}

// Kill takes everything down, the setsid'd daemon too.
func TestKill(t *testing.T) {
	for _, mode := range modes(t) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			g, err := Open(Options{Key: dir, Name: "test-kill", StateDir: dir, Mode: Mode(mode)})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if string(g.Kind()) != mode {
				t.Fatalf("kind %s, want %s", g.Kind(), mode)
			}
			pids := startIn(t, g, dir)
			defer killAll(pids)
			if !g.Alive() {
				t.Fatal("group not alive with its processes running")
			}
			if err := g.Kill(); err != nil {
				t.Fatal(err)
			}
			waitAllGone(t, pids)
			if g.Alive() {
				t.Fatal("group alive after Kill")
			}
		})
	}
}

// The next Open of the same key kills what an earlier run left, even with
// no guard (a guard that was itself killed).
func TestSweepAtOpen(t *testing.T) {
	for _, mode := range modes(t) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Key: dir, Name: "test-sweep", StateDir: dir, Mode: Mode(mode)}
			g, pids := openStarted(t, o, dir)
			// The agent dies and its guard with it: nothing kills the group.
			gd := guardOf(g, true)
			_ = gd.cmd.Process.Kill()
			<-gd.done
			time.Sleep(50 * time.Millisecond) // not a wait for a condition: gives a wrongly surviving guard time to act
			for _, p := range pids {
				if !alive(p) {
					t.Fatalf("process %d died with the guard; the test needs it alive", p)
				}
			}
			g2, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer g2.Close()
			waitAllGone(t, pids)
		})
	}
}

// The guard kills the group when the agent's end of its pipe closes, as it
// does when the agent dies.
func TestGuardKillsOnAgentDeath(t *testing.T) {
	for _, mode := range modes(t) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			g, pids := openStarted(t, Options{Key: dir, Name: "test-guard", Mode: Mode(mode)}, dir)
			defer g.Close()
			gd := guardOf(g, true) // as if the agent were gone
			_ = gd.w.Close()
			waitAllGone(t, pids)
			select {
			case <-gd.done:
			case <-time.After(wait):
				t.Fatal("the guard did not exit after killing the group")
			}
		})
	}
}

// Close ends the group and its guard without waiting on the guard: one
// that cannot run (frozen here; on a loaded machine, its sweep of /proc
// took longer than the agent's 15 s to stop) is killed after guardWait.
// Before, Close waited for the guard to exit, and an agent's shutdown hung
// with it ("agent n1 did not stop within 15s of SIGTERM").
func TestCloseDoesNotWaitOnTheGuard(t *testing.T) {
	for _, mode := range modes(t) {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			g, pids := openStarted(t, Options{Key: dir, Name: "test-close", Mode: Mode(mode)}, dir)
			gd := guardOf(g, false)
			if err := gd.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = gd.cmd.Process.Kill() }()
			closed := make(chan error, 1)
			go func() { closed <- g.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(sweepWait + guardWait + wait):
				t.Fatal("Close waited on a guard that cannot run")
			}
			select {
			case <-gd.done:
			default:
				t.Fatal("Close returned with the guard still running")
			}
			waitAllGone(t, pids)
		})
	}
}

// A guard told to stop exits without killing anything: Close has done
// that already, and the guard's own sweep of /proc is slow.
func TestGuardStops(t *testing.T) {
	dir := t.TempDir()
	g, pids := openStarted(t, Options{Key: dir, Name: "test-stop", Mode: ModeProcessGroup}, dir)
	defer g.Close()
	gd := guardOf(g, true) // Close will not stop this one
	if _, err := io.WriteString(gd.w, guardStop+"\n"); err != nil {
		t.Fatal(err)
	}
	_ = gd.w.Close()
	select {
	case <-gd.done:
	case <-time.After(wait):
		t.Fatal("the guard did not exit when told to stop")
	}
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("the guard killed process %d when told to stop", p)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without a key succeeded")
	}
	dir := t.TempDir()
	if _, err := Open(Options{Key: dir, Mode: "jail"}); err == nil || !strings.Contains(err.Error(), "use auto, cgroup or process-group") {
		t.Fatalf("unknown mode: %v", err)
	}
	o := Options{Key: dir, Mode: ModeCGroup, mountinfo: filepath.Join(dir, "none"), selfCgroup: filepath.Join(dir, "none")}
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "set service.containment") {
		t.Fatalf("cgroup mode without cgroups: %v", err)
	}
	o.Mode = ModeAuto
	g, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Kind() != ProcessGroup || !strings.Contains(g.Describe(), "no cgroup: read") {
		t.Fatalf("fallback: %s", g.Describe())
	}
}
