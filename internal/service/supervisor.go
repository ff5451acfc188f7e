// Package service runs the local service as a supervised child process and
// runs the hooks that accompany role changes.
//
// A Supervisor starts the service in its own process group, restarts it by
// policy with backoff, stops it with a signal and a grace period, kills the
// whole group for fencing, and reports every start and exit as an Event. The
// main process is also bound to the agent's life by Pdeathsig (set from an
// OS thread that lives as long as the child); its workers and daemons are
// not: WithGroup puts the whole tree in a contain.Group (a cgroup where
// possible) whose guard kills it when the agent dies, even by SIGKILL.
//
// The service must run in the foreground: when its main process exits,
// whatever is left in its group is killed, and a command that exits 0 at
// once leaving processes behind is reported as ErrDaemonised.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/expand"
	"github.com/haven-ha/haven/internal/procstart"
	"github.com/haven-ha/haven/internal/service/contain"
)

// ErrNoCommand is returned by Start when the service has no command: it is
// managed outside haven, through hooks only.
var ErrNoCommand = errors.New("service has no command (managed through hooks only)")

// EventKind says what happened to the service process.
type EventKind int

// Kinds of Event.
const (
	Started EventKind = iota + 1 // a process started; PID is set
	Exited                       // a process exited (Err is its status), or a restart failed (PID 0, Err says why)
)

func (k EventKind) String() string {
	switch k {
	case Started:
		return "started"
	case Exited:
		return "exited"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a start or exit of the service process.
type Event struct {
	Kind EventKind
	PID  int
	Err  error // for Exited: nil on exit status 0, else an *exec.ExitError or the start error
	When time.Time
}

// Tunables of the supervisor.
const (
	maxRestartDelay = 10 * time.Second       // backoff cap
	resetAfter      = 10 * time.Second       // a run this long resets the backoff
	minBackoff      = 50 * time.Millisecond  // backoff step when RestartDelay is 0, so a crash loop does not spin
	outputMax       = 64 << 10               // service output kept for Output
	eventBuffer     = 256                    // Events capacity
	groupPoll       = 20 * time.Millisecond  // how often Stop looks for group members left after the main process
	outputPrefix    = "service| "            // default prefix of service output lines on the agent's stderr
	hookWaitDelay   = 100 * time.Millisecond // how long a hook's leftover children may hold its output open
)

// Option configures a Supervisor.
type Option func(*Supervisor)

// WithOutput sends the service's stdout and stderr, merged, to w instead of
// the agent's stderr. Writes come from one goroutine at a time.
func WithOutput(w io.Writer) Option {
	return func(s *Supervisor) { s.out = w }
}

// WithClock times grace periods and restart delays on clk (default: the
// system clock).
func WithClock(clk clock.Clock) Option {
	return func(s *Supervisor) { s.clk = clk }
}

// Supervisor runs one service process at a time. All methods are safe for
// concurrent use.
type Supervisor struct {
	argv      []string
	dir       string
	env       []string // os.Environ + spec.Env + vars; role variables are added at each start
	stopSig   syscall.Signal
	grace     time.Duration
	policy    RestartPolicy
	baseDelay time.Duration
	log       *slog.Logger
	clk       clock.Clock
	events    chan Event

	outMu sync.Mutex // serialises output from overlapping processes
	out   io.Writer
	ring  ring

	mu    sync.Mutex
	role  string
	epoch int64
	want  bool   // the service should run: restart policy enabled
	gen   uint64 // bumped by Start, Stop, Kill and each scheduled restart; a restart timer only acts if it still matches
	proc  *proc  // the running process, nil when none
	timer clock.Timer
	delay time.Duration // wait before the next restart

	group *contain.Group // the service's cgroup or process group; nil: the process group only (see WithGroup)
}

// proc is one run of the service.
type proc struct {
	pid      int
	started  time.Time
	done     chan struct{} // closed once the process has been reaped
	stopping bool          // Stop or Kill is taking it down; guarded by Supervisor.mu
}

// Options describe the service a Supervisor runs (the config's service:
// section, less what the agent keeps for itself).
type Options struct {
	Command      []string          // argv; ${VAR} expanded from the node's variables
	Env          map[string]string // extra environment
	Dir          string            // working directory
	StopSignal   string            // e.g. "SIGTERM"
	StopGrace    time.Duration     // wait this long after StopSignal before SIGKILL
	Restart      RestartPolicy
	RestartDelay time.Duration // first delay before a restart; doubles up to 10s, reset after 10s of running
}

// RestartPolicy says when the supervisor restarts a service that exited.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure" // only after a non-zero exit or a signal
	RestartNever     RestartPolicy = "never"
)

// New returns a supervisor for spec; nothing runs until Start. ${VAR} in the
// command, working directory and extra environment is expanded from vars,
// which also go into the service's environment (HAVEN_NODE among them). log
// may be nil.
func New(spec Options, vars map[string]string, log *slog.Logger, opts ...Option) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	extra := make(map[string]string, len(spec.Env))
	for k, v := range spec.Env {
		extra[k] = expand.String(v, vars)
	}
	env := os.Environ()
	env = append(env, expand.Environ(extra)...)
	env = append(env, expand.Environ(vars)...)
	sig, err := parseSignal(spec.StopSignal)
	if err != nil {
		log.Warn("unknown stop signal, using SIGTERM", "stop_signal", spec.StopSignal)
		sig = syscall.SIGTERM
	}
	s := &Supervisor{
		argv:      expand.All(spec.Command, vars),
		dir:       expand.String(spec.Dir, vars),
		env:       env,
		stopSig:   sig,
		grace:     spec.StopGrace,
		policy:    spec.Restart,
		baseDelay: spec.RestartDelay,
		delay:     spec.RestartDelay,
		log:       log,
		clk:       clock.Real{},
		events:    make(chan Event, eventBuffer),
		out:       &prefixWriter{w: os.Stderr, prefix: outputPrefix, bol: true},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Events delivers starts and exits. Its buffer is large; if the consumer
// still falls behind, events are dropped (with a warning) rather than stall
// the supervisor. It is never closed.
func (s *Supervisor) Events() <-chan Event { return s.events }

// SetRole sets HAVEN_ROLE and HAVEN_EPOCH for the next start; a running
// process keeps the environment it started with.
func (s *Supervisor) SetRole(role string, epoch int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.role, s.epoch = role, epoch
}

// PID returns the pid of the running process, 0 if none runs.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// Running reports whether a service process runs.
func (s *Supervisor) Running() bool { return s.PID() != 0 }

// Output returns the last 64 KiB the service wrote to stdout and stderr.
func (s *Supervisor) Output() []byte {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.ring.bytes()
}

// Start starts the service if it is not running and enables the restart
// policy. It returns once the process has been started, or with the reason
// it could not be (the restart policy is then left off). If a Stop or Kill is
// under way, Start waits for it to finish and starts a new process.
func (s *Supervisor) Start() error {
	if len(s.argv) == 0 {
		return ErrNoCommand
	}
	s.mu.Lock()
	for s.proc != nil && s.proc.stopping {
		done := s.proc.done
		s.mu.Unlock()
		<-done
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	s.want = true
	if s.proc != nil {
		return nil
	}
	s.gen++ // a restart that was pending is superseded
	s.stopTimerLocked()
	s.delay = s.baseDelay
	if err := s.startLocked(); err != nil {
		s.want = false
		return err
	}
	return nil
}

// Stop disables restarts, sends the stop signal to the service's process
// group and waits for the group to exit. What is still alive after StopGrace,
// or when ctx ends if that comes first, is killed with SIGKILL. Stop returns
// once the main process has been reaped; it does nothing if none runs.
func (s *Supervisor) Stop(ctx context.Context) error {
	p := s.disable()
	if p == nil {
		return nil
	}
	s.log.Info("stopping service", "pid", p.pid, "signal", signalName(s.stopSig), "grace", s.grace)
	if err := signalGroup(p.pid, s.stopSig); err != nil {
		s.log.Warn("cannot signal the service, killing it", "pid", p.pid, "err", err)
	} else if s.waitGroup(ctx, p) {
		return nil
	}
	s.log.Warn("service did not stop in time, killing its process group", "pid", p.pid, "grace", s.grace, "ctx_err", ctx.Err())
	err := s.killAll(p)
	<-p.done
	if err != nil {
		return fmt.Errorf("kill service process group %d: %w", p.pid, err)
	}
	return nil
}

// Kill kills the service's process group with SIGKILL at once, disables
// restarts and waits until the main process has been reaped. It is what
// fencing uses: no grace, no hooks.
func (s *Supervisor) Kill() {
	p := s.disable()
	if p == nil {
		return
	}
	s.log.Warn("killing service", "pid", p.pid)
	if err := s.killAll(p); err != nil {
		s.log.Error("kill service process group", "pid", p.pid, "err", err)
	}
	<-p.done
}

// Restart stops the service (see Stop) and starts it again.
func (s *Supervisor) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	return s.Start()
}

// disable turns the restart policy off, cancels a pending restart and marks
// the running process, if any, as being stopped.
func (s *Supervisor) disable() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = false
	s.gen++
	s.stopTimerLocked()
	if s.proc != nil {
		s.proc.stopping = true
	}
	return s.proc
}

// waitGroup waits for the main process to exit and then for the rest of its
// group, until the grace period or ctx ends. It reports whether all exited.
func (s *Supervisor) waitGroup(ctx context.Context, p *proc) bool {
	grace := s.clk.NewTimer(s.grace)
	defer grace.Stop()
	select {
	case <-p.done:
	case <-grace.C():
		return false
	case <-ctx.Done():
		return false
	}
	tick := s.clk.NewTicker(groupPoll)
	defer tick.Stop()
	for s.leftAlive(p) {
		select {
		case <-tick.C():
		case <-grace.C():
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (s *Supervisor) stopTimerLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// startLocked starts one process. Its output goes through a pipe the
// supervisor reads itself, so that Wait returns when the main process exits
// even if a leftover child still holds the output open.
func (s *Supervisor) startLocked() error {
	env := slices.Clone(s.env)
	if s.role != "" {
		env = append(env, "HAVEN_ROLE="+s.role, "HAVEN_EPOCH="+strconv.FormatInt(s.epoch, 10))
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start service: %w", err)
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	cmd.Env = env
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.group != nil {
		cmd.Env = append(cmd.Env, s.group.Env())
		if err := s.group.Prepare(cmd.SysProcAttr); err != nil {
			r.Close()
			w.Close()
			return fmt.Errorf("start service: %w", err)
		}
	}

	p := &proc{done: make(chan struct{})}
	// Forked from a thread that lives as long as the child (procstart):
	// Pdeathsig comes when the forking thread ends, not the process. If
	// the agent dies, the child gets SIGKILL; grandchildren do not inherit
	// Pdeathsig, the group's guard kills them (see WithGroup).
	err = procstart.Start(cmd, func(err error) { s.exited(p, err) })
	w.Close() // the child has its copy
	if err != nil {
		r.Close()
		return fmt.Errorf("start service %s: %w", s.argv[0], err)
	}
	p.pid, p.started = cmd.Process.Pid, s.clk.Now()
	if s.group != nil {
		s.group.Started(p.pid)
	}
	s.proc = p
	go s.copyOutput(r)
	s.log.Info("service started", "pid", p.pid, "cmd", strings.Join(s.argv, " "), "role", s.role, "epoch", s.epoch)
	s.emitLocked(Event{Kind: Started, PID: p.pid, When: p.started})
	return nil
}

// exited records the end of p.
func (s *Supervisor) exited(p *proc, err error) {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ran := now.Sub(p.started)
	if s.proc == p {
		s.proc = nil
	}
	if !p.stopping {
		err = s.daemonised(p, err, ran)
		// Not asked to stop: do not let orphans hold ports or files that the
		// next run needs. (Stop gives them the grace period instead.)
		_ = s.killAll(p)
	}
	close(p.done)
	lvl := slog.LevelInfo
	if !p.stopping {
		lvl = slog.LevelWarn
	}
	s.log.Log(context.Background(), lvl, "service exited", "pid", p.pid, "err", err, "ran", ran.Round(time.Millisecond))
	s.emitLocked(Event{Kind: Exited, PID: p.pid, Err: err, When: now})
	if s.want && restarts(s.policy, err) {
		s.scheduleLocked(ran)
	}
}

// restarts reports whether policy restarts a process that exited with err.
func restarts(policy RestartPolicy, err error) bool {
	switch policy {
	case RestartAlways:
		return true
	case RestartOnFailure:
		return err != nil
	}
	return false
}

// backoff returns how long to wait before restarting a process that ran for
// ran, given the delay due now, and the delay due after that.
func backoff(delay, ran, base time.Duration) (wait, next time.Duration) {
	if ran >= resetAfter {
		delay = base
	}
	return delay, min(max(2*delay, minBackoff), maxRestartDelay)
}

func (s *Supervisor) scheduleLocked(ran time.Duration) {
	var wait time.Duration
	wait, s.delay = backoff(s.delay, ran, s.baseDelay)
	s.gen++
	gen := s.gen
	s.stopTimerLocked()
	s.log.Info("restarting service", "in", wait, "policy", s.policy)
	s.timer = s.clk.AfterFunc(wait, func() { s.restart(gen) })
}

func (s *Supervisor) restart(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen || !s.want || s.proc != nil {
		return
	}
	s.timer = nil
	if err := s.startLocked(); err != nil {
		s.log.Error("restart failed", "err", err)
		s.emitLocked(Event{Kind: Exited, Err: err, When: s.clk.Now()})
		s.scheduleLocked(0)
	}
}

func (s *Supervisor) emitLocked(ev Event) {
	select {
	case s.events <- ev:
	default:
		s.log.Warn("service event dropped: nobody reads events", "kind", ev.Kind, "pid", ev.PID)
	}
}

// copyOutput copies one process's output until every holder of the pipe
// has closed it.
func (s *Supervisor) copyOutput(r *os.File) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.outMu.Lock()
			s.ring.write(buf[:n])
			_, _ = s.out.Write(buf[:n])
			s.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// ring keeps the last outputMax bytes written to it.
type ring struct {
	buf  []byte
	pos  int
	full bool
}

func (r *ring) write(p []byte) {
	if r.buf == nil {
		r.buf = make([]byte, outputMax)
	}
	if len(p) >= len(r.buf) {
		copy(r.buf, p[len(p)-len(r.buf):])
		r.pos, r.full = 0, true
		return
	}
	n := copy(r.buf[r.pos:], p)
	if n < len(p) {
		copy(r.buf, p[n:])
		r.full = true
	}
	r.pos = (r.pos + len(p)) % len(r.buf)
	if r.pos == 0 && len(p) > 0 {
		r.full = true
	}
}

func (r *ring) bytes() []byte {
	if !r.full {
		return slices.Clone(r.buf[:r.pos])
	}
	return append(slices.Clone(r.buf[r.pos:]), r.buf[:r.pos]...)
}

// prefixWriter starts every line with prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
	bol    bool // at the beginning of a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	var out []byte
	for len(b) > 0 {
		if p.bol {
			out = append(out, p.prefix...)
			p.bol = false
		}
		i := slices.Index(b, '\n')
		if i < 0 {
			out = append(out, b...)
			break
		}
		out = append(out, b[:i+1]...)
		b = b[i+1:]
		p.bol = true
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// signalGroup sends sig to the process group led by pid; a group that is
// already gone is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// groupAlive reports whether the process group pgid still has a member that
// is not a zombie. Zombies count as gone: once orphaned they wait for init,
// which in a container may never reap them.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pg, ok := procStat(pid)
		if ok && pg == pgid && state != 'Z' {
			return true
		}
	}
	return false
}

// procStat reads the state and process group of pid from /proc.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil || len(f[0]) != 1 {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	"WINCH": syscall.SIGWINCH, "PWR": syscall.SIGPWR,
}

// parseSignal accepts "SIGTERM", "TERM" (any case) or a number; "" is SIGTERM.
func parseSignal(name string) (syscall.Signal, error) {
	if name == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	if sig, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}

func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return "SIG" + name
		}
	}
	return sig.String()
}
