package service

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/syncbuf"
)

// wait bounds every wait for a condition. Generous: the tests run with
// -race on small, loaded machines.
const wait = 10 * time.Second

const helperEnv = "HAVEN_SERVICE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "pdeathsig":
		pdeathsigHelper()
		return
	case "supervise":
		superviseHelper()
		return
	case "listen":
		listenHelper()
		return
	}
	os.Exit(m.Run())
}

// newSup returns a supervisor whose output goes to the test's buffer and
// which is killed when the test ends.
func newSup(t *testing.T, spec Options, vars map[string]string) (*Supervisor, *syncbuf.Buffer) {
	t.Helper()
	out := &syncbuf.Buffer{}
	s := New(spec, vars, nil, WithOutput(out))
	t.Cleanup(s.Kill)
	return s, out
}

func sh(script string) []string { return []string{"sh", "-c", script} }

// nextEvent returns the next event, failing after the deadline.
func nextEvent(t *testing.T, s *Supervisor) Event {
	t.Helper()
	select {
	case ev := <-s.Events():
		return ev
	case <-time.After(wait):
		t.Fatalf("no event within %s", wait)
		return Event{}
	}
}

func expectEvent(t *testing.T, s *Supervisor, kind EventKind) Event {
	t.Helper()
	ev := nextEvent(t, s)
	if ev.Kind != kind {
		t.Fatalf("event %v (pid %d, err %v), want %v", ev.Kind, ev.PID, ev.Err, kind)
	}
	return ev
}

// noEvent asserts that nothing happens for a while: a negative check, so it
// can only watch a window, chosen much longer than the restart delays used.
func noEvent(t *testing.T, s *Supervisor, window time.Duration) {
	t.Helper()
	select {
	case ev := <-s.Events():
		t.Fatalf("unexpected event %v (pid %d, err %v)", ev.Kind, ev.PID, ev.Err)
	case <-time.After(window):
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie counts as gone (orphans wait for
// init to reap them, which in a container may never happen).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	eventually(t, fmt.Sprintf("process %d gone", pid), func() bool { return !alive(pid) })
}

func readPID(t *testing.T, file string) int {
	t.Helper()
	var b []byte
	eventually(t, "pid file "+file, func() bool {
		var err error
		b, err = os.ReadFile(file)
		return err == nil && bytes.HasSuffix(b, []byte("\n"))
	})
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStartStop(t *testing.T) {
	s, _ := newSup(t, Options{Command: []string{"sleep", "100"}, StopGrace: 5 * time.Second, Restart: "always"}, nil)
	if s.Running() || s.PID() != 0 {
		t.Fatal("running before Start")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	ev := expectEvent(t, s, Started)
	pid := s.PID()
	if pid == 0 || ev.PID != pid || !s.Running() {
		t.Fatalf("pid %d, event pid %d, running %v", pid, ev.PID, s.Running())
	}
	if err := s.Start(); err != nil { // idempotent
		t.Fatal(err)
	}
	if s.PID() != pid {
		t.Fatalf("second Start replaced the process: %d -> %d", pid, s.PID())
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("running after Stop")
	}
	ev = expectEvent(t, s, Exited)
	if ev.PID != pid {
		t.Fatalf("exit of pid %d, want %d", ev.PID, pid)
	}
	if alive(pid) {
		t.Fatalf("pid %d alive after Stop", pid)
	}
	// Stop is idempotent and no restart follows it, even with "always".
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	noEvent(t, s, 200*time.Millisecond)
}

// A process that stops on the signal is not killed.
func TestStopGraceful(t *testing.T) {
	s, out := newSup(t, Options{
		Command:   sh(`trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done`),
		StopGrace: 30 * time.Second,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > wait {
		t.Fatalf("Stop took %s", took)
	}
	expectEvent(t, s, Started)
	if ev := expectEvent(t, s, Exited); ev.Err != nil {
		t.Fatalf("exit error %v, want a clean exit", ev.Err)
	}
	eventually(t, "bye in output", func() bool { return strings.Contains(string(s.Output()), "bye") })
}

// A process that ignores the stop signal is killed after the grace period.
func TestStopGraceKills(t *testing.T) {
	const grace = 300 * time.Millisecond
	s, out := newSup(t, Options{
		Command:    sh(`trap '' TERM; echo ready; while :; do sleep 0.05; done`),
		StopSignal: "SIGTERM",
		StopGrace:  grace,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	pid := s.PID()
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < grace {
		t.Fatalf("Stop returned after %s, before the grace period", took)
	}
	expectEvent(t, s, Started)
	ev := expectEvent(t, s, Exited)
	var ee *exec.ExitError
	if !errors.As(ev.Err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("exit %v, want SIGKILL", ev.Err)
	}
	waitGone(t, pid)
}

// Stop's context cuts the grace period short.
func TestStopContext(t *testing.T) {
	s, out := newSup(t, Options{
		Command:   sh(`trap '' TERM; echo ready; while :; do sleep 0.05; done`),
		StopGrace: time.Hour,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("running after Stop")
	}
}

// Stop takes down the whole process group, grandchildren included.
func TestStopKillsGrandchildren(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSup(t, Options{
		Command:   sh(`sleep 100 & echo $! > gc.pid; wait`),
		Dir:       dir,
		StopGrace: 5 * time.Second,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, filepath.Join(dir, "gc.pid"))
	if !alive(gc) {
		t.Fatalf("grandchild %d not running", gc)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, gc)
}

// A grandchild that ignores the stop signal and outlives the main process
// gets the grace period, then SIGKILL.
func TestStopWaitsForGroup(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSup(t, Options{
		Command:   sh(`(trap '' TERM; echo > ready; exec sleep 100) & echo $! > gc.pid; wait`),
		Dir:       dir,
		StopGrace: 300 * time.Millisecond,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, filepath.Join(dir, "gc.pid"))
	eventually(t, "grandchild ignores SIGTERM", func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	})
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("Stop returned after %s while a group member ignored the signal", took)
	}
	waitGone(t, gc)
}

// When the main process exits on its own, what it left in its group is killed.
func TestExitKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSup(t, Options{Command: sh(`sleep 100 & echo $! > gc.pid; exit 3`), Dir: dir, Restart: "never"}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, s, Started)
	expectEvent(t, s, Exited)
	waitGone(t, readPID(t, filepath.Join(dir, "gc.pid")))
}

func TestKill(t *testing.T) {
	dir := t.TempDir()
	s, _ := newSup(t, Options{
		Command:      sh(`trap '' TERM; sleep 100 & echo $! > gc.pid; wait`),
		Dir:          dir,
		StopGrace:    time.Hour,
		Restart:      "always",
		RestartDelay: time.Millisecond,
	}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, filepath.Join(dir, "gc.pid"))
	pid := s.PID()
	s.Kill()
	if s.Running() {
		t.Fatal("running after Kill")
	}
	expectEvent(t, s, Started)
	if ev := expectEvent(t, s, Exited); ev.PID != pid {
		t.Fatalf("exit of %d, want %d", ev.PID, pid)
	}
	waitGone(t, pid)
	waitGone(t, gc)
	noEvent(t, s, 200*time.Millisecond) // no restart after Kill
	s.Kill()                            // safe when not running
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		policy   RestartPolicy
		exit     int
		restarts bool
	}{
		{"always", 0, true},
		{"always", 1, true},
		{"on-failure", 1, true},
		{"on-failure", 0, false},
		{"never", 1, false},
		{"never", 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/exit%d", tt.policy, tt.exit), func(t *testing.T) {
			t.Parallel()
			s, _ := newSup(t, Options{
				Command:      sh("exit " + strconv.Itoa(tt.exit)),
				Restart:      tt.policy,
				RestartDelay: 10 * time.Millisecond,
			}, nil)
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			expectEvent(t, s, Started)
			ev := expectEvent(t, s, Exited)
			if (ev.Err == nil) != (tt.exit == 0) {
				t.Fatalf("exit error %v for exit %d", ev.Err, tt.exit)
			}
			if !tt.restarts {
				noEvent(t, s, 300*time.Millisecond)
				return
			}
			for range 3 {
				expectEvent(t, s, Started)
				expectEvent(t, s, Exited)
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			// An event already in flight may still arrive; then nothing more.
			for {
				select {
				case <-s.Events():
					continue
				case <-time.After(300 * time.Millisecond):
				}
				break
			}
			if s.Running() {
				t.Fatal("restarted after Stop")
			}
		})
	}
}

// Quick failures back off: each wait at least doubles.
func TestRestartBackoff(t *testing.T) {
	const base = 40 * time.Millisecond
	s, _ := newSup(t, Options{Command: sh("exit 1"), Restart: "on-failure", RestartDelay: base}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, s, Started)
	want := base
	for range 3 {
		exited := expectEvent(t, s, Exited)
		started := expectEvent(t, s, Started)
		if gap := started.When.Sub(exited.When); gap < want {
			t.Fatalf("restarted after %s, want at least %s", gap, want)
		}
		want *= 2
	}
}

func TestBackoff(t *testing.T) {
	const base = 100 * time.Millisecond
	tests := []struct {
		delay, ran, base time.Duration
		wait, next       time.Duration
	}{
		{base, time.Second, base, base, 2 * base},
		{2 * base, time.Second, base, 2 * base, 4 * base},
		{8 * time.Second, 0, base, 8 * time.Second, 10 * time.Second},
		{10 * time.Second, 0, base, 10 * time.Second, 10 * time.Second},
		{10 * time.Second, 10 * time.Second, base, base, 2 * base}, // ran long enough: reset
		{0, 0, 0, 0, minBackoff},
		{minBackoff, 0, 0, minBackoff, 2 * minBackoff},
	}
	for _, tt := range tests {
		wait, next := backoff(tt.delay, tt.ran, tt.base)
		if wait != tt.wait || next != tt.next {
			t.Errorf("backoff(%s, %s, %s) = %s, %s; want %s, %s", tt.delay, tt.ran, tt.base, wait, next, tt.wait, tt.next)
		}
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"HAVEN_NODE": "n1", "HAVEN_CLUSTER": "c", "DB_PORT": "5432", "WORK": dir}
	s, _ := newSup(t, Options{
		Command: []string{"sh", "-c", `env > "$0/env.${HAVEN_ROLE}"; exec sleep 100`, "${WORK}"},
		Env:     map[string]string{"GREETING": "hi ${HAVEN_NODE}"},
		Dir:     "${WORK}",
	}, vars)
	s.SetRole("standby", 0)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	env := readEnv(t, filepath.Join(dir, "env.standby"))
	for k, v := range map[string]string{
		"HAVEN_NODE": "n1", "HAVEN_CLUSTER": "c", "DB_PORT": "5432", "GREETING": "hi n1",
		"HAVEN_ROLE": "standby", "HAVEN_EPOCH": "0", "PWD": dir, "PATH": os.Getenv("PATH"),
	} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	// The role applies from the next start.
	s.SetRole("active", 7)
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	env = readEnv(t, filepath.Join(dir, "env.active"))
	if env["HAVEN_ROLE"] != "active" || env["HAVEN_EPOCH"] != "7" {
		t.Errorf("role %q epoch %q, want active 7", env["HAVEN_ROLE"], env["HAVEN_EPOCH"])
	}
}

func readEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	var b []byte
	eventually(t, "env file", func() bool {
		var err error
		b, err = os.ReadFile(file)
		return err == nil && bytes.Contains(b, []byte("HAVEN_NODE="))
	})
	// env may still be writing: wait until the file stops growing.
	eventually(t, "env file complete", func() bool {
		c, err := os.ReadFile(file)
		if err == nil && bytes.Equal(c, b) {
			return true
		}
		b = c
		return false
	})
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestStartError(t *testing.T) {
	for _, argv := range [][]string{{"/no/such/binary"}, {"no-such-binary-in-path"}} {
		s, _ := newSup(t, Options{Command: argv, Restart: "always"}, nil)
		err := s.Start()
		if err == nil || !strings.Contains(err.Error(), "start service "+argv[0]) {
			t.Fatalf("Start: %v, want a start error naming %s", err, argv[0])
		}
		if s.Running() {
			t.Fatal("running after a failed start")
		}
		noEvent(t, s, 100*time.Millisecond)
	}
	if err := New(Options{}, nil, nil).Start(); !errors.Is(err, ErrNoCommand) {
		t.Fatalf("Start without a command: %v", err)
	}
}

func TestOutput(t *testing.T) {
	// 2000 lines of 50 bytes: 100,000 bytes, more than the ring holds.
	s, out := newSup(t, Options{Command: sh(`i=0; while [ $i -lt 2000 ]; do printf '%049d\n' $i; i=$((i+1)); done; echo done >&2`)}, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, s, Started)
	expectEvent(t, s, Exited)
	eventually(t, "all output", func() bool { return strings.HasSuffix(out.String(), "done\n") })
	got := s.Output()
	if len(got) != outputMax {
		t.Fatalf("Output holds %d bytes, want %d", len(got), outputMax)
	}
	if !bytes.HasSuffix(got, fmt.Appendf(nil, "%049d\ndone\n", 1999)) {
		t.Fatalf("Output ends with %q", got[len(got)-80:])
	}
	if !bytes.Equal(got, []byte(out.String())[len(out.String())-outputMax:]) {
		t.Fatal("Output is not the tail of what the writer got")
	}
}

func TestRing(t *testing.T) {
	var r ring
	var all []byte
	for i := range 5000 {
		line := []byte(strings.Repeat(strconv.Itoa(i%10), i%97) + "\n")
		r.write(line)
		all = append(all, line...)
		if i%61 != 0 {
			continue
		}
		if got, want := r.bytes(), all[max(0, len(all)-outputMax):]; !bytes.Equal(got, want) {
			t.Fatalf("after %d writes: %d bytes, want %d", i+1, len(got), len(want))
		}
	}
	big := bytes.Repeat([]byte("x"), outputMax+10)
	big[len(big)-1] = 'y'
	r.write(big)
	if got := r.bytes(); !bytes.Equal(got, big[10:]) {
		t.Fatal("a write larger than the ring")
	}
}

func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	w := &prefixWriter{w: &b, prefix: "> ", bol: true}
	for _, s := range []string{"one\ntw", "o\n", "\nthree"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := b.String(), "> one\n> two\n> \n> three"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"": syscall.SIGTERM, "SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM,
		"SIGINT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "9": syscall.SIGKILL,
	} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSignal("SIGNOPE"); err == nil {
		t.Error("parseSignal accepted SIGNOPE")
	}
}

// If the agent is killed with SIGKILL, the kernel kills the service
// (Pdeathsig). The helper is this test binary, re-executed: it starts a
// supervisor with a long sleep, prints the sleep's pid and waits to be killed.
func TestPdeathsig(t *testing.T) {
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=pdeathsig")
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(wait):
		t.Fatal("helper printed nothing")
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "pid "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("service %d not running while the helper lives", pid)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	waitGone(t, pid)
}

// pdeathsigHelper runs in the re-executed test binary. It calls Start from a
// goroutine that locks its thread and exits, so that thread dies: the
// service must survive that (its parent thread is the supervisor's own), and
// die only with the whole process.
func pdeathsigHelper() {
	s := New(Options{Command: []string{"sleep", "1000"}, Restart: "never"}, nil, nil)
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- s.Start()
	}()
	if err := <-errc; err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	// Give a wrongly bound child time to be killed by its parent thread's exit.
	select {
	case ev := <-s.Events():
		if ev.Kind != Started {
			fmt.Fprintln(os.Stderr, "helper: unexpected event", ev.Kind, ev.Err)
			os.Exit(1)
		}
	case <-time.After(wait):
	}
	select {
	case ev := <-s.Events():
		fmt.Fprintln(os.Stderr, "helper: service exited early:", ev.Kind, ev.Err)
		os.Exit(1)
	case <-time.After(200 * time.Millisecond):
	}
	fmt.Printf("pid %d\n", s.PID())
	for {
		time.Sleep(time.Hour)
	}
}
