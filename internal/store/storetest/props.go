package storetest

import (
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// RunProps tests a backend's ha.Properties: properties set through A reach
// B's watch, survive A's session, and go away when cleared. Backends that
// implement ha.Properties call it next to Run.
func RunProps(t *testing.T, open func(t *testing.T) Pair) {
	p := open(t)
	a, ok := p.A.(ha.Properties)
	if !ok {
		t.Fatalf("%T does not implement ha.Properties", p.A)
	}
	bound := p.WatchDelay
	if bound == 0 {
		bound = time.Second
	}
	session(t, p.A)
	w := watch(t, p.B)
	w.waitFor(t, 5*time.Second, "the first snapshot", func(ha.Snapshot) bool { return true })
	set := func(node, alias string) {
		t.Helper()
		if err := a.SetProps(ctxT(t, 5*time.Second), node, ha.NodeProps{Alias: alias}); err != nil {
			t.Fatalf("SetProps(%s, %q): %v", node, alias, err)
		}
	}
	set("a", "primary, rack 1")
	set("b", "Ünïcode ok")
	w.waitFor(t, bound, "both aliases", func(s ha.Snapshot) bool {
		return s.Props["a"].Alias == "primary, rack 1" && s.Props["b"].Alias == "Ünïcode ok"
	})
	// A snapshot already taken does not change under its reader.
	w.mu.Lock()
	before := w.snaps[len(w.snaps)-1]
	w.mu.Unlock()
	set("a", "renamed")
	w.waitFor(t, bound, "the new alias", func(s ha.Snapshot) bool { return s.Props["a"].Alias == "renamed" })
	if before.Props["a"].Alias != "primary, rack 1" {
		t.Fatalf("an earlier snapshot changed: %+v", before.Props)
	}
	// Properties are not bound to a session: A's going away (its session
	// revoked) keeps them.
	if err := p.A.Close(); err != nil {
		t.Fatalf("close A: %v", err)
	}
	b, ok := p.B.(ha.Properties)
	if !ok {
		t.Fatalf("%T does not implement ha.Properties", p.B)
	}
	if err := b.SetProps(ctxT(t, 5*time.Second), "b", ha.NodeProps{}); err != nil {
		t.Fatalf("clear b: %v", err)
	}
	w.waitFor(t, bound, "b's alias cleared, a's kept", func(s ha.Snapshot) bool {
		_, has := s.Props["b"]
		return !has && s.Props["a"].Alias == "renamed"
	})
	// A new watch starts with what is stored.
	w2 := watch(t, p.B)
	w2.waitFor(t, 5*time.Second, "a's alias in a fresh snapshot", func(s ha.Snapshot) bool { return s.Props["a"].Alias == "renamed" })
}
