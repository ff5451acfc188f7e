// Package contain keeps a service's whole process tree in one group that
// can be killed as a whole, also after the agent that started it died: a
// cgroup v2 group where the kernel lets haven make one, else a process group.
//
// Three layers make sure nothing of the service outlives its agent:
//
//  1. The service starts inside the group: with cgroups through clone3
//     (CLONE_INTO_CGROUP), so even a child forked in its first instruction
//     is inside; the fallback gives it its own process group. Workers and
//     daemons that double-fork stay in the cgroup; setsid does not get them
//     out of it.
//  2. A guard, a tiny shell process started beside the agent, holds the read
//     end of a pipe whose write end only the agent has. However the agent
//     dies (SIGKILL too), the kernel closes its end, the guard reads EOF and
//     kills the group: cgroup.kill, or in the fallback the process group
//     plus every process carrying the group's marker in its environment.
//  3. Open sweeps what an earlier run left before the new one starts: the
//     cgroup recorded in the state file, and every process carrying the
//     marker (an older guard first, so that it cannot act late on the new
//     group).
//
// The process-group fallback is weaker: a process that leaves the group
// (setsid) and clears its environment escapes it. Kind says which one is in
// force; the agent shows it in status, the dashboard and the metrics.
package contain

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind is the containment in force.
type Kind string

// Kinds of containment.
const (
	CGroup       Kind = "cgroup"        // a cgroup v2 group, killed with cgroup.kill
	ProcessGroup Kind = "process-group" // a process group plus an environment marker
)

// Mode is the containment asked for (service.containment).
type Mode string

// Modes of Options.Mode.
const (
	ModeAuto         Mode = "auto"          // a cgroup where possible, else a process group
	ModeCGroup       Mode = "cgroup"        // a cgroup or an error
	ModeProcessGroup Mode = "process-group" // never a cgroup
)

// Environment variables the group sets.
const (
	MarkerEnv = "HAVEN_CONTAIN"       // in the service's environment: the group's ID
	guardEnv  = "HAVEN_CONTAIN_GUARD" // in the guard's environment: the group's ID
)

// stateFile is the record of the group in Options.StateDir.
const stateFile = "service-group.json"

// sweepWait bounds how long Open and Close wait for a killed group to empty.
const sweepWait = 5 * time.Second

// Options configure a Group.
type Options struct {
	// Key identifies the group on this host across runs of the agent, e.g.
	// the absolute path of the node's data directory. It must differ
	// between agents that run at the same time.
	Key string
	// Name is a readable part of the cgroup's name, e.g. "<cluster>-<node>".
	Name string
	// StateDir is where the group is recorded for the sweep at the next
	// start ("" keeps no record; the marker sweep still runs).
	StateDir string
	// Mode is ModeAuto (the default), ModeCGroup or ModeProcessGroup.
	Mode Mode
	// Log may be nil.
	Log *slog.Logger
	// mountinfo and selfCgroup replace /proc/self/mountinfo and
	// /proc/self/cgroup in tests.
	mountinfo, selfCgroup string
}

// Group is one service's process group or cgroup, and its guard. All
// methods are safe for concurrent use.
type Group struct {
	id     string // the marker value
	kind   Kind
	path   string // the cgroup directory; "" for a process group
	reason string // why a process group when a cgroup was not possible
	state  string // the state file, "" for none
	log    *slog.Logger

	mu     sync.Mutex
	leafFD int    // open on the newest run's leaf cgroup; -1 when none
	runs   int    // leaf cgroups made so far
	pgid   int    // the last started process group, 0 when none
	guard  *guard // nil while none runs
	closed bool
}

// guard is one run of the guard process.
type guard struct {
	cmd  *exec.Cmd
	w    *os.File      // the agent's end of the guard's stdin
	done chan struct{} // closed once the guard has been reaped
}

// record is what the state file holds.
type record struct {
	Kind  Kind   `json:"kind"`
	Path  string `json:"path,omitempty"`
	Guard int    `json:"guard_pid,omitempty"`
	Boot  string `json:"boot_id,omitempty"`
}

// Open sweeps what an earlier run of the same group left, makes the group
// and starts its guard.
func Open(o Options) (*Group, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Key == "" {
		return nil, errors.New("contain: Options.Key is empty")
	}
	sum := sha256.Sum256([]byte(o.Key))
	g := &Group{id: hex.EncodeToString(sum[:8]), log: o.Log, leafFD: -1}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("contain: state directory: %w", err)
		}
		g.state = filepath.Join(o.StateDir, stateFile)
	}
	g.sweep()

	switch o.Mode {
	case "", ModeAuto, ModeCGroup:
		path, err := makeCgroup(o, g.id)
		if err == nil {
			g.kind, g.path = CGroup, path
			break
		}
		if o.Mode == ModeCGroup {
			return nil, fmt.Errorf("contain: %w (set service.containment to auto or process-group)", err)
		}
		g.kind, g.reason = ProcessGroup, err.Error()
	case ModeProcessGroup:
		g.kind, g.reason = ProcessGroup, "chosen in the config"
	default:
		return nil, fmt.Errorf("contain: unknown mode %q; use auto, cgroup or process-group", o.Mode)
	}
	if err := g.startGuard(); err != nil {
		g.closeCgroup()
		return nil, err
	}
	g.save()
	g.log.Info("service containment", "kind", g.kind, "cgroup", g.path, "reason", g.reason)
	return g, nil
}

// Kind is the containment in force.
func (g *Group) Kind() Kind { return g.kind }

// Path is the cgroup's directory, "" for a process group.
func (g *Group) Path() string { return g.path }

// Describe says in a few words which containment is in force and why.
func (g *Group) Describe() string {
	if g.kind == CGroup {
		return "cgroup " + g.path
	}
	return "process-group (no cgroup: " + g.reason + ")"
}

// Env is the marker to put in the service's environment.
func (g *Group) Env() string { return MarkerEnv + "=" + g.id }

// Prepare sets attr so that the process starts inside the group: in its own
// process group, and with cgroups in a new leaf cgroup of the group's, made
// for this run.
//
// A leaf per run, because a cgroup that has been killed with cgroup.kill
// kills every process later cloned into it (CLONE_INTO_CGROUP) on the
// kernels tested (6.18): the child's kill sequence is taken from the
// parent's cgroup, the check from the target's. A fresh leaf has never been
// killed. cgroup.kill on the group's cgroup still reaches every leaf.
func (g *Group) Prepare(attr *syscall.SysProcAttr) error {
	attr.Setpgid = true
	if g.kind != CGroup {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeLeafLocked()
	removeLeaves(g.path) // the empty ones of earlier runs
	g.runs++
	leaf := filepath.Join(g.path, "run-"+strconv.Itoa(g.runs))
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", leaf, err)
	}
	fd, err := syscall.Open(leaf, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", leaf, err)
	}
	g.leafFD = fd
	attr.UseCgroupFD, attr.CgroupFD = true, fd
	return nil
}

func (g *Group) closeLeafLocked() {
	if g.leafFD >= 0 {
		_ = syscall.Close(g.leafFD)
		g.leafFD = -1
	}
}

// Started records that a process started with Prepare runs as pid (the
// leader of its process group) and tells the guard.
func (g *Group) Started(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pgid = pid
	g.closeLeafLocked() // the process is in it
	if g.guard != nil && g.kind == ProcessGroup {
		if _, err := fmt.Fprintf(g.guard.w, "%d\n", pid); err != nil {
			g.log.Warn("cannot tell the containment guard the new process group", "err", err)
		}
	}
}

// Kill kills every process of the group at once (SIGKILL) and returns
// without waiting for them to be gone.
func (g *Group) Kill() error {
	g.mu.Lock()
	pgid := g.pgid
	g.mu.Unlock()
	var errs []error
	if pgid > 0 {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill process group %d: %w", pgid, err))
		}
	}
	if g.kind == CGroup {
		if err := killCgroup(g.path); err != nil {
			errs = append(errs, err)
		}
	} else {
		killMarked(MarkerEnv+"="+g.id, g.log)
	}
	return errors.Join(errs...)
}

// Alive reports whether a live process (not a zombie) is left in the group.
func (g *Group) Alive() bool {
	g.mu.Lock()
	pgid := g.pgid
	g.mu.Unlock()
	if g.kind == CGroup {
		return len(cgroupPIDs(g.path)) > 0
	}
	return pgid > 0 && pgroupAlive(pgid)
}

// PIDs lists the live processes of the group (for a process group, only
// those still in it).
func (g *Group) PIDs() []int {
	if g.kind == CGroup {
		return cgroupPIDs(g.path)
	}
	g.mu.Lock()
	pgid := g.pgid
	g.mu.Unlock()
	var pids []int
	eachProc(func(pid int) {
		if st, pg, ok := ProcStat(pid); ok && pg == pgid && st != 'Z' {
			pids = append(pids, pid)
		}
	})
	return pids
}

// Close kills what is left of the group, removes the cgroup and stops the
// guard.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	gd := g.guard
	g.guard = nil
	g.mu.Unlock()
	err := g.Kill()
	g.waitEmpty()
	if gd != nil {
		gd.stop()
	}
	g.closeCgroup()
	if g.state != "" {
		_ = os.Remove(g.state)
	}
	return err
}

// guardWait bounds how long Close waits for the guard to exit.
const guardWait = 2 * time.Second

// stop ends the guard without its kill: Close has killed the group and
// swept the marked processes already. A guard that has not exited within
// guardWait (frozen, or starved on a loaded machine) is killed, so that
// Close, and the agent's shutdown with it, never waits on the guard.
func (gd *guard) stop() {
	_, _ = io.WriteString(gd.w, guardStop+"\n")
	_ = gd.w.Close()
	select {
	case <-gd.done:
		return
	case <-time.After(guardWait):
	}
	_ = gd.cmd.Process.Kill()
	select {
	case <-gd.done:
	case <-time.After(guardWait):
	}
}

func (g *Group) closeCgroup() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeLeafLocked()
	if g.path != "" {
		removeLeaves(g.path)
		if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.log.Warn("cannot remove the service's cgroup", "cgroup", g.path, "err", err)
		}
	}
}

func (g *Group) waitEmpty() {
	deadline := time.Now().Add(sweepWait)
	for g.Alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// guardStop is the line Close sends the guard: exit without killing.
const guardStop = "stop"

// guardScript runs in the guard: it ignores the signals a terminal or a
// service manager sends to everyone, waits until the agent's end of its
// stdin closes, then kills the group (and removes an emptied cgroup). $1 is
// the cgroup ("" for none), $2 the marker; a process-group number arrives as
// a line on stdin at each start, and guardStop when the agent closes the
// group itself. The marked processes are found with one grep over every
// /proc/PID/environ (-z: NUL-separated entries, GNU's and BusyBox's grep):
// a grep per process took 44 s on a loaded machine with 700 processes.
const guardScript = `trap '' INT HUP TERM QUIT PIPE
pg=
while read -r l; do [ "$l" = ` + guardStop + ` ] && exit 0; pg=$l; done
if [ -n "$1" ]; then
	echo 1 > "$1/cgroup.kill"
	i=0
	while [ $i -lt 100 ] && grep -q '^populated 1' "$1/cgroup.events" 2>/dev/null; do sleep 0.05; i=$((i+1)); done
	rmdir "$1"/run-* "$1" 2>/dev/null
	exit 0
fi
[ -n "$pg" ] && kill -9 "-$pg" 2>/dev/null
for f in $(grep -lsxzF "$2" /proc/[0-9]*/environ); do
	p=${f#/proc/}
	kill -9 "${p%/environ}" 2>/dev/null
done
exit 0
`

// startGuard starts the guard process.
func (g *Group) startGuard() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("contain: guard pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", guardScript, "haven-contain-guard", g.path, MarkerEnv+"="+g.id)
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", guardEnv + "=" + g.id}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("contain: start the guard (/bin/sh): %w", err)
	}
	gd := &guard{cmd: cmd, w: w, done: make(chan struct{})}
	g.mu.Lock()
	g.guard = gd
	g.mu.Unlock()
	go g.watchGuard(gd)
	return nil
}

// watchGuard reaps the guard and starts a new one if it died while the
// group is open.
func (g *Group) watchGuard(gd *guard) {
	err := gd.cmd.Wait()
	close(gd.done)
	g.mu.Lock()
	current := g.guard == gd
	closed := g.closed
	pgid := g.pgid
	if current {
		_ = gd.w.Close()
		g.guard = nil
	}
	g.mu.Unlock()
	if !current || closed {
		return
	}
	g.log.Warn("the service's containment guard died; starting a new one", "err", err)
	time.Sleep(100 * time.Millisecond)
	if err := g.startGuard(); err != nil {
		g.log.Error("cannot restart the containment guard: the service may outlive a crash of the agent", "err", err)
		return
	}
	if pgid > 0 {
		g.Started(pgid)
	}
	g.save()
}

// save records the group for the next start's sweep.
func (g *Group) save() {
	if g.state == "" {
		return
	}
	g.mu.Lock()
	rec := record{Kind: g.kind, Path: g.path, Boot: bootID()}
	if g.guard != nil {
		rec.Guard = g.guard.cmd.Process.Pid
	}
	g.mu.Unlock()
	b, _ := json.Marshal(rec)
	tmp := g.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, g.state)
		if err != nil {
			g.log.Warn("cannot record the service's group", "file", g.state, "err", err)
		}
	}
}

// sweep kills what an earlier run left: its guard (so that it cannot act
// on the new group), the recorded cgroup and every process carrying the
// marker.
func (g *Group) sweep() {
	var rec record
	if g.state != "" {
		if b, err := os.ReadFile(g.state); err == nil {
			_ = json.Unmarshal(b, &rec)
		}
	}
	killMarked(guardEnv+"="+g.id, g.log)
	if rec.Kind == CGroup && rec.Path != "" && rec.Boot == bootID() {
		if _, err := os.Stat(rec.Path); err == nil {
			if pids := cgroupPIDs(rec.Path); len(pids) > 0 {
				g.log.Warn("killing what an earlier run of the service left in its cgroup", "cgroup", rec.Path, "pids", pids)
			}
			_ = killCgroup(rec.Path)
			waitCgroupEmpty(rec.Path)
			removeLeaves(rec.Path)
			_ = os.Remove(rec.Path)
		}
	}
	killMarked(MarkerEnv+"="+g.id, g.log)
}

// makeCgroup creates the service's cgroup as a child of the agent's own
// (under systemd, give the unit Delegate=yes) and returns its directory.
// A group of that name left by an earlier run is killed and reused.
func makeCgroup(o Options, id string) (string, error) {
	mi, sc := o.mountinfo, o.selfCgroup
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	if sc == "" {
		sc = "/proc/self/cgroup"
	}
	parent, err := ownCgroup(mi, sc)
	if err != nil {
		return "", err
	}
	path := filepath.Join(parent, "haven-"+sanitize(o.Name)+"-"+id[:8]+".service")
	if err := os.Mkdir(path, 0o755); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create cgroup %s: %w", path, err)
		}
		_ = killCgroup(path)
		waitCgroupEmpty(path)
		removeLeaves(path)
	}
	if _, err := os.Stat(filepath.Join(path, "cgroup.kill")); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("cgroup %s has no cgroup.kill (kernel older than 5.14?)", path)
	}
	return path, nil
}

// ownCgroup finds the directory of this process's cgroup v2 group from the
// cgroup2 mount in mountinfo and the "0::" line of the cgroup file.
func ownCgroup(mountinfo, cgroupFile string) (string, error) {
	mount, root, err := cgroup2Mount(mountinfo)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", cgroupFile, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rel, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		rel = strings.TrimSuffix(rel, " (deleted)")
		if root != "/" {
			if rel != root && !strings.HasPrefix(rel, root+"/") {
				return "", fmt.Errorf("this process's cgroup %s is outside the cgroup2 mount's root %s", rel, root)
			}
			rel = strings.TrimPrefix(rel, root)
		}
		return filepath.Join(mount, rel), nil
	}
	return "", fmt.Errorf("%s has no cgroup v2 entry (0::)", cgroupFile)
}

// cgroup2Mount returns the mount point and root of the first cgroup2 mount.
func cgroup2Mount(mountinfo string) (mount, root string, err error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", mountinfo, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 || qf[0] != "cgroup2" {
			continue
		}
		return unescape(pf[4]), unescape(pf[3]), nil
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("read %s: %w", mountinfo, err)
	}
	return "", "", errors.New("no cgroup2 file system is mounted")
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func killCgroup(path string) error {
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill cgroup %s: %w", path, err)
	}
	return nil
}

func waitCgroupEmpty(path string) {
	deadline := time.Now().Add(sweepWait)
	for len(cgroupPIDs(path)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// removeLeaves removes the empty run-N leaves of the cgroup at path.
func removeLeaves(path string) {
	leaves, _ := filepath.Glob(filepath.Join(path, "run-*"))
	for _, l := range leaves {
		_ = os.Remove(l) // EBUSY while a process is in it
	}
}

// cgroupPIDs lists the live processes in the cgroup at path and in its
// run-N leaves.
func cgroupPIDs(path string) []int {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil
	}
	leaves, _ := filepath.Glob(filepath.Join(path, "run-*", "cgroup.procs"))
	for _, l := range leaves {
		lb, _ := os.ReadFile(l)
		b = append(append(b, '\n'), lb...)
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if st, _, ok := ProcStat(pid); ok && st != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pgroupAlive reports whether the process group pgid has a member that is
// not a zombie. Zombies count as gone: once orphaned they wait for init,
// which in a container may never reap them.
func pgroupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	found := false
	eachProc(func(pid int) {
		if st, pg, ok := ProcStat(pid); ok && pg == pgid && st != 'Z' {
			found = true
		}
	})
	return found
}

// killMarked kills every process but this one whose environment holds
// marker ("NAME=value").
func killMarked(marker string, log *slog.Logger) {
	self := os.Getpid()
	want := []byte(marker)
	eachProc(func(pid int) {
		if pid == self {
			return
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			return
		}
		for v := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(v, want) {
				log.Warn("killing a process an earlier run of the service left", "pid", pid, "comm", comm(pid), "marker", marker)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
		}
	})
}

func eachProc(f func(pid int)) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			f(pid)
		}
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// ProcStat reads the state and process group of pid from /proc.
func ProcStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
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
