package sqlstore

import (
	"context"
	"database/sql"
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

// TestWatcherBehind: a failed read tells the reader its view is behind,
// once, and the next read is sent although nothing changed; before any
// snapshot there is nothing to repeat.
func TestWatcherBehind(t *testing.T) {
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
	w.Behind(ctx, out)
	if s, ok := recv(); ok {
		t.Fatalf("behind before any snapshot: sent %+v", s)
	}
	w.Send(ctx, out, ha.Snapshot{Rev: 1, Leader: ha.Leader{Node: "a", Epoch: 1}})
	recv()
	w.Behind(ctx, out)
	if s, ok := recv(); !ok || !s.Behind || s.Rev != 1 || s.Leader.Node != "a" {
		t.Fatalf("after a failed read: %+v, %v; want the last snapshot marked Behind", s, ok)
	}
	w.Behind(ctx, out)
	if s, ok := recv(); ok {
		t.Fatalf("a second failed read sent again: %+v", s)
	}
	w.Send(ctx, out, ha.Snapshot{Rev: 1, Leader: ha.Leader{Node: "a", Epoch: 1}})
	if s, ok := recv(); !ok || s.Behind || s.Rev != 1 {
		t.Fatalf("the read after: %+v, %v; want it sent, current, though unchanged", s, ok)
	}
	w.Send(ctx, out, ha.Snapshot{Rev: 1, Leader: ha.Leader{Node: "a", Epoch: 1}})
	if s, ok := recv(); ok {
		t.Fatalf("unchanged snapshot sent again once current: %+v", s)
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

// TestDecode: the rows of a snapshot's one statement become the snapshot;
// wake is the earliest expiry after the database's now, at least a
// millisecond; a leader whose session expired is not shown.
func TestDecode(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) sql.NullTime { return sql.NullTime{Time: now.Add(d), Valid: true} }
	str := func(v string) sql.NullString { return sql.NullString{String: v, Valid: true} }
	s := &Store{o: Options{Cluster: "c"}}
	rows := []snapRow{
		{kind: rowNode, name: str("a"), body: []byte(`{"name":"a"}`), at: at(900 * time.Millisecond)},
		{kind: rowCluster, name: str("a"), at: at(700 * time.Millisecond), rev: 7, epoch: 3, now: sql.NullTime{Time: now, Valid: true}, expired: 2},
		{kind: rowMaintenance, name: str("b")},
		{kind: rowProps, name: str("b"), body: []byte(`{"alias":"bee"}`)},
		{kind: rowSwitchover, body: []byte(`{"id":"s1"}`), at: at(300 * time.Millisecond)},
	}
	snap, wake, expired, err := s.decode(rows)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Rev != 7 || snap.Leader != (ha.Leader{Node: "a", Epoch: 3}) || expired != 2 {
		t.Errorf("rev %d, leader %v, expired %d; want 7, a at 3, 2", snap.Rev, snap.Leader, expired)
	}
	if _, ok := snap.Nodes["a"]; !ok || !snap.Intents.Maintenance["b"] || snap.Intents.Switchover == nil || snap.Intents.Switchover.ID != "s1" {
		t.Errorf("snapshot %+v lacks node a, maintenance of b or switchover s1", snap)
	}
	if wake != 300*time.Millisecond {
		t.Errorf("wake %s, want 300ms (the switchover's)", wake)
	}
	// The leader's session expired by the database's clock; a node's
	// expiry read a moment before now still wakes a millisecond later.
	rows[1].at = at(-time.Millisecond)
	rows[0].at = at(-time.Microsecond)
	rows = rows[:4]
	snap, wake, _, err = s.decode(rows)
	if err != nil || !snap.Leader.None() || wake != time.Millisecond {
		t.Errorf("leader %v, wake %s, %v; want none, 1ms", snap.Leader, wake, err)
	}
	if _, _, _, err := s.decode(nil); err == nil {
		t.Error("no cluster row: want an error")
	}
}
