package folders

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sameFiles writes n small files below dirA and the same (content and
// modification time) below dirB: a standby that already holds the folder.
func sameFiles(t testing.TB, dirA, dirB string, n int) {
	t.Helper()
	mt := time.Now().Add(-time.Hour)
	for _, dir := range []string{dirA, dirB} {
		for d := range (n + 999) / 1000 {
			if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			p := filepath.Join(dir, fmt.Sprintf("d%03d/f%06d", i/1000, i))
			if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBigFolderPlansRarely: while one file of a folder of 20,000 is
// written continuously, the active plans about once every ten times what a
// plan costs (not after every write: in a folder of 100,000 files that was
// 0.85 of a core per standby), and does not send its list of complete
// files again, since that set does not change.
func TestBigFolderPlansRarely(t *testing.T) {
	t.Parallel()
	const n = 20000
	p := newPairPrepared(t, Folder{Name: "rec", Quiet: 2 * time.Second}, time.Minute, func(a, b string) { sameFiles(t, a, b, n) }) // quiet: longer than any pause of the writer on a loaded machine
	var snd *sender
	waitFor(t, "the sender", 20*time.Second, func() bool { snd = p.a.sender("rec"); return snd != nil })
	waitFor(t, "n2 seen in sync and the list sent", 60*time.Second, func() bool {
		st := p.a.Stats()
		return len(st) == 1 && st[0].Files == 0 && snd.sources.Load() >= 1
	})
	plans0, nanos0, src0 := snd.plans.Load(), snd.planNanos.Load(), snd.sources.Load()
	f, err := os.Create(filepath.Join(p.dirA, "growing.rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	// A recorder writing as it goes: for 3 s, and on until the sender has
	// planned at least once (on a loaded machine its first plan of the
	// 20,000 files can come later than 3 s; CI saw none in 3 s at load 20).
	for time.Since(start) < 3*time.Second || (snd.plans.Load() == plans0 && time.Since(start) < 60*time.Second) {
		if _, err := f.Write(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	plans, spent, srcs := snd.plans.Load()-plans0, time.Duration(snd.planNanos.Load()-nanos0), snd.sources.Load()-src0
	t.Logf("%d plans in %s, %s planning (%.0f%%); %d lists sent", plans, el.Round(time.Millisecond), spent.Round(time.Millisecond), 100*spent.Seconds()/el.Seconds(), srcs)
	if srcs != 0 {
		t.Errorf("the list of %d complete files was sent %d times while only a file being written changed", n, srcs)
	}
	// Spaced by ten times a plan's cost, at most a second: on a loaded
	// machine (where a plan's wall time grows) as on a quiet one. Planning
	// after every write instead makes them cost+20 ms apart.
	if plans == 0 {
		t.Fatal("no plan while a file was written")
	}
	mean := spent / time.Duration(plans)
	want := max(el.Seconds()/(10*mean.Seconds()), el.Seconds()/maxReplan.Seconds())*1.5 + 2
	if float64(plans) > want {
		t.Errorf("%d plans in %s (%s each); want at most %.0f: one every ten times a plan's cost, at most a second apart", plans, el.Round(time.Millisecond), mean.Round(time.Microsecond), want)
	}
}
