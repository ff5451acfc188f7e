package clock

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

// TestFakeTimersFireInDeadlineOrder: Advance fires each timer at its own
// deadline, earliest first, ties in the order set, and nothing early.
func TestFakeTimersFireInDeadlineOrder(t *testing.T) {
	f := NewFakeSync(t0)
	var got []string
	var at []time.Duration
	add := func(name string, d time.Duration) {
		f.AfterFunc(d, func() { got = append(got, name); at = append(at, f.Now().Sub(t0)) })
	}
	add("c", 3*time.Second)
	add("a", time.Second)
	add("b1", 2*time.Second)
	add("b2", 2*time.Second)
	stopped := f.AfterFunc(1500*time.Millisecond, func() { got = append(got, "stopped") })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	ch := f.After(2500 * time.Millisecond)
	f.Advance(999 * time.Millisecond)
	if len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	f.Advance(2 * time.Second)
	if strings.Join(got, ",") != "a,b1,b2" { // c is due at 3s; it is 2.999s
		t.Fatalf("fired %v, want a,b1,b2 by 2.999s", got)
	}
	if v, ok := fired(ch); !ok || !v.Equal(t0.Add(2500*time.Millisecond)) {
		t.Fatalf("After(2.5s) gave %v, %v; want the deadline", v, ok)
	}
	f.Advance(time.Second)
	if want := "a,b1,b2,c"; strings.Join(got, ",") != want {
		t.Fatalf("fired %v, want %s", got, want)
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 2 * time.Second, 3 * time.Second} {
		if at[i] != want {
			t.Fatalf("timer %d saw Now()=%s, want its deadline %s", i, at[i], want)
		}
	}
	if f.Pending() != 0 {
		t.Fatalf("%d timers left", f.Pending())
	}
}

func TestFakeTickerAndReset(t *testing.T) {
	f := NewFake(t0)
	tk := f.NewTicker(time.Second)
	for i := 1; i <= 3; i++ {
		f.Advance(time.Second)
		if v, ok := fired(tk.C()); !ok || !v.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("tick %d: %v %v", i, v, ok)
		}
	}
	f.Advance(5 * time.Second) // a slow reader gets one tick, not a backlog
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("no tick after 5s")
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("ticks piled up")
	}
	tk.Stop()
	f.Advance(5 * time.Second)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("stopped ticker ticked")
	}
	tm := f.NewTimer(time.Second)
	f.Advance(500 * time.Millisecond)
	if !tm.Reset(time.Second) {
		t.Fatal("Reset of a pending timer reported false")
	}
	f.Advance(700 * time.Millisecond)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("reset timer fired at its old deadline")
	}
	f.Advance(300 * time.Millisecond)
	if _, ok := fired(tm.C()); !ok {
		t.Fatal("reset timer did not fire at its new deadline")
	}
	if v, ok := fired(f.After(0)); !ok || !v.Equal(f.Now()) {
		t.Fatal("After(0) did not fire at once")
	}
	if d, ok := f.Next(); ok {
		t.Fatalf("Next = %v with nothing pending", d)
	}
}

// TestFakeSleep: Sleep returns once another goroutine advances past it.
func TestFakeSleep(t *testing.T) {
	f := NewFake(t0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.Sleep(time.Second) }()
	for f.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	f.Advance(time.Second)
	wg.Wait()
	if f.Since(t0) != time.Second {
		t.Fatalf("Since = %s", f.Since(t0))
	}
}

// guarded are the packages whose non-test code must take its time from a
// Clock (issue #11): a direct call is time the simulation cannot control.
var guarded = []string{"agent", "node", "check", "service", "proxy", "proxyvip", "lease", "lockdelay"}

var forbidden = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true,
}

// TestNoDirectTime lists every time.Now/Sleep/After/... call left in the
// guarded packages' non-test code.
func TestNoDirectTime(t *testing.T) {
	var offenders []string
	for _, pkg := range guarded {
		dir := filepath.Join("..", pkg)
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, name, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			local := ""
			for _, imp := range file.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
					local = "time"
					if imp.Name != nil {
						local = imp.Name.Name
					}
				}
			}
			if local == "" {
				continue
			}
			ast.Inspect(file, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == local && forbidden[sel.Sel.Name] {
					offenders = append(offenders, fset.Position(sel.Pos()).String()+": time."+sel.Sel.Name)
				}
				return true
			})
		}
	}
	if len(offenders) > 0 {
		t.Errorf("%d direct calls of package time's clock; take a clock.Clock instead (clock.Real{} for kernel deadlines such as net.Conn.SetDeadline):\n%s",
			len(offenders), strings.Join(offenders, "\n"))
	}
}
