package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

func TestTablePrefix(t *testing.T) {
	for p, want := range map[string]string{"": DefaultPrefix, "haven_": "haven_", "x1_": "x1_", "_a": "_a"} {
		if got, err := TablePrefix(p); err != nil || got != want {
			t.Errorf("TablePrefix(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"Haven_", "1x", "a-b", "a b", "a;drop", "abcdefghijklmnopqrstuvwxyz01234"} {
		if got, err := TablePrefix(p); err == nil {
			t.Errorf("TablePrefix(%q) = %q; want an error", p, got)
		}
	}
}

func TestNextRead(t *testing.T) {
	const poll = 100 * time.Millisecond
	for _, c := range []struct{ wake, want time.Duration }{
		{0, poll},
		{10 * time.Millisecond, 15 * time.Millisecond},
		{95 * time.Millisecond, poll},
		{time.Second, poll},
	} {
		if got := NextRead(poll, c.wake); got != c.want {
			t.Errorf("NextRead(%s, %s) = %s; want %s", poll, c.wake, got, c.want)
		}
	}
}

func TestWatcherSend(t *testing.T) {
	ctx := context.Background()
	out := make(chan ha.Snapshot, 1)
	var w Watcher
	recv := func() (ha.Snapshot, bool) {
		select {
		case s := <-out:
			return s, true
		default:
			return ha.Snapshot{}, false
		}
	}
	if !w.Send(ctx, out, ha.Snapshot{Rev: 1}) {
		t.Fatal("first send refused")
	}
	if s, ok := recv(); !ok || s.Rev != 1 {
		t.Fatalf("first snapshot: %v, %v; want rev 1", s, ok)
	}
	if !w.Send(ctx, out, ha.Snapshot{Rev: 1}) {
		t.Fatal("unchanged send refused")
	}
	if s, ok := recv(); ok {
		t.Fatalf("unchanged snapshot sent again: %v", s)
	}
	if !w.Send(ctx, out, ha.Snapshot{Rev: 2}) {
		t.Fatal("changed send refused")
	}
	if s, ok := recv(); !ok || s.Rev != 2 {
		t.Fatalf("changed snapshot: %v, %v; want rev 2", s, ok)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if w.Send(done, make(chan ha.Snapshot), ha.Snapshot{Rev: 3}) {
		t.Fatal("send after the context ended reported success")
	}
}

func TestSetNode(t *testing.T) {
	snap := ha.Snapshot{Nodes: map[string]ha.NodeStatus{}}
	SetNode(&snap, "a", []byte(`{"name":"a"}`))
	SetNode(&snap, "b", []byte(`not json`))
	if _, ok := snap.Nodes["a"]; !ok || len(snap.Nodes) != 1 {
		t.Fatalf("nodes %v; want only a", snap.Nodes)
	}
}
