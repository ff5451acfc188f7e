package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// The operations part of the suite: intents reach watchers, one switchover
// at a time, the history, and the service's fenced data.

func (p Pair) watchBound() time.Duration {
	if p.WatchDelay == 0 {
		return time.Second
	}
	return p.WatchDelay
}

// testIntents: maintenance flags and the pending switchover appear in (and
// leave) the snapshots a watcher on the other store gets; only one
// switchover is pending at a time, even when two are asked at once; it is
// cleared by its own id only, and vanishes at its deadline by itself.
func testIntents(t *testing.T, p Pair) {
	w := watch(t, p.B)
	w.waitFor(t, 5*time.Second, "the first snapshot", func(ha.Snapshot) bool { return true })
	bound := p.watchBound()

	if err := p.A.SetMaintenance(ctxT(t, 5*time.Second), "n1", true); err != nil {
		t.Fatalf("maintenance on: %v", err)
	}
	if err := p.A.SetMaintenance(ctxT(t, 5*time.Second), "n2", true); err != nil {
		t.Fatalf("maintenance on: %v", err)
	}
	w.waitFor(t, bound, "n1 and n2 in maintenance", func(s ha.Snapshot) bool {
		return s.Intents.Maintenance["n1"] && s.Intents.Maintenance["n2"] && len(s.Intents.Maintenance) == 2
	})
	if err := p.B.SetMaintenance(ctxT(t, 5*time.Second), "n1", false); err != nil {
		t.Fatalf("maintenance off: %v", err)
	}
	w.waitFor(t, bound, "n1 out of maintenance, n2 still in", func(s ha.Snapshot) bool {
		return !s.Intents.Maintenance["n1"] && s.Intents.Maintenance["n2"]
	})

	// Two switchovers asked at once: exactly one is recorded. (A
	// switchover is from the current leader: a holds the role.)
	session(t, p.A)
	ea, err := p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	now := time.Now()
	sws := []ha.Switchover{
		{ID: "sw-a", From: "a", Epoch: ea, To: "b", Reason: "test", Requested: now, Deadline: now.Add(10 * time.Second)},
		{ID: "sw-b", From: "a", Epoch: ea, To: "c", Reason: "test", Requested: now, Deadline: now.Add(10 * time.Second)},
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range []ha.Store{p.A, p.B} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.RequestSwitchover(ctxT(t, 5*time.Second), sws[i]) }()
	}
	wg.Wait()
	var won ha.Switchover
	switch {
	case errs[0] == nil && errors.Is(errs[1], ha.ErrBusy):
		won = sws[0]
	case errs[1] == nil && errors.Is(errs[0], ha.ErrBusy):
		won = sws[1]
	default:
		t.Fatalf("two concurrent switchover requests: %v and %v; want one nil and one ErrBusy", errs[0], errs[1])
	}
	w.waitFor(t, bound, "the switchover "+won.ID, func(s ha.Snapshot) bool {
		sw := s.Intents.Switchover
		return sw != nil && sw.ID == won.ID && sw.To == won.To && sw.Epoch == ea && sw.Deadline.Equal(won.Deadline)
	})
	if err := p.B.RequestSwitchover(ctxT(t, 5*time.Second), ha.Switchover{ID: "sw-c", To: "a", Deadline: time.Now().Add(5 * time.Second)}); !errors.Is(err, ha.ErrBusy) {
		t.Fatalf("a switchover while %s is pending: %v, want ErrBusy", won.ID, err)
	}
	// Clearing another id leaves it.
	if err := p.A.ClearSwitchover(ctxT(t, 5*time.Second), "not-"+won.ID); err != nil {
		t.Fatalf("clear another id: %v", err)
	}
	if err := p.B.RequestSwitchover(ctxT(t, 5*time.Second), ha.Switchover{ID: "sw-c", To: "a", Deadline: time.Now().Add(5 * time.Second)}); !errors.Is(err, ha.ErrBusy) {
		t.Fatalf("clearing another id removed the pending switchover: request got %v, want ErrBusy", err)
	}
	if err := p.A.ClearSwitchover(ctxT(t, 5*time.Second), won.ID); err != nil {
		t.Fatalf("clear %s: %v", won.ID, err)
	}
	w.waitFor(t, bound, "no switchover after clear", func(s ha.Snapshot) bool { return s.Intents.Switchover == nil })
	if err := p.A.Resign(ctxT(t, 5*time.Second), "a", ea); err != nil {
		t.Fatalf("resign: %v", err)
	}

	// An intent vanishes at its deadline by itself, and a new one may follow.
	short := ha.Switchover{ID: "sw-short", To: "b", Requested: time.Now(), Deadline: time.Now().Add(1500 * time.Millisecond)}
	if err := p.B.RequestSwitchover(ctxT(t, 5*time.Second), short); err != nil {
		t.Fatalf("request after clear: %v", err)
	}
	w.waitFor(t, bound, "the short switchover", func(s ha.Snapshot) bool {
		return s.Intents.Switchover != nil && s.Intents.Switchover.ID == short.ID
	})
	// etcd leases the intent for whole seconds past the deadline.
	w.waitFor(t, time.Until(short.Deadline)+time.Second+p.Expiry+bound, "the short switchover gone after its deadline", func(s ha.Snapshot) bool {
		return s.Intents.Switchover == nil
	})
	if err := p.A.RequestSwitchover(ctxT(t, 5*time.Second), ha.Switchover{ID: "sw-next", To: "b", Deadline: time.Now().Add(5 * time.Second)}); err != nil {
		t.Fatalf("request after the last one expired: %v", err)
	}
	if d := time.Until(short.Deadline); d > 0 {
		t.Fatalf("the switchover vanished %s before its deadline", d)
	}
}

// testSwitchoverStale: a switchover is recorded only if the role is, in the
// same transaction, held by the leader it is from at its epoch (vacant for
// a switchover from nobody); otherwise ErrStale and nothing is recorded.
// An operator's view taken before a failover must not steer the next one.
func testSwitchoverStale(t *testing.T, p Pair) {
	session(t, p.A)
	session(t, p.B)
	ctx := func() context.Context { return ctxT(t, 5*time.Second) }
	e, err := p.A.Campaign(ctx(), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	sw := func(id, from string, epoch ha.Epoch) ha.Switchover {
		now := time.Now()
		return ha.Switchover{ID: id, From: from, Epoch: epoch, To: "c", Reason: "test", Requested: now, Deadline: now.Add(10 * time.Second)}
	}
	for _, c := range []struct {
		what  string
		from  string
		epoch ha.Epoch
	}{
		{"from the holder at an older epoch", "a", e - 1},
		{"from another node at the current epoch", "b", e},
		{"from nobody while a holds the role", "", 0},
	} {
		if err := p.B.RequestSwitchover(ctx(), sw("stale", c.from, c.epoch)); !errors.Is(err, ha.ErrStale) {
			t.Fatalf("switchover %s: %v, want ErrStale", c.what, err)
		}
	}
	// Nothing was recorded: the right one goes through.
	if err := p.B.RequestSwitchover(ctx(), sw("ok", "a", e)); err != nil {
		t.Fatalf("switchover from a at epoch %d: %v", e, err)
	}
	if err := p.B.ClearSwitchover(ctx(), "ok"); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if err := p.A.Resign(ctx(), "a", e); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if err := p.B.RequestSwitchover(ctx(), sw("gone", "a", e)); !errors.Is(err, ha.ErrStale) {
		t.Fatalf("switchover from a after it resigned: %v, want ErrStale", err)
	}
	if err := p.B.RequestSwitchover(ctx(), sw("none", "", 0)); err != nil {
		t.Fatalf("switchover from nobody with the role vacant: %v", err)
	}
}

// testEvents: the history comes back newest limit, oldest first, from either
// store, and is pruned to ha.MaxEvents.
func testEvents(t *testing.T, p Pair) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 5 {
		ev := ha.Event{Time: t0.Add(time.Duration(i) * time.Second), Node: "a", Kind: "role", Epoch: ha.Epoch(i + 1),
			From: "standby", To: "active", Reason: fmt.Sprintf("e%d", i), Duration: time.Duration(i) * time.Millisecond, Who: "op"}
		if err := p.A.AppendEvent(ctxT(t, 5*time.Second), ev); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	evs, err := p.B.Events(ctxT(t, 5*time.Second), 3)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if got := reasons(evs); got != "e2 e3 e4" {
		t.Fatalf("newest 3 events: %q, want \"e2 e3 e4\" (oldest first)", got)
	}
	if ev := evs[2]; !ev.Time.Equal(t0.Add(4*time.Second)) || ev.Node != "a" || ev.Kind != "role" || ev.Epoch != 5 ||
		ev.From != "standby" || ev.To != "active" || ev.Duration != 4*time.Millisecond || ev.Who != "op" {
		t.Fatalf("event did not come back as written: %+v", ev)
	}
	if evs, err = p.A.Events(ctxT(t, 5*time.Second), 100); err != nil || reasons(evs) != "e0 e1 e2 e3 e4" {
		t.Fatalf("all events: %q, %v; want \"e0 e1 e2 e3 e4\"", reasons(evs), err)
	}

	// Pruning: append well past the bound, from both stores at once.
	total := ha.MaxEvents + 300
	var next sync.Mutex
	n := 5
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range 8 {
		c := p.A
		if w%2 == 1 {
			c = p.B
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				i := n
				n++
				next.Unlock()
				if i >= total {
					return
				}
				ev := ha.Event{Time: t0.Add(time.Duration(i) * time.Second), Node: "a", Kind: "health", Reason: fmt.Sprintf("e%d", i)}
				if err := c.AppendEvent(ctxT(t, 10*time.Second), ev); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatalf("append: %v", err)
	}
	evs, err = p.B.Events(ctxT(t, 10*time.Second), 10*ha.MaxEvents)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < ha.MaxEvents || len(evs) > ha.MaxEvents+100 {
		t.Fatalf("%d events kept after %d appends; want %d to %d (pruned to ha.MaxEvents now and then)", len(evs), total, ha.MaxEvents, ha.MaxEvents+100)
	}
	if last := evs[len(evs)-1].Reason; last != fmt.Sprintf("e%d", total-1) {
		t.Fatalf("the newest event is %s, want e%d", last, total-1)
	}
	if first := evs[0].Reason; first != fmt.Sprintf("e%d", total-len(evs)) {
		t.Fatalf("the oldest kept event is %s, want e%d: pruning must drop the oldest", first, total-len(evs))
	}
	for i := 1; i < len(evs); i++ {
		if !evs[i].Time.After(evs[i-1].Time) {
			t.Fatalf("events out of order at %d: %s then %s", i, evs[i-1].Time, evs[i].Time)
		}
	}
	t.Logf("%d events kept after %d appends", len(evs), total)
}

func reasons(evs []ha.Event) string {
	s := ""
	for i, ev := range evs {
		if i > 0 {
			s += " "
		}
		s += ev.Reason
	}
	return s
}

// testFencedData: only the holder of the active role, at its epoch, reads
// and writes the data; a write with an idempotency id applies once, and its
// retry is answered as the first (also after the role moved).
func testFencedData(t *testing.T, p Pair) {
	session(t, p.A)
	session(t, p.B)
	ctx := func() context.Context { return ctxT(t, 5*time.Second) }
	if _, _, err := p.A.FencedPut(ctx(), "a", 1, "k", "v0", ""); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("write with nobody active: %v, want ErrNotLeader", err)
	}
	e1, err := p.A.Campaign(ctx(), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	rev1, repeat, err := p.A.FencedPut(ctx(), "a", e1, "k", "v1", "id1")
	if err != nil || repeat || rev1 <= 0 {
		t.Fatalf("write of the holder: rev %d, repeat %v, %v; want rev > 0, no repeat, nil", rev1, repeat, err)
	}
	rev, repeat, err := p.A.FencedPut(ctx(), "a", e1, "k", "v1-retried", "id1")
	if err != nil || !repeat || rev != rev1 {
		t.Fatalf("retry with the same id: rev %d, repeat %v, %v; want rev %d, repeat, nil", rev, repeat, err, rev1)
	}
	v, found, rrev, err := p.A.FencedGet(ctx(), "a", e1, "k")
	if err != nil || !found || v != "v1" || rrev < rev1 {
		t.Fatalf("read: %q found %v rev %d, %v; want \"v1\" (the retry must not apply), rev >= %d", v, found, rrev, err, rev1)
	}
	if _, found, _, err := p.A.FencedGet(ctx(), "a", e1, "missing"); err != nil || found {
		t.Fatalf("read of a missing key: found %v, %v; want not found, nil", found, err)
	}
	rev2, _, err := p.A.FencedPut(ctx(), "a", e1, "k", "v2", "")
	if err != nil || rev2 <= rev1 {
		t.Fatalf("second write: rev %d, %v; want > %d", rev2, err, rev1)
	}
	// Another node, or another epoch, is refused.
	for _, c := range []struct {
		what  string
		store ha.Store
		node  string
		epoch ha.Epoch
	}{
		{"as another node", p.B, "b", e1},
		{"at an older epoch", p.A, "a", e1 - 1},
		{"at a newer epoch", p.A, "a", e1 + 1},
	} {
		if _, _, err := c.store.FencedPut(ctx(), c.node, c.epoch, "k", "bad", "id-"+c.what); !errors.Is(err, ha.ErrNotLeader) {
			t.Fatalf("write %s: %v, want ErrNotLeader", c.what, err)
		}
		if _, _, _, err := c.store.FencedGet(ctx(), c.node, c.epoch, "k"); !errors.Is(err, ha.ErrNotLeader) {
			t.Fatalf("read %s: %v, want ErrNotLeader", c.what, err)
		}
	}
	// The role moves to b: a's epoch is stale from then on.
	if err := p.A.Resign(ctx(), "a", e1); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if _, _, err := p.A.FencedPut(ctx(), "a", e1, "k", "bad", ""); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("write after resigning: %v, want ErrNotLeader", err)
	}
	e2, err := p.B.Campaign(ctx(), "b")
	if err != nil {
		t.Fatalf("campaign of b: %v", err)
	}
	if _, _, err := p.A.FencedPut(ctx(), "a", e1, "k", "bad", "id-stale"); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("write at the stale epoch %d after b took %d: %v, want ErrNotLeader", e1, e2, err)
	}
	if _, _, _, err := p.A.FencedGet(ctx(), "a", e1, "k"); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("read at the stale epoch: %v, want ErrNotLeader", err)
	}
	if v, _, _, err := p.B.FencedGet(ctx(), "b", e2, "k"); err != nil || v != "v2" {
		t.Fatalf("b reads %q, %v; want the last committed \"v2\"", v, err)
	}
	// A retry of a's committed write is answered as committed, not applied again.
	rev, repeat, err = p.A.FencedPut(ctx(), "a", e1, "k", "v1-late", "id1")
	if err != nil || !repeat || rev != rev1 {
		t.Fatalf("late retry of id1: rev %d, repeat %v, %v; want rev %d, repeat", rev, repeat, err, rev1)
	}
	// A refused write with an id did not record the id: b may use it.
	if _, repeat, err := p.B.FencedPut(ctx(), "b", e2, "k", "v3", "id-stale"); err != nil || repeat {
		t.Fatalf("b's write with the id of a refused write: repeat %v, %v; want a fresh write", repeat, err)
	}
	if v, _, _, err := p.B.FencedGet(ctx(), "b", e2, "k"); err != nil || v != "v3" {
		t.Fatalf("b reads %q, %v; want \"v3\"", v, err)
	}
	// Concurrent retries of one id: one write, the rest repeats of it.
	var wg sync.WaitGroup
	type res struct {
		rev    int64
		repeat bool
		err    error
	}
	out := make([]res, 6)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, rep, err := p.B.FencedPut(ctx(), "b", e2, "c", fmt.Sprintf("c%d", i), "id-conc")
			out[i] = res{r, rep, err}
		}()
	}
	wg.Wait()
	fresh := 0
	for i, r := range out {
		if r.err != nil {
			t.Fatalf("concurrent retry %d: %v", i, r.err)
		}
		if !r.repeat {
			fresh++
		}
		if r.rev != out[0].rev {
			t.Fatalf("concurrent retries answered revisions %d and %d; one write has one revision", out[0].rev, r.rev)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d of %d concurrent retries of one id applied; want exactly 1", fresh, len(out))
	}
}

// testFencedExpiry: a holder whose session expires can no longer write,
// even while nobody has taken the role yet. A write that starts after the
// store may have expired the session (last renewal answered + TTL +
// Expiry) must be refused.
func testFencedExpiry(t *testing.T, p Pair) {
	ttl := session(t, p.A)
	e, err := p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	if _, err := p.A.Renew(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("renew: %v", err)
	}
	answered := time.Now()
	if _, _, err := p.A.FencedPut(ctxT(t, 5*time.Second), "a", e, "k", "before", ""); err != nil {
		t.Fatalf("write while the lease is valid: %v", err)
	}
	gone := answered.Add(ttl + p.Expiry)
	for {
		start := time.Now()
		_, _, err := p.A.FencedPut(ctxT(t, 5*time.Second), "a", e, "k", "after", "")
		if errors.Is(err, ha.ErrNotLeader) {
			t.Logf("writes refused %s after the last renewal was answered (TTL %s)", start.Sub(answered).Round(time.Millisecond), ttl)
			break
		}
		if err != nil {
			t.Fatalf("write: %v", err)
		}
		if start.After(gone) {
			t.Fatalf("a write started %s after the last renewal was answered committed; the session had expired (TTL %s + %s)", start.Sub(answered), ttl, p.Expiry)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, _, err := p.A.FencedGet(ctxT(t, 5*time.Second), "a", e, "k"); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("read after the session expired: %v, want ErrNotLeader", err)
	}
}
