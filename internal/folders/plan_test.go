package folders

import (
	"fmt"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	now := time.Unix(1000, 0)
	quiet := 500 * time.Millisecond
	l := func(p string, size int64, age time.Duration) Local {
		ch := now.Add(-age)
		return Local{Entry: Entry{Path: p, Size: size, MTime: ch.UnixNano()}, Changed: ch}
	}
	local := map[string]Local{
		"same":    l("same", 10, time.Hour),
		"old":     l("old", 100, 10*time.Second),
		"older":   l("older", 5, 20*time.Second),
		"writing": l("writing", 7, 100*time.Millisecond),
		"changed": l("changed", 3, 2*time.Second),
	}
	peer := map[string]Entry{
		"same":    local["same"].Entry,
		"changed": {Path: "changed", Size: 3, MTime: 1},
		"gone":    {Path: "gone", Size: 9},
		"never":   {Path: "never", Size: 9}, // the peer has it, this node never did
	}
	steps, lag, wait := Plan(local, peer, now, quiet, map[string]bool{"gone": true})
	var got []string
	for _, s := range steps {
		op := "ship "
		if s.Op == OpDelete {
			op = "delete "
		}
		got = append(got, op+s.File.Path)
	}
	want := []string{"delete gone", "ship older", "ship old", "ship changed"}
	if len(got) != len(want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("steps %v, want %v", got, want)
		}
	}
	if lag.Files != 5 || lag.Bytes != 100+5+7+3 || lag.Oldest != 20*time.Second || lag.OldestPath != "older" {
		t.Errorf("lag %+v", lag)
	}
	if wait != 400*time.Millisecond {
		t.Errorf("wait %v, want 400ms (until writing is quiet)", wait)
	}
	if !Behind(lag, 10*time.Second) || Behind(lag, 30*time.Second) || Behind(lag, 0) {
		t.Errorf("Behind wrong for oldest %v", lag.Oldest)
	}
	// keep: nothing is deleted.
	steps, _, _ = Plan(local, peer, now, quiet, nil)
	for _, s := range steps {
		if s.Op == OpDelete {
			t.Errorf("delete: keep deleted %s", s.File.Path)
		}
	}
	// Caught up: nothing to do, no lag.
	full := map[string]Entry{}
	for p, x := range local {
		full[p] = x.Entry
	}
	steps, lag, wait = Plan(local, full, now, quiet, nil)
	if len(steps) != 0 || lag.Files != 0 || lag.Oldest != 0 || wait != 0 {
		t.Errorf("caught up: steps %v lag %+v wait %v", steps, lag, wait)
	}
}

func TestSameComparesSumsWhenBothKnown(t *testing.T) {
	a := Entry{Path: "x", Size: 1, MTime: 5, SHA256: "aa"}
	b := a
	b.SHA256 = ""
	if !Same(a, b) {
		t.Error("unknown sum must not make files differ")
	}
	b.SHA256 = "bb"
	if Same(a, b) {
		t.Error("different sums are different files")
	}
	b = a
	b.MTime = 6
	if Same(a, b) {
		t.Error("different mtimes are different versions")
	}
}

func TestLost(t *testing.T) {
	src := []Entry{{Path: "b", Size: 2, MTime: 2}, {Path: "a", Size: 1, MTime: 1}, {Path: "c", Size: 3, MTime: 3}}
	have := map[string]Entry{"a": {Path: "a", Size: 1, MTime: 1}, "c": {Path: "c", Size: 3, MTime: 4}, "z": {Path: "z"}}
	lost := Lost(src, have)
	if len(lost) != 2 || lost[0].Path != "b" || lost[0].Note != "missing" || lost[1].Path != "c" || lost[1].Note != "other version" {
		t.Fatalf("lost %+v", lost)
	}
}

// BenchmarkPlan100k: one plan of a folder of 100,000 files against a
// receiver that lacks 1,000 of them.
func BenchmarkPlan100k(b *testing.B) {
	now := time.Unix(1e6, 0)
	local := make(map[string]Local, 100000)
	peer := make(map[string]Entry, 100000)
	for i := range 100000 {
		p := fmt.Sprintf("d%03d/f%06d", i%1000, i)
		e := Entry{Path: p, Size: int64(i), MTime: int64(i)}
		local[p] = Local{Entry: e, Changed: now.Add(-time.Hour)}
		if i%100 != 0 {
			peer[p] = e
		}
	}
	b.ResetTimer()
	for range b.N {
		steps, lag, _ := Plan(local, peer, now, time.Second, nil)
		if len(steps) != 1000 || lag.Files != 1000 {
			b.Fatalf("%d steps, lag %+v", len(steps), lag)
		}
	}
}
