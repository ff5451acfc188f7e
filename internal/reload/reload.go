// Package reload is a process's one SIGHUP handler: on each SIGHUP it runs,
// in the order they were added, what the parts of the process re-read (the
// config file's log level, the agent's and the proxy's TLS certificates).
package reload

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Set holds what to run on a SIGHUP. The zero value is ready to use.
type Set struct {
	mu  sync.Mutex
	fns []func()
}

// Add appends f to what a SIGHUP runs; a nil f is ignored.
func (s *Set) Add(f func()) {
	if f == nil {
		return
	}
	s.mu.Lock()
	s.fns = append(s.fns, f)
	s.mu.Unlock()
}

// Run runs every function added so far, in order.
func (s *Set) Run() {
	s.mu.Lock()
	fns := append([]func(){}, s.fns...)
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// OnSignal runs s on every SIGHUP until ctx ends. From the call on, a
// SIGHUP no longer stops the process (Go's default), so a reload from
// systemd or logrotate never costs a failover.
func (s *Set) OnSignal(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.Run()
			}
		}
	}()
}
