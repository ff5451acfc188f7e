package memstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

func pair(t *testing.T) storetest.Pair {
	s := New(clock.Real{})
	a, b := s.Client(), s.Client()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return storetest.Pair{
		A: a, B: b,
		Cut:        func() { b.SetFault(Fault{Partitioned: true}) },
		Heal:       func() { b.SetFault(Fault{}) },
		WatchDelay: 100 * time.Millisecond,
	}
}

// TestSuite: memstore keeps the same contract as the real backends.
func TestSuite(t *testing.T) { storetest.Run(t, pair) }

func TestProps(t *testing.T) { storetest.RunProps(t, pair) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestFakeClockExpiry: leases expire by the store's clock, not the wall
// clock, and a watcher learns of it without any call.
func TestFakeClockExpiry(t *testing.T) {
	clk := clock.NewFake(t0)
	s := New(clk)
	a := s.Client()
	ctx := context.Background()
	if _, err := a.NewSession(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	e, err := a.Campaign(ctx, "a")
	if err != nil || e != 1 {
		t.Fatalf("campaign: %d, %v", e, err)
	}
	w := s.Client().Watch(ctx)
	if snap := <-w; snap.Leader.Node != "a" {
		t.Fatalf("first snapshot %+v", snap.Leader)
	}
	clk.Advance(1999 * time.Millisecond)
	if _, ok := a.Session(); !ok {
		t.Fatal("session gone before its TTL")
	}
	clk.Advance(time.Millisecond)
	select {
	case snap := <-w:
		if !snap.Leader.None() {
			t.Fatalf("after expiry the leader is %+v", snap.Leader)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not report the expiry")
	}
	if _, err := a.Renew(ctx); !errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renew after expiry: %v", err)
	}
}

// TestExpiryTickAndRevoke: with etcd's tick, an expired lease keeps the
// leader key until the next tick, but is never renewed; Revoke drops it at
// its expiry and not a moment before (etcd's revoke-at-expiry rule).
func TestExpiryTickAndRevoke(t *testing.T) {
	clk := clock.NewFakeSync(t0) // timers fire within Advance
	s := New(clk)
	s.SetExpiryTick(500 * time.Millisecond)
	a, b := s.Client(), s.Client()
	ctx := context.Background()
	if _, err := a.NewSession(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.NewSession(ctx, 10100*time.Millisecond); err != nil { // ends between ticks
		t.Fatal(err)
	}
	if _, err := a.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(300 * time.Millisecond) // a's lease now ends at 2.3 s; the tick after is 2.5 s
	if _, err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	sess, exp, ok := s.LeaderLease()
	if !ok || !exp.Equal(t0.Add(2300*time.Millisecond)) {
		t.Fatalf("leader lease %d until %s (%t), want until 2.3s", sess, exp.Sub(t0), ok)
	}
	clk.Advance(1999 * time.Millisecond)
	if err := s.Revoke(sess); !errors.Is(err, ErrNotExpired) {
		t.Fatalf("revoke 1 ms before expiry: %v, want ErrNotExpired", err)
	}
	if s.Leader().Node != "a" {
		t.Fatal("an early revoke took the key")
	}
	clk.Advance(time.Millisecond) // expired: 2.3 s
	if _, ok := a.Session(); ok {
		t.Fatal("an expired session counts as live")
	}
	if _, err := a.Renew(ctx); !errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renew of an expired lease: %v, want ErrSessionLost", err)
	}
	if s.Leader().Node != "a" {
		t.Fatal("the key went before the tick")
	}
	if _, err := b.Campaign(ctx, "b"); !errors.Is(err, ha.ErrTaken) {
		t.Fatalf("b's campaign before the tick: %v, want ErrTaken", err)
	}
	clk.Advance(199 * time.Millisecond)
	if s.Leader().Node != "a" {
		t.Fatal("the key went before the tick")
	}
	clk.Advance(time.Millisecond) // the tick at 2.5 s drops it
	if l := s.Leader(); !l.None() {
		t.Fatalf("after the tick the leader is %v", l)
	}

	// Revoke at expiry, before any tick.
	if _, err := b.Campaign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	sess, exp, _ = s.LeaderLease()
	clk.AdvanceTo(exp) // 10.1 s: the next tick is at 10.5 s
	if err := s.Revoke(sess); err != nil {
		t.Fatalf("revoke at expiry: %v", err)
	}
	if l := s.Leader(); !l.None() {
		t.Fatalf("after the revoke the leader is %v", l)
	}
}

// TestFaults: a partitioned client changes nothing; a lost response
// commits; a delayed call arrives late on the store's clock; a stalled
// watch sends the latest snapshot once it resumes.
func TestFaults(t *testing.T) {
	s := New(clock.Real{})
	a, b := s.Client(), s.Client()
	bg := context.Background()
	if _, err := a.NewSession(bg, time.Minute); err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	a.SetFault(Fault{Partitioned: true})
	if _, err := a.Campaign(short(), "a"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("partitioned campaign: %v", err)
	}
	if !s.Snapshot().Leader.None() {
		t.Fatal("a partitioned campaign took the key")
	}
	a.SetFault(Fault{LoseResponses: true})
	if _, err := a.Campaign(short(), "a"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("campaign with its answer lost: %v", err)
	}
	if l := s.Snapshot().Leader; l.Node != "a" {
		t.Fatalf("the campaign whose answer was lost did not commit: %+v", l)
	}
	a.SetFault(Fault{})
	if e, err := a.Campaign(bg, "a"); err != nil || e != 1 {
		t.Fatalf("repeated campaign: %d, %v; want the committed epoch 1", e, err)
	}
	a.SetFault(Fault{Delay: time.Second})
	if err := a.SetMaintenance(short(), "x", true); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("slow call with a short deadline: %v", err)
	}
	a.SetFault(Fault{})

	b.SetFault(Fault{WatchStalled: true})
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	w := b.Watch(ctx)
	if err := a.SetMaintenance(bg, "x", true); err != nil {
		t.Fatal(err)
	}
	select {
	case snap := <-w:
		t.Fatalf("a stalled watch delivered %+v", snap)
	case <-time.After(50 * time.Millisecond):
	}
	b.SetFault(Fault{})
	select {
	case snap := <-w:
		if !snap.Intents.Maintenance["x"] {
			t.Fatalf("resumed watch delivered a stale snapshot %+v", snap.Intents)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not resume")
	}

	// Starting over: the last snapshot once more, marked Behind, then
	// nothing, then the same data as a current snapshot.
	b.SetFault(Fault{WatchRestarting: true})
	recv := func(what string) ha.Snapshot {
		t.Helper()
		select {
		case snap := <-w:
			return snap
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
		return ha.Snapshot{}
	}
	if snap := recv("Behind snapshot"); !snap.Behind || !snap.Intents.Maintenance["x"] {
		t.Fatalf("a watch starting over sent %+v, want the last snapshot marked Behind", snap)
	}
	b.SetFault(Fault{WatchRestarting: true}) // woken again: nothing more
	select {
	case snap := <-w:
		t.Fatalf("a watch starting over delivered %+v", snap)
	case <-time.After(50 * time.Millisecond):
	}
	b.SetFault(Fault{})
	if snap := recv("current snapshot"); snap.Behind || !snap.Intents.Maintenance["x"] {
		t.Fatalf("the watch read again and sent %+v, want the unchanged data, current", snap)
	}
}
