package service

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/harness"
	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/service/contain"
)

// Environment of the supervising helper (this test binary, re-executed).
const (
	helperModeEnv = "HAVEN_SERVICE_TEST_MODE" // contain mode, or "none" for a supervisor without a group
	helperArgvEnv = "HAVEN_SERVICE_TEST_ARGV" // the service's command, JSON
	helperDirEnv  = "HAVEN_SERVICE_TEST_DIR"  // the group's key and state directory
	helperAddrEnv = "HAVEN_SERVICE_TEST_ADDR" // for the "listen" helper: the address to hold
	// containmentEnv overrides the mode of the kill -9 tests; "none" runs
	// them on the supervisor as it was before containment, which must fail.
	containmentEnv = "HAVEN_TEST_CONTAINMENT"
)

// superviseHelper runs in the re-executed test binary: a supervisor for the
// command in the environment, which prints the service's pid and waits to
// be killed.
func superviseHelper() {
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv(helperArgvEnv)), &argv); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	var opts []Option
	if mode := os.Getenv(helperModeEnv); mode != "none" {
		dir := os.Getenv(helperDirEnv)
		g, err := contain.Open(contain.Options{Key: dir, Name: "test", StateDir: dir, Mode: contain.Mode(mode)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		opts = append(opts, WithGroup(g))
	}
	s := New(Options{Command: argv, Restart: "never"}, nil, nil, opts...)
	if err := s.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	fmt.Printf("pid %d\n", s.PID())
	for {
		time.Sleep(time.Hour)
	}
}

// listenHelper holds a TCP port until killed.
func listenHelper() {
	ln, err := net.Listen("tcp", os.Getenv(helperAddrEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen helper:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// freePort is a free loopback address (package ports: not a closed :0
// listener's, which the kernel may hand to anyone next).
func freePort(t *testing.T) string {
	t.Helper()
	a, err := ports.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withEnv lists the processes whose environment holds kv.
func withEnv(kv string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for v := range strings.SplitSeq(string(b), "\x00") {
			if v == kv {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// killSupervisorHard starts a supervisor in a child process for argv, waits
// until the service answers on addr with at least minProcs processes
// running, kills the supervisor with SIGKILL and checks that nothing of the
// service survives and addr is free again. tag is a variable in the
// service's environment that marks its processes.
// It runs once per containment mode (auto, which is a cgroup where the
// machine allows, and process-group), or in the mode $HAVEN_TEST_CONTAINMENT
// names; "none" is the supervisor without a group, as it was before #18,
// on which these tests fail.
func killSupervisorHard(t *testing.T, setup func(t *testing.T) (argv []string, addr string), tag string, minProcs int) {
	modes := []string{string(contain.ModeAuto), string(contain.ModeProcessGroup)}
	if m := os.Getenv(containmentEnv); m != "" {
		modes = []string{m}
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			argv, addr := setup(t)
			killSupervisorHardIn(t, mode, argv, addr, tag, minProcs)
		})
	}
}

func killSupervisorHardIn(t *testing.T, mode string, argv []string, addr, tag string, minProcs int) {
	dir := t.TempDir()
	b, _ := json.Marshal(argv)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=supervise", helperModeEnv+"="+mode, helperArgvEnv+"="+string(b), helperDirEnv+"="+dir, tag)
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var victims []int
	t.Cleanup(func() {
		_ = helper.Process.Kill()
		for _, p := range victims {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "pid ") {
			t.Fatalf("helper said %q", line)
		}
	case <-time.After(wait):
		t.Fatal("helper printed nothing")
	}
	eventually(t, "service answers on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	eventually(t, fmt.Sprintf("at least %d service processes", minProcs), func() bool {
		seen := map[int]bool{}
		victims = victims[:0]
		for _, p := range append(harness.Descendants(helper.Process.Pid), withEnv(tag)...) {
			if !seen[p] && p != helper.Process.Pid && alive(p) {
				seen[p] = true
				victims = append(victims, p)
			}
		}
		return len(victims) >= minProcs
	})
	t.Logf("containment %s; service processes %v", mode, victims)

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	eventually(t, "every service process gone after kill -9 of the supervisor", func() bool {
		for _, p := range victims {
			if alive(p) {
				return false
			}
		}
		return true
	})
	eventually(t, addr+" free again", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
		}
		return err == nil
	})
}

// nginx forks workers, which Pdeathsig does not reach: before containment
// a kill -9 of the agent left them holding the port (issue #18).
func TestKillSupervisorNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
	}
	// master + 2 workers (+ the guard)
	killSupervisorHard(t, func(t *testing.T) ([]string, string) {
		dir := t.TempDir()
		addr := freePort(t)
		conf := fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server { listen %[2]s; location / { return 200 "ok\n"; } }
}
`, dir, addr)
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}, addr
	}, "HAVEN_TEST_TAG=nginx-"+strconv.Itoa(os.Getpid()), 3)
}

// A service that daemonises partway: the main process stays, but a
// double-forked child leaves the process group (setsid) and holds a port.
func TestKillSupervisorDaemonChild(t *testing.T) {
	killSupervisorHard(t, func(t *testing.T) ([]string, string) {
		addr := freePort(t)
		script := `( setsid env ` + helperEnv + `=listen ` + helperAddrEnv + `=` + addr + ` "$0" -test.run=^$ & ) ; exec sleep 1000`
		return []string{"sh", "-c", script, os.Args[0]}, addr
	}, "HAVEN_TEST_TAG=daemon-"+strconv.Itoa(os.Getpid()), 2)
}

// A command that puts itself in the background (exits 0 at once, leaving a
// process) is reported as such, and its leftover is killed.
func TestDaemonisedCommand(t *testing.T) {
	dir := t.TempDir()
	g, err := contain.Open(contain.Options{Key: dir, Name: "test-daemonised", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	pidf := filepath.Join(dir, "pid")
	s, _ := newSup(t, Options{Command: sh(`setsid sh -c 'echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec sleep 1000' ` + pidf + ` & while [ ! -e ` + pidf + ` ]; do sleep 0.01; done; exit 0`), Restart: "never"}, nil)
	s.group = g
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, s, Started)
	ev := expectEvent(t, s, Exited)
	if !errors.Is(ev.Err, ErrDaemonised) {
		t.Fatalf("exit error %v, want ErrDaemonised", ev.Err)
	}
	b, err := os.ReadFile(pidf)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitGone(t, pid)
	if !strings.Contains(s.Containment(), string(g.Kind())) {
		t.Fatalf("containment %q", s.Containment())
	}
}
