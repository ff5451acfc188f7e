package folders_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/testbin"
)

var havenBin string

func TestMain(m *testing.M) { testbin.Main(m, &havenBin) }

// writer writes files into a node's folder, one after the other, of sizes
// from 1 KiB to 8 MiB, each in several writes, and notes when it closed
// each one, its size and its SHA-256 (computed while writing: the check
// reads only the copy). A test may first write one bigger file with
// writeOnce (the 100 MiB of the issue).
type writer struct {
	dir   string
	rnd   *rand.Rand
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	files map[string]written
	err   error
}

// written is a file the writer closed.
type written struct {
	closed time.Time
	size   int
	sum    [sha256.Size]byte
}

func newWriter(dir string) *writer {
	return &writer{dir: dir, rnd: rand.New(rand.NewPCG(1, 2)), stop: make(chan struct{}), done: make(chan struct{}), files: map[string]written{}}
}

func startWriter(dir, prefix string) *writer {
	w := newWriter(dir)
	w.start(prefix)
	return w
}

// start writes files under prefix until finish.
func (w *writer) start(prefix string) {
	go func() {
		defer close(w.done)
		sizes := []int{1 << 10, 10 << 10, 100 << 10, 1 << 20, 8 << 20}
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if err := w.writeOnce(fmt.Sprintf("%s/%03d/rec-%05d.bin", prefix, i/50, i), sizes[i%len(sizes)]); err != nil {
				w.fail(err)
				return
			}
		}
	}()
}

// writeOnce writes one file of size random bytes, 64 KiB at a time (as a
// recorder writes as it goes), and notes it once closed.
func (w *writer) writeOnce(name string, size int) error {
	p := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for off := 0; off < size; off += len(buf) {
		b := buf[:min(len(buf), size-off)]
		for j := 0; j < len(b); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], w.rnd.Uint64())
		}
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	wr := written{closed: time.Now(), size: size}
	h.Sum(wr.sum[:0])
	w.mu.Lock()
	w.files[name] = wr
	w.mu.Unlock()
	return nil
}

// waitDue waits until n files were closed more than max_lag ago.
func (w *writer) waitDue(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d files closed more than max_lag ago", n), 60*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		due := 0
		for _, f := range w.files {
			if time.Since(f.closed) > drill.SandboxMaxLag {
				due++
			}
		}
		return due >= n || w.err != nil
	})
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

func (w *writer) finish(t *testing.T) map[string]written {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	return w.files
}

// checkOn wants every file of files closed before cutoff on the folder at
// toDir, byte for byte (its SHA-256 and size); and every file there that
// is complete.
func checkOn(t *testing.T, toDir string, files map[string]written, cutoff time.Time) (due int) {
	t.Helper()
	for name, want := range files {
		size, sum, err := hashFile(filepath.Join(toDir, name))
		switch {
		case want.closed.Before(cutoff) && err != nil:
			t.Errorf("%s, closed %s before the fault (max_lag %s), is not on the new active: %v", name, cutoff.Sub(want.closed)+drill.SandboxMaxLag, drill.SandboxMaxLag, err)
		case err == nil && (size != want.size || sum != want.sum):
			t.Errorf("%s on the new active differs from the original (%d bytes, want %d; SHA-256 %x, want %x)", name, size, want.size, sum[:8], want.sum[:8])
		}
		if want.closed.Before(cutoff) {
			due++
		}
	}
	return due
}

// verdict is how a scenario's summary line ends: "all there" only if
// checkOn (or anything before it) reported nothing.
func verdict(t *testing.T) string {
	if t.Failed() {
		return "NOT all there (see the errors above)"
	}
	return "all there"
}

func hashFile(p string) (size int, sum [sha256.Size]byte, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, sum, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	h.Sum(sum[:0])
	return int(n), sum, err
}

// TestFoldersSurviveKillAndSwitchover runs three real agents replicating a
// folder; a writer produces files on the active. After kill -9 of the
// active agent, and after a switchover, every file closed more than
// max_lag before the fault is on the new active, byte for byte.
func TestFoldersSurviveKillAndSwitchover(t *testing.T) {
	t.Parallel()
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Timing: "ci", Folders: true})
	first := waitActive(t, sb, "")

	// One file of 100 MiB, written once before the others (not every few
	// writes: on a loaded 2-core machine with a shared disk that would
	// be minutes). Its shipping time, seconds there, is not max_lag's: the
	// small files wait until both standbys hold its full size; whether it
	// is whole, byte for byte, is checked on the new active after the fault.
	w := newWriter(sb.Node(first).Files)
	const big, bigName = 100 << 20, "kill/big-100MiB.bin"
	if err := w.writeOnce(bigName, big); err != nil {
		t.Fatal(err)
	}
	bigAt := time.Now()
	waitFor(t, "the 100 MiB file on both standbys", 120*time.Second, func() bool {
		for _, n := range []string{"n1", "n2", "n3"} {
			if fi, err := os.Stat(filepath.Join(sb.Node(n).Files, bigName)); n != first && (err != nil || fi.Size() != big) {
				return false
			}
		}
		return true
	})
	t.Logf("the 100 MiB file on both standbys %s after it was closed", time.Since(bigAt).Round(time.Millisecond))

	// kill -9 of the active agent while the writer writes.
	w.start("kill")
	w.waitDue(t, 20)
	fault := time.Now()
	if err := sb.StopAgent(first, syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	closed := w.finish(t)
	second := waitActive(t, sb, first)
	due := checkOn(t, sb.Node(second).Files, closed, fault.Add(-drill.SandboxMaxLag))
	t.Logf("kill -9 %s: %s active; %d files written, %d closed more than max_lag before the fault, %s", first, second, len(closed), due, verdict(t))
	if due == 0 || !closed[bigName].closed.Before(fault.Add(-drill.SandboxMaxLag)) {
		t.Fatal("no file, or not the 100 MiB one, was due: the test proved nothing")
	}
	// The new active says what the promotion lost (files within max_lag).
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last events answer: %.3000s", last)
		}
	}()
	waitFor(t, "the promotion's folder event", 20*time.Second, func() bool {
		out, err := sb.Haven(t.Context(), "events", "--json", "--limit", "200")
		last = out
		if err != nil {
			last += err.Error()
			return false
		}
		var evs []ha.Event
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			last += err.Error()
			return false
		}
		for _, ev := range evs {
			if ev.Kind == "folder" && ev.From == first && ev.To == second && strings.Contains(ev.Reason, "complete files of "+first) {
				t.Logf("event: %s", ev.Reason)
				return true
			}
		}
		return false
	})

	// A switchover while the writer writes on the new active.
	w = startWriter(sb.Node(second).Files, "switch")
	w.waitDue(t, 15)
	fault = time.Now()
	out, err := sb.Haven(t.Context(), "switchover", "--reason", "folders test")
	if err != nil {
		t.Fatalf("switchover: %v: %s", err, out)
	}
	closed = w.finish(t)
	// The one other live node is the switchover's target. (On a loaded
	// machine its checks may fail right after and hand the role back: the
	// files must be on it all the same.)
	third := ""
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != first && n != second {
			third = n
		}
	}
	due = checkOn(t, sb.Node(third).Files, closed, fault.Add(-drill.SandboxMaxLag))
	t.Logf("switchover %s -> %s (%s): %d files written, %d due, %s", second, third, strings.TrimSpace(out), len(closed), due, verdict(t))
}

func waitActive(t *testing.T, sb *drill.Sandbox, not string) string {
	t.Helper()
	a, err := sb.WaitActive(30*time.Second, not)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitFor waits until ok; a last (if given) is shown when it times out.
func waitFor(t *testing.T, what string, d time.Duration, ok func() bool, last ...*string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			if len(last) > 0 {
				t.Fatalf("timed out after %v waiting for %s (last seen: %s)", d, what, *last[0])
			}
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFoldersSurviveFreezeAndCut: three real agents, each in its own
// network namespace, replicate a folder while a writer writes on the
// active. The active agent frozen (SIGSTOP), then the next active cut
// off the network: each time every file closed more than max_lag before
// the fault is on the new active, byte for byte; and the frozen agent,
// let go, does not write to the others as an active any more.
func TestFoldersSurviveFreezeAndCut(t *testing.T) {
	t.Parallel()
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Netns: true, Timing: "ci", Folders: true})
	first := waitActive(t, sb, "")

	// SIGSTOP of the active agent while the writer writes.
	w := startWriter(sb.Node(first).Files, "freeze")
	w.waitDue(t, 15)
	fault := time.Now()
	if err := sb.Signal(first, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	closed := w.finish(t)
	second := waitActive(t, sb, first)
	due := checkOn(t, sb.Node(second).Files, closed, fault.Add(-drill.SandboxMaxLag))
	t.Logf("SIGSTOP %s: %s active; %d files written, %d closed more than max_lag before the fault, %s", first, second, len(closed), due, verdict(t))
	if due == 0 {
		t.Fatal("no file was due: the test proved nothing")
	}
	if err := sb.Signal(first, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The old active, let go, is fenced: a file written in its folder now
	// is not shipped (the others take writes only from the active they see).
	marker := filepath.Join(sb.Node(first).Files, "after-thaw.bin")
	if err := os.WriteFile(marker, []byte("written on the old active after it was let go"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The next active cut off the network while the writer writes on it.
	w = startWriter(sb.Node(second).Files, "cut")
	w.waitDue(t, 15)
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, err := os.Stat(filepath.Join(sb.Node(n).Files, "after-thaw.bin")); n != first && err == nil {
			t.Errorf("a file the old active wrote after it was let go is on %s", n)
		}
	}
	fault = time.Now()
	if err := sb.Cut(second); err != nil {
		t.Fatal(err)
	}
	closed = w.finish(t)
	third := waitActive(t, sb, second)
	due = checkOn(t, sb.Node(third).Files, closed, fault.Add(-drill.SandboxMaxLag))
	t.Logf("cut %s: %s active; %d files written, %d due, %s", second, third, len(closed), due, verdict(t))
	if err := sb.Heal(second); err != nil {
		t.Fatal(err)
	}
}
