package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/expand"
	"github.com/haven-ha/haven/internal/procstart"
)

// hookOutputMax is how much of a hook's output its error carries.
const hookOutputMax = 500

// Hook is a command run on a role change (on_promote, on_demote).
type Hook struct {
	Command []string
	Timeout time.Duration
}

// HookError is a failed hook: its command, why it failed and the start of
// its output. Unwrap gives the underlying error (an *exec.ExitError, a
// context error or a start error).
type HookError struct {
	Command string
	Reason  string // "exit status 3", "killed after timeout 5s", ...
	Output  string // first 500 bytes of stdout and stderr, merged
	Err     error
}

func (e *HookError) Error() string {
	msg := fmt.Sprintf("hook %q: %s", e.Command, e.Reason)
	if e.Output != "" {
		msg += "; output: " + e.Output
	}
	return msg
}

func (e *HookError) Unwrap() error { return e.Err }

// RunHook runs h.Command, expanded from vars, with os.Environ plus vars plus
// env (HAVEN_ROLE, HAVEN_EPOCH) in its environment, and waits for it. The
// hook runs in its own process group; when h.Timeout passes or ctx ends, the
// whole group is killed. An empty command does nothing. A failure is a
// *HookError naming the command, the exit status and the first 500 bytes
// of its output. log may be nil.
func RunHook(ctx context.Context, h Hook, vars map[string]string, env map[string]string, log *slog.Logger) error {
	// ${HAVEN_EPOCH} and ${HAVEN_ROLE} in the command are expanded too.
	argv := expand.All(h.Command, mergeVars(vars, env))
	if len(argv) == 0 {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := strings.Join(argv, " ")
	hctx := ctx
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	out := &headBuffer{max: hookOutputMax}
	cmd := exec.CommandContext(hctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), expand.Environ(vars)...), expand.Environ(env)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	// A hook may leave a daemon behind; do not wait for it to close the output.
	cmd.WaitDelay = hookWaitDelay

	clk := clock.Real{} // a hook is a real process: its duration is real time
	start := clk.Now()
	log.Info("running hook", "hook", name, "timeout", h.Timeout)
	err := procstart.Run(cmd) // Pdeathsig: fork from a thread that outlives the child
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; a child it left behind holds the output
	}
	took := clk.Since(start).Round(time.Millisecond)
	output := strings.TrimSpace(out.String())
	if err == nil {
		log.Info("hook done", "hook", name, "took", took)
		if output != "" {
			log.Debug("hook output", "hook", name, "output", output)
		}
		return nil
	}
	herr := &HookError{Command: name, Reason: err.Error(), Output: output, Err: err}
	var ee *exec.Error
	switch {
	case ctx.Err() != nil:
		herr.Reason, herr.Err = "killed: "+ctx.Err().Error(), ctx.Err()
	case hctx.Err() != nil:
		herr.Reason, herr.Err = "killed after timeout "+h.Timeout.String(), hctx.Err()
	case errors.As(err, &ee):
		herr.Reason = ee.Err.Error()
	}
	log.Warn("hook failed", "hook", name, "took", took, "reason", herr.Reason, "output", output)
	return herr
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	max int
	b   []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string { return string(h.b) }
