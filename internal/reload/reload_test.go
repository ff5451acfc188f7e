package reload

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestOneHandlerRunsEveryPart: one SIGHUP to the process runs every part
// added, in order, and the process survives it.
func TestOneHandlerRunsEveryPart(t *testing.T) {
	var s Set
	got := make(chan string, 4)
	s.Add(func() { got <- "config" })
	s.Add(nil)
	s.Add(func() { got <- "tls" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.OnSignal(ctx)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var order []string
	for len(order) < 2 {
		select {
		case x := <-got:
			order = append(order, x)
		case <-time.After(30 * time.Second):
			t.Fatalf("after SIGHUP, ran only %v", order)
		}
	}
	if !slices.Equal(order, []string{"config", "tls"}) {
		t.Fatalf("ran %v, want config then tls", order)
	}
}
