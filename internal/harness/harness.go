// Package harness runs the haven processes of a throwaway cluster on this
// machine — the drill's sandbox, the end-to-end tests, the virtual-IP lab —
// and asks them where the cluster stands.
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/haven-ha/haven/internal/api"
	"github.com/haven-ha/haven/internal/netlab"
	"github.com/haven-ha/haven/internal/ports"
	"github.com/haven-ha/haven/internal/procstart"
)

// CITimings are the timing lines of a throwaway cluster's config on a
// loaded 2-core machine (the drill's "ci" sandbox, the tests): the lan
// preset with a 3 s lease and a wider renew window. The tests check
// behaviour, not speed (speed lives in bench/).
const CITimings = "timing: lan\ntimings: {lease_ttl: 3s, renew_interval: 200ms, renew_timeout: 600ms, fence_margin: 500ms, etcd_heartbeat: 50ms, etcd_election: 500ms}"

// CILease is the lease_ttl of CITimings.
const CILease = 3 * time.Second

// Proc is a haven process (or any child) of a throwaway cluster.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts bin with args, its output to out; in network namespace ns
// when ns is set (ip netns exec, which execs bin in place: the Proc's pid
// is bin's own). It runs in a process group of its own and is killed when
// this process dies.
//
// That is Pdeathsig, which the kernel sends when the *thread* that forked
// the child ends, not the process; and the Go runtime ends a thread
// whenever a goroutine returns locked to it, which the service supervisor
// and exec checks of in-process agents (tests beside a sandbox) do for
// every process they run. So the child is forked from a goroutine locked
// to its thread that waits for it (procstart): the thread lives exactly as
// long as the child.
func Start(ns string, out io.Writer, bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	if ns != "" {
		cmd = netlab.Command(ns, bin, args...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	if err := procstart.Start(cmd, func(error) { close(p.done) }); err != nil {
		return nil, fmt.Errorf("start %s %v: %w", bin, args, err)
	}
	return p, nil
}

// Running reports whether p has been started and has not exited.
func (p *Proc) Running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Done is closed when p has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is p's process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to p.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exit says how p ended ("running" while it runs, "not started" for a
// nil Proc).
func (p *Proc) Exit() string {
	if p == nil {
		return "not started"
	}
	if p.Running() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// Wait waits up to d for p to exit and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// Stop stops every running one of ps as an operator would: SIGCONT (for a
// frozen one) and SIGTERM to all at once, then waits up to grace for each.
// One still running then gets SIGQUIT (a Go program writes its goroutines
// to its output, for the failure's report), a few seconds more, and SIGKILL
// to its process group. Stop returns the ones that did not exit within
// grace of SIGTERM.
func Stop(grace time.Duration, ps ...*Proc) (late []*Proc) {
	var running []*Proc
	for _, p := range ps {
		if p.Running() {
			running = append(running, p)
			_ = p.Signal(syscall.SIGCONT)
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range running {
		if p.Wait(grace) {
			continue
		}
		late = append(late, p)
		_ = p.Signal(syscall.SIGQUIT)
		if !p.Wait(3 * time.Second) {
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			// Its output is read next: wait until nothing writes to it.
			p.Wait(5 * time.Second)
		}
	}
	return late
}

// Addrs are one node's addresses on loopback in a throwaway cluster.
type Addrs struct {
	API, Peer, Client string // the agent's API, its etcd member's peer and client URLs' hosts
	Service           string // where its service listens (SERVICE_ADDR)
}

// Loopback picks the addresses of n nodes on 127.0.0.1 (package ports:
// each port claimed for this process's life) and extra more ports.
func Loopback(n, extra int) ([]Addrs, []int, error) {
	ps, err := ports.Free(4*n + extra)
	if err != nil {
		return nil, nil, err
	}
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	out := make([]Addrs, n)
	for i := range out {
		p := ps[4*i:]
		out[i] = Addrs{API: at(p[0]), Peer: at(p[1]), Client: at(p[2]), Service: at(p[3])}
	}
	return out, ps[4*n:], nil
}

// EtcdLeader names the embedded etcd member that leads raft as the agent
// at addr sees it; "" when it cannot tell (or the store is not embedded
// etcd).
func EtcdLeader(ctx context.Context, c *api.Client, addr string) string {
	ms, err := c.Members(ctx, addr)
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.Leader {
			return m.Name
		}
	}
	return ""
}

// MoveEtcdLeader asks the etcd member at endpoint (a URL; the member that
// leads raft) to hand leadership to the member called to; tc is the
// client TLS config (nil without TLS).
func MoveEtcdLeader(endpoint string, tc *tls.Config, to string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("etcd members: %w", err)
	}
	for _, m := range ms.Members {
		if m.Name == to {
			_, err := cli.MoveLeader(ctx, m.ID)
			return err
		}
	}
	return fmt.Errorf("no etcd member %s", to)
}

// Until checks cond every 20 ms until it holds (true) or d has passed
// (false).
func Until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Descendants lists pid's descendants, children first, as /proc shows
// them now.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')') // the command name may hold anything
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		for _, c := range children[p] {
			out = append(out, c)
			todo = append(todo, c)
		}
	}
	return out
}
