package service

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/service/contain"
)

// daemonWindow is how soon after its start a main process that exits with
// status 0 while others of its group live counts as having daemonised.
const daemonWindow = 3 * time.Second

// ErrDaemonised is the exit of a service command that put itself in the
// background: it exited with status 0 at once and left processes in its
// group. haven cannot supervise such a service; its leftovers are killed.
var ErrDaemonised = errors.New("the service command exited with status 0 at once and left processes running: it puts itself in the background; make it run in the foreground (nginx: daemon off;, redis-server: --daemonize no, postgres: run postgres rather than pg_ctl start)")

// WithGroup runs the service in g (a cgroup, or a process group with a
// marker) instead of only a process group of its own: Kill and Stop then
// kill everything in g, and g's guard kills it if the agent dies. The
// caller closes g after the supervisor's last Stop or Kill.
func WithGroup(g *contain.Group) Option {
	return func(s *Supervisor) { s.group = g }
}

// Containment says which containment is in force: "cgroup <dir>", or
// "process-group" and why.
func (s *Supervisor) Containment() string {
	if s.group == nil {
		return string(contain.ProcessGroup)
	}
	return s.group.Describe()
}

// ContainmentKind is contain.CGroup or contain.ProcessGroup.
func (s *Supervisor) ContainmentKind() contain.Kind {
	if s.group == nil {
		return contain.ProcessGroup
	}
	return s.group.Kind()
}

// killAll kills p's process group and, with a group, everything in it.
func (s *Supervisor) killAll(p *proc) error {
	err := signalGroup(p.pid, syscall.SIGKILL)
	if s.group != nil {
		err = errors.Join(err, s.group.Kill())
	}
	return err
}

// leftAlive reports whether anything of p's process group, or of the
// service's group, still runs.
func (s *Supervisor) leftAlive(p *proc) bool {
	if s.group != nil && s.group.Alive() {
		return true
	}
	return groupAlive(p.pid)
}

// daemonised turns the clean early exit of a main process that left others
// running into ErrDaemonised, with a warning; any other exit is returned
// as it is.
func (s *Supervisor) daemonised(p *proc, err error, ran time.Duration) error {
	if err != nil || ran > daemonWindow || !s.leftAlive(p) {
		return err
	}
	s.log.Warn("the service daemonised: its command exited with status 0 and left processes running; haven kills them and, by the restart policy, starts it again", "pid", p.pid, "ran", ran.Round(time.Millisecond), "hint", ErrDaemonised.Error())
	return fmt.Errorf("pid %d: %w", p.pid, ErrDaemonised)
}

// mergeVars returns vars with env added (env wins).
func mergeVars(vars, env map[string]string) map[string]string {
	out := make(map[string]string, len(vars)+len(env))
	for k, v := range vars {
		out[k] = v
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}
