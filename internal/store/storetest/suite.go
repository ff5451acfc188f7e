// Package storetest is the behavioural test suite that every ha.Store
// backend must pass (Run), with helpers that start real throwaway servers
// on loopback (PostgreSQL, MariaDB, etcd: internal/dbserver, bound to a
// test) and a TCP forwarder that cuts one client off its store. It is
// imported by tests only.
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

// Pair is two stores of one cluster on one store server, as two agents
// would have. Cut and Heal take B (only B) off the store and back; B must reach
// the store through a Forwarder for that.
type Pair struct {
	A, B       ha.Store
	Cut, Heal  func()
	Expiry     time.Duration // how long after the TTL the store may take to expire a session (etcd: its 500ms revoke tick)
	WatchDelay time.Duration // how long a change may take to reach a watcher
}

// TTL is the session TTL the suite asks for: etcd grants whole seconds.
const TTL = time.Second

// Run runs the suite. open must return a fresh pair on an empty cluster
// (a new cluster name) each time it is called; it closes them at test end.
func Run(t *testing.T, open func(t *testing.T) Pair) {
	t.Run("Election", func(t *testing.T) { testElection(t, open(t)) })
	t.Run("EpochsGrow", func(t *testing.T) { testEpochsGrow(t, open(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { testLeaseExpiry(t, open(t)) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, open(t)) })
	t.Run("Unreachable", func(t *testing.T) { testUnreachable(t, open(t)) })
	t.Run("Intents", func(t *testing.T) { testIntents(t, open(t)) })
	t.Run("SwitchoverStale", func(t *testing.T) { testSwitchoverStale(t, open(t)) })
	t.Run("Events", func(t *testing.T) { testEvents(t, open(t)) })
	t.Run("FencedData", func(t *testing.T) { testFencedData(t, open(t)) })
	t.Run("FencedExpiry", func(t *testing.T) { testFencedExpiry(t, open(t)) })
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func session(t *testing.T, c ha.Coordinator) time.Duration {
	t.Helper()
	ttl, err := c.NewSession(ctxT(t, 5*time.Second), TTL)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	if ttl < TTL {
		t.Fatalf("NewSession granted %s, asked %s", ttl, TTL)
	}
	return ttl
}

// testElection: concurrent campaigns have exactly one winner.
func testElection(t *testing.T, p Pair) {
	session(t, p.A)
	session(t, p.B)
	type res struct {
		node  string
		epoch ha.Epoch
		err   error
	}
	for round := 0; round < 3; round++ {
		results := make(chan res, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for name, c := range map[string]ha.Coordinator{"a": p.A, "b": p.B} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				e, err := c.Campaign(ctxT(t, 5*time.Second), name)
				results <- res{name, e, err}
			}()
		}
		close(start)
		wg.Wait()
		close(results)
		var won []res
		for r := range results {
			switch {
			case r.err == nil:
				won = append(won, r)
			case !errors.Is(r.err, ha.ErrTaken):
				t.Fatalf("campaign of %s: %v, want nil or ErrTaken", r.node, r.err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d winners (%v), want exactly 1", round, len(won), won)
		}
		w := won[0]
		c, other := p.A, p.B
		if w.node == "b" {
			c, other = p.B, p.A
		}
		// A campaign repeated by the holder's session (its first answer
		// was lost) answers with the key's epoch; the same name from
		// another session (an earlier run of the agent) does not.
		if e, err := c.Campaign(ctxT(t, 5*time.Second), w.node); err != nil || e != w.epoch {
			t.Fatalf("second campaign of the holder %s: epoch %d, %v; want %d, nil", w.node, e, err, w.epoch)
		}
		if _, err := other.Campaign(ctxT(t, 5*time.Second), w.node); !errors.Is(err, ha.ErrTaken) {
			t.Fatalf("campaign as %s from another session: %v, want ErrTaken", w.node, err)
		}
		if err := c.Resign(ctxT(t, 5*time.Second), w.node, w.epoch); err != nil {
			t.Fatalf("resign %s@%d: %v", w.node, w.epoch, err)
		}
	}
}

// testEpochsGrow: every promotion gets a greater epoch; resigning at a stale
// epoch, or as another node, is refused.
func testEpochsGrow(t *testing.T, p Pair) {
	session(t, p.A)
	session(t, p.B)
	var last ha.Epoch
	for i := 0; i < 6; i++ {
		c, name := p.A, "a"
		if i%2 == 1 {
			c, name = p.B, "b"
		}
		e, err := c.Campaign(ctxT(t, 5*time.Second), name)
		if err != nil {
			t.Fatalf("campaign %d of %s: %v", i, name, err)
		}
		if e <= last {
			t.Fatalf("epoch %d after %d: epochs must grow", e, last)
		}
		if last != 0 {
			if err := c.Resign(ctxT(t, 5*time.Second), name, last); !errors.Is(err, ha.ErrNotLeader) {
				t.Fatalf("resign at stale epoch %d: %v, want ErrNotLeader", last, err)
			}
		}
		other := "b"
		if name == "b" {
			other = "a"
		}
		if err := c.Resign(ctxT(t, 5*time.Second), other, e); !errors.Is(err, ha.ErrNotLeader) {
			t.Fatalf("resign as %s while %s holds epoch %d: %v, want ErrNotLeader", other, name, e, err)
		}
		if err := c.Resign(ctxT(t, 5*time.Second), name, e); err != nil {
			t.Fatalf("resign %s@%d: %v", name, e, err)
		}
		last = e
	}
	// A new session (an agent restart) does not reset the counter.
	session(t, p.A)
	e, err := p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil || e <= last {
		t.Fatalf("campaign after a new session: epoch %d, %v; want > %d", e, err, last)
	}
}

// testLeaseExpiry: a holder that stops renewing loses the role, and another
// takes it no earlier than the holder's last renewal send time + TTL (on
// the test's clock) and not much later; the holder's next renewal reports
// ErrSessionLost.
func testLeaseExpiry(t *testing.T, p Pair) {
	ttl := session(t, p.A)
	session(t, p.B)
	epoch, err := p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	var lastSent time.Time
	for range 5 {
		sent := time.Now()
		got, err := p.A.Renew(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatalf("renew: %v", err)
		}
		if got < TTL {
			t.Fatalf("renew granted %s, want >= %s", got, TTL)
		}
		lastSent = sent
		// B keeps its session too: on a loaded machine these renewals of
		// A's can take longer than the TTL.
		if _, err := p.B.Renew(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("renew b: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A stops renewing (its agent died). B keeps its own session alive and
	// campaigns until it wins.
	var won time.Time
	var newEpoch ha.Epoch
	deadline := lastSent.Add(ttl + p.Expiry + 3*time.Second)
	lastRenewB := time.Now()
	for {
		e, err := p.B.Campaign(ctxT(t, 5*time.Second), "b")
		if err == nil {
			won, newEpoch = time.Now(), e
			break
		}
		if !errors.Is(err, ha.ErrTaken) {
			t.Fatalf("campaign of b: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("b did not win within TTL %s + %s + 3s of a's last renewal", ttl, p.Expiry)
		}
		if time.Since(lastRenewB) > 200*time.Millisecond {
			if _, err := p.B.Renew(ctxT(t, 5*time.Second)); err != nil {
				t.Fatalf("renew b: %v", err)
			}
			lastRenewB = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if earliest := lastSent.Add(ttl); won.Before(earliest) {
		t.Fatalf("b took over %s before a's lease could expire (last renewal sent + TTL): split brain", earliest.Sub(won))
	}
	if newEpoch <= epoch {
		t.Fatalf("takeover epoch %d not greater than %d", newEpoch, epoch)
	}
	t.Logf("takeover %s after a's last renewal was sent (TTL %s)", won.Sub(lastSent).Round(time.Millisecond), ttl)
	if _, err := p.A.Renew(ctxT(t, 5*time.Second)); !errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renew of the expired session: %v, want ErrSessionLost", err)
	}
	if err := p.A.Resign(ctxT(t, 5*time.Second), "a", epoch); !errors.Is(err, ha.ErrNotLeader) {
		t.Fatalf("resign of the expired holder: %v, want ErrNotLeader", err)
	}
	if _, err := p.A.Campaign(ctxT(t, 5*time.Second), "a"); !errors.Is(err, ha.ErrSessionLost) && !errors.Is(err, ha.ErrTaken) {
		t.Fatalf("campaign on the expired session: %v, want ErrSessionLost (or ErrTaken)", err)
	}
}

// watcher collects snapshots.
type watcher struct {
	mu    sync.Mutex
	snaps []ha.Snapshot
}

func watch(t *testing.T, c ha.Coordinator) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{}
	ch := c.Watch(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range ch {
			w.mu.Lock()
			w.snaps = append(w.snaps, s)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitFor waits until the latest snapshot satisfies cond and returns how long it took.
func (w *watcher) waitFor(t *testing.T, d time.Duration, what string, cond func(ha.Snapshot) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		w.mu.Lock()
		var last *ha.Snapshot
		if n := len(w.snaps); n > 0 {
			last = &w.snaps[n-1]
		}
		ok := last != nil && cond(*last)
		w.mu.Unlock()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("watch: %s not seen within %s (last: %+v)", what, d, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testWatch: node records and leader changes reach a watcher promptly, and
// so does a session's expiry.
func testWatch(t *testing.T, p Pair) {
	session(t, p.A)
	session(t, p.B)
	w := watch(t, p.B)
	w.waitFor(t, 5*time.Second, "the first snapshot", func(ha.Snapshot) bool { return true })
	bound := p.WatchDelay
	if bound == 0 {
		bound = time.Second
	}
	if err := p.A.Publish(ctxT(t, 5*time.Second), ha.NodeStatus{Name: "a", Role: ha.RoleStandby, Healthy: true}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	d := w.waitFor(t, bound, "a's node record", func(s ha.Snapshot) bool { return s.Nodes["a"].Role == ha.RoleStandby })
	t.Logf("node record seen after %s", d.Round(time.Millisecond))

	e, err := p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	d = w.waitFor(t, bound, "a as leader", func(s ha.Snapshot) bool { return s.Leader == ha.Leader{Node: "a", Epoch: e} })
	t.Logf("leader seen after %s", d.Round(time.Millisecond))
	if err := p.A.Resign(ctxT(t, 5*time.Second), "a", e); err != nil {
		t.Fatalf("resign: %v", err)
	}
	d = w.waitFor(t, bound, "no leader after resign", func(s ha.Snapshot) bool { return s.Leader.None() })
	t.Logf("resign seen after %s", d.Round(time.Millisecond))

	// Revs only grow.
	w.mu.Lock()
	for i := 1; i < len(w.snaps); i++ {
		if w.snaps[i].Rev < w.snaps[i-1].Rev {
			t.Errorf("snapshot rev went back from %d to %d", w.snaps[i-1].Rev, w.snaps[i].Rev)
		}
	}
	w.mu.Unlock()

	// A's session expires: its leader role and record vanish from the view.
	e, err = p.A.Campaign(ctxT(t, 5*time.Second), "a")
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	w.waitFor(t, bound, "a as leader again", func(s ha.Snapshot) bool { return s.Leader.Node == "a" })
	sent := time.Now()
	ttl, err := p.A.Renew(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	stopB := make(chan struct{})
	go func() { // B stays alive meanwhile
		for {
			select {
			case <-stopB:
				return
			case <-time.After(200 * time.Millisecond):
				_, _ = p.B.Renew(context.Background())
			}
		}
	}()
	defer close(stopB)
	w.waitFor(t, ttl+p.Expiry+bound+time.Second, "a's expiry", func(s ha.Snapshot) bool {
		_, rec := s.Nodes["a"]
		return s.Leader.None() && !rec
	})
	gone := time.Since(sent)
	if gone < ttl {
		t.Fatalf("a's session vanished %s after its renewal, before its TTL %s", gone, ttl)
	}
	t.Logf("expiry seen %s after the last renewal was sent (TTL %s)", gone.Round(time.Millisecond), ttl)
	_ = e
}

// testUnreachable: cut off from its store, a coordinator's Renew and
// Campaign fail within their context deadline (the agent's self-fencing
// depends on it), and it works again once the store is back.
func testUnreachable(t *testing.T, p Pair) {
	if p.Cut == nil {
		t.Fatal("the backend test gives no way to cut B off its store (Pair.Cut); route B through a storetest.Forwarder")
	}
	session(t, p.B)
	if _, err := p.B.Renew(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("renew before the cut: %v", err)
	}
	p.Cut()
	healed := false
	defer func() {
		if !healed {
			p.Heal()
		}
	}()
	const limit = 300 * time.Millisecond
	for _, op := range []struct {
		name string
		f    func(ctx context.Context) error
	}{
		{"Renew", func(ctx context.Context) error { _, err := p.B.Renew(ctx); return err }},
		{"Campaign", func(ctx context.Context) error { _, err := p.B.Campaign(ctx, "b"); return err }},
		{"Publish", func(ctx context.Context) error { return p.B.Publish(ctx, ha.NodeStatus{Name: "b"}) }},
		{"Renew again", func(ctx context.Context) error { _, err := p.B.Renew(ctx); return err }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		start := time.Now()
		err := op.f(ctx)
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("%s succeeded while cut off from the store", op.name)
		}
		if took > limit+250*time.Millisecond {
			t.Fatalf("%s took %s to fail with a %s deadline (%v); a cut-off active must learn promptly", op.name, took, limit, err)
		}
		t.Logf("%s failed after %s: %v", op.name, took.Round(time.Millisecond), err)
	}
	p.Heal()
	healed = true
	// Back: renewals succeed again (the session outlived the short cut) or
	// report the session lost; either way a new session works.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := p.B.Renew(ctxT(t, time.Second))
		if err == nil {
			break
		}
		if errors.Is(err, ha.ErrSessionLost) {
			session(t, p.B)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renew still failing 15s after the store came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := p.B.Campaign(ctxT(t, 5*time.Second), "b"); err != nil {
		t.Fatalf("campaign after the store came back: %v", err)
	}
}

// Cluster returns a cluster name unique to the test.
func Cluster(t *testing.T) string {
	return fmt.Sprintf("t%d", time.Now().UnixNano()%1_000_000_000)
}
