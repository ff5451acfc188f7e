package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHookEnvironment(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"HAVEN_NODE": "n2", "VIP": "10.0.0.9", "DIR": dir}
	env := map[string]string{"HAVEN_ROLE": "active", "HAVEN_EPOCH": "12"}
	h := Hook{Command: sh(`echo "$HAVEN_NODE $HAVEN_ROLE $HAVEN_EPOCH $VIP $1" > "$DIR/out"`), Timeout: wait}
	h.Command = append(h.Command, "hook", "${VIP}@${HAVEN_EPOCH}")
	if err := RunHook(context.Background(), h, vars, env, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), "n2 active 12 10.0.0.9 10.0.0.9@12"; got != want {
		t.Fatalf("hook saw %q, want %q", got, want)
	}
}

func TestHookEmpty(t *testing.T) {
	if err := RunHook(context.Background(), Hook{}, nil, nil, nil); err != nil {
		t.Fatalf("empty hook: %v", err)
	}
}

func TestHookFailure(t *testing.T) {
	h := Hook{Command: sh(`echo "cannot reach 10.0.0.1"; echo "giving up" >&2; exit 3`), Timeout: wait}
	err := RunHook(context.Background(), h, nil, nil, nil)
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("RunHook: %v, want a *HookError", err)
	}
	msg := err.Error()
	for _, want := range []string{"sh -c", "exit status 3", "cannot reach 10.0.0.1", "giving up"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestHookOutputIsCut(t *testing.T) {
	h := Hook{Command: sh(`head -c 100000 /dev/zero | tr '\0' x; exit 1`), Timeout: wait}
	var he *HookError
	if err := RunHook(context.Background(), h, nil, nil, nil); !errors.As(err, &he) {
		t.Fatalf("RunHook: %v", err)
	}
	if len(he.Output) != hookOutputMax {
		t.Fatalf("output of %d bytes, want %d", len(he.Output), hookOutputMax)
	}
}

func TestHookNotFound(t *testing.T) {
	err := RunHook(context.Background(), Hook{Command: []string{"/no/such/hook"}}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `hook "/no/such/hook"`) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("RunHook: %v", err)
	}
}

// At its timeout the hook's whole process group is killed.
func TestHookTimeout(t *testing.T) {
	dir := t.TempDir()
	h := Hook{Command: sh(`echo starting; sleep 100 & echo $! > "$DIR/gc.pid"; wait`), Timeout: 300 * time.Millisecond}
	start := time.Now()
	err := RunHook(context.Background(), h, map[string]string{"DIR": dir}, nil, nil)
	if took := time.Since(start); took > wait {
		t.Fatalf("RunHook took %s", took)
	}
	if err == nil || !strings.Contains(err.Error(), "killed after timeout 300ms") || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("RunHook: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap DeadlineExceeded", err)
	}
	waitGone(t, readPID(t, filepath.Join(dir, "gc.pid")))
}

// The caller's context ending kills the hook too.
func TestHookContext(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "gc.pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := Hook{Command: []string{"sh", "-c", `sleep 100 & echo $! > "$0"; wait`, pidFile}, Timeout: time.Hour}
	done := make(chan error, 1)
	go func() { done <- RunHook(ctx, h, nil, nil, nil) }()
	pid := readPID(t, pidFile)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "killed: context canceled") {
			t.Fatalf("RunHook: %v, want canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("RunHook did not return after its context ended")
	}
	waitGone(t, pid)
}

// A hook that leaves a daemon behind still returns when its main process exits.
func TestHookLeavesChild(t *testing.T) {
	dir := t.TempDir()
	h := Hook{Command: sh(`sleep 100 & echo $! > "$DIR/gc.pid"; echo ok`), Timeout: wait}
	if err := RunHook(context.Background(), h, map[string]string{"DIR": dir}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pid := readPID(t, filepath.Join(dir, "gc.pid"))
	t.Cleanup(func() { _ = killPID(pid) })
}

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
