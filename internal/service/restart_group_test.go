package service

import (
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/service/contain"
)

// A service killed from outside restarts in its group, and the new run
// lives: the group's kill of the old run's leftovers must not hit it.
func TestRestartInGroup(t *testing.T) {
	for _, mode := range []string{string(contain.ModeAuto), string(contain.ModeProcessGroup)} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			g, err := contain.Open(contain.Options{Key: dir, Name: "test-restart", StateDir: dir, Mode: contain.Mode(mode)})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			s, out := newSup(t, Options{Command: sh("sleep 1000 & exec sleep 1000"), Restart: "always", RestartDelay: 10 * time.Millisecond}, nil)
			s.group = g
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			first := expectEvent(t, s, Started)
			if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			expectEvent(t, s, Exited)
			second := expectEvent(t, s, Started)
			noEvent(t, s, 300*time.Millisecond)
			if !alive(second.PID) {
				t.Fatalf("the restarted service died; output %q", out.String())
			}
		})
	}
}
