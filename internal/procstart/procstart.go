// Package procstart starts child processes from an OS thread that lives
// exactly as long as the child, so that Pdeathsig reaches the child only
// when this process dies.
//
// The kernel sends Pdeathsig when the *thread* that forked the child exits,
// not the process, and the Go runtime ends a thread whenever a goroutine
// returns locked to it. A child forked from an ordinary goroutine can
// therefore be killed the moment the runtime retires that thread (sandbox
// agents were SIGKILLed at start that way). Here the fork and the wait run
// on one goroutine locked to its thread: the thread ends after the child
// has been reaped, and dies with this process otherwise.
package procstart

import (
	"os/exec"
	"runtime"
)

// Start starts cmd on a locked thread and returns once it has started (or
// failed to). exited, if not nil, is called with cmd.Wait's result when the
// child has ended, on that thread.
func Start(cmd *exec.Cmd, exited func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends after the wait
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if exited != nil {
			exited(err)
		}
	}()
	return <-started
}

// Run is cmd.Run on a locked thread: it starts cmd and waits for it.
func Run(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	if err := Start(cmd, func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}
