package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

const (
	ttl      = 2 * time.Second
	interval = 100 * time.Millisecond
	timeout  = 400 * time.Millisecond
	margin   = 300 * time.Millisecond
)

var t0 = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// call is one request to the fake store, answered by the test.
type call struct {
	new       bool
	confirmed bool // RenewConfirmed (confirmingStore)
	at        time.Time
	reply     chan result
}

type result struct {
	ttl time.Duration
	err error
}

func (c call) grant()         { c.reply <- result{ttl: ttl} }
func (c call) fail(err error) { c.reply <- result{err: err} }

// fakeStore hands every request to the test and waits for its answer or
// the request's context.
type fakeStore struct {
	clk   *clock.Fake
	calls chan call
}

func (s *fakeStore) do(ctx context.Context, isNew bool) (time.Duration, error) {
	return s.send(ctx, call{new: isNew})
}

func (s *fakeStore) send(ctx context.Context, c call) (time.Duration, error) {
	c.at, c.reply = s.clk.Now(), make(chan result, 1)
	s.calls <- c
	select {
	case r := <-c.reply:
		return r.ttl, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *fakeStore) NewSession(ctx context.Context, _ time.Duration) (time.Duration, error) {
	return s.do(ctx, true)
}
func (s *fakeStore) Renew(ctx context.Context) (time.Duration, error) { return s.do(ctx, false) }

// harness runs a Renewer on a fake clock and a fake store; the callbacks
// land on channels the test reads.
type harness struct {
	t        *testing.T
	clk      *clock.Fake
	store    *fakeStore
	r        *Renewer
	granted  chan Renewal
	failed   chan Renewal
	answered chan Renewal
	lost     chan error
	again    chan bool
	done     chan struct{}
	cancel   context.CancelFunc
}

func start(t *testing.T, tune func(*Options)) *harness {
	t.Helper()
	clk := clock.NewFake(t0)
	h := &harness{
		t: t, clk: clk, store: &fakeStore{clk: clk, calls: make(chan call, 16)},
		granted: make(chan Renewal, 16), failed: make(chan Renewal, 16), answered: make(chan Renewal, 16),
		lost: make(chan error, 1), again: make(chan bool), done: make(chan struct{}),
	}
	o := Options{
		Store: h.store, TTL: ttl, Interval: interval, Timeout: timeout, FenceMargin: margin, Clock: clk,
		Granted:  func(_ context.Context, r Renewal) bool { h.granted <- r; return true },
		Failed:   func(r Renewal) { h.failed <- r },
		Answered: func(r Renewal) { h.answered <- r },
		Lost: func(ctx context.Context, err error) bool {
			h.lost <- err
			select {
			case ok := <-h.again:
				return ok
			case <-ctx.Done():
				return false
			}
		},
	}
	if tune != nil {
		tune(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return h
}

// wait receives one value from c, or fails the test after a generous
// real-time deadline (the fake clock does not move by itself).
func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s", what)
		panic("unreachable")
	}
}

func (h *harness) call(isNew bool) call {
	h.t.Helper()
	c := wait(h.t, h.store.calls, "store call")
	if c.new != isNew {
		h.t.Fatalf("store call new=%v, want new=%v", c.new, isNew)
	}
	return c
}

// session creates the first session at t0 and returns its report.
func (h *harness) session() Renewal {
	h.t.Helper()
	h.call(true).grant()
	return wait(h.t, h.granted, "new session")
}

// armed waits until the renewer's next timer is due at at (the loop and
// the retries set their timers on their own goroutine).
func (h *harness) armed(at time.Time) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if next, ok := h.clk.Next(); ok && next.Equal(at) {
			return
		}
		if time.Now().After(deadline) {
			next, _ := h.clk.Next()
			h.t.Fatalf("the next timer is due at +%s, want +%s", next.Sub(t0), at.Sub(t0))
		}
		time.Sleep(time.Millisecond)
	}
}

// next advances the clock by one interval and returns the renewal sent.
func (h *harness) next() call {
	h.t.Helper()
	h.clk.Advance(interval)
	return h.call(false)
}

func TestNewSessionBound(t *testing.T) {
	h := start(t, nil)
	c := h.call(true)
	h.clk.Advance(50 * time.Millisecond) // the answer takes 50 ms
	c.grant()
	r := wait(t, h.granted, "new session")
	if !r.New || !r.SentAt.Equal(t0) || r.Took != 50*time.Millisecond {
		t.Fatalf("new session reported as %+v, want New, sent at t0, took 50ms", r)
	}
	if want := t0.Add(ttl); !r.ValidUntil.Equal(want) || !h.r.ValidUntil().Equal(want) {
		t.Fatalf("ValidUntil %s / %s, want send time + TTL %s", r.ValidUntil, h.r.ValidUntil(), want)
	}
	if want := t0.Add(ttl - margin); !r.FenceAt.Equal(want) || !h.r.FenceAt().Equal(want) {
		t.Fatalf("FenceAt %s, want %s", r.FenceAt, want)
	}
}

// A renewal answered late counts from when it was sent, never from when
// its answer came: the store may have started the TTL at any moment after
// the request left, never before.
func TestLateAnswerCountsFromItsSendTime(t *testing.T) {
	h := start(t, nil)
	h.session()
	first := h.next()
	sent := first.at
	// Two more renewals go out while the first has no answer yet.
	h.next().grant()
	r := wait(t, h.granted, "second renewal")
	second := r.SentAt
	h.next()
	first.grant() // late: two intervals after it was sent
	late := wait(t, h.granted, "late answer")
	if !late.SentAt.Equal(sent) || late.Took != 2*interval {
		t.Fatalf("late answer reported sent %s took %s, want sent %s took %s", late.SentAt, late.Took, sent, 2*interval)
	}
	// It must not move the bound back to its older send time.
	if want := second.Add(ttl); !late.ValidUntil.Equal(want) || !h.r.ValidUntil().Equal(want) {
		t.Fatalf("after the late answer ValidUntil = %s, want the newer renewal's %s", late.ValidUntil, want)
	}
}

// Renewals start every interval whatever the previous one does, counted
// from the previous start, not from its answer.
func TestRenewalsOnSchedule(t *testing.T) {
	h := start(t, nil)
	h.session()
	for i := 1; i <= 5; i++ {
		h.clk.AdvanceTo(t0.Add(time.Duration(i) * interval))
		c := h.call(false)
		if want := t0.Add(time.Duration(i) * interval); !c.at.Equal(want) {
			t.Fatalf("renewal %d sent at +%s, want +%s", i, c.at.Sub(t0), want.Sub(t0))
		}
		h.clk.Advance(interval / 4) // answered a quarter interval later
		c.grant()
		r := wait(t, h.granted, "renewal")
		if want := t0.Add(time.Duration(i)*interval + ttl); !r.ValidUntil.Equal(want) {
			t.Fatalf("renewal %d: ValidUntil +%s, want +%s", i, r.ValidUntil.Sub(t0), want.Sub(t0))
		}
	}
}

// When InFlight renewals are outstanding, a due one is skipped rather than
// piled onto a slow store.
func TestInFlightLimit(t *testing.T) {
	h := start(t, func(o *Options) { o.InFlight = 2; o.Timeout = time.Hour })
	h.session()
	a, b := h.next(), h.next()
	h.clk.Advance(interval) // due, but both slots are taken: skipped
	h.armed(t0.Add(4 * interval))
	a.grant()
	wait(t, h.granted, "first renewal")
	c := h.next()
	if want := t0.Add(4 * interval); !c.at.Equal(want) {
		t.Fatalf("the renewal after a skipped one was sent at +%s, want +%s (the skipped one at +300ms must not have gone out)", c.at.Sub(t0), want.Sub(t0))
	}
	b.grant()
	c.grant()
}

// A failed renewal keeps the bound the earlier ones gave.
func TestFailedRenewalKeepsTheBound(t *testing.T) {
	h := start(t, nil)
	h.session()
	h.next().grant()
	ok := wait(t, h.granted, "renewal")
	h.next().fail(errors.New("store unreachable"))
	f := wait(t, h.failed, "failed renewal")
	if f.Err == nil || !h.r.ValidUntil().Equal(ok.ValidUntil) {
		t.Fatalf("after a failure: %+v, ValidUntil %s, want the earlier %s", f, h.r.ValidUntil(), ok.ValidUntil)
	}
	// A renewal that outlives its timeout fails too.
	c := h.next()
	for range timeout / interval {
		h.clk.Advance(interval) // later renewals go out meanwhile, unanswered
	}
	f = wait(t, h.failed, "timed-out renewal")
	if !f.SentAt.Equal(c.at) || f.Err == nil || f.Took != timeout {
		t.Fatalf("timed-out renewal reported %+v, want sent at +%s, an error, took %s", f, c.at.Sub(t0), timeout)
	}
}

// A lost session: the bound goes, the caller decides when a new session
// may be made, and answers about the old session are not taken as grants.
func TestLostSession(t *testing.T) {
	h := start(t, nil)
	h.session()
	old := h.next()
	h.next().fail(ha.ErrSessionLost)
	if err := wait(t, h.lost, "loss"); !errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("Lost(%v), want ErrSessionLost", err)
	}
	if !h.r.ValidUntil().IsZero() {
		t.Fatalf("ValidUntil %s after the loss, want zero", h.r.ValidUntil())
	}
	h.again <- true
	c := h.call(true)
	c.grant()
	r := wait(t, h.granted, "new session")
	if !r.New || !r.ValidUntil.Equal(c.at.Add(ttl)) {
		t.Fatalf("new session %+v, want New and ValidUntil %s", r, c.at.Add(ttl))
	}
	old.grant() // an answer about the first session
	for {
		a := wait(t, h.answered, "answer about the old session")
		if a.SentAt.Equal(old.at) {
			break
		}
	}
	select {
	case g := <-h.granted:
		t.Fatalf("an answer about the old session was taken as a grant: %+v", g)
	default:
	}
	if !h.r.ValidUntil().Equal(r.ValidUntil) {
		t.Fatalf("ValidUntil moved to %s by an old session's answer", h.r.ValidUntil())
	}
}

// Creating a session is retried with a growing pause.
func TestCreateRetries(t *testing.T) {
	h := start(t, nil)
	h.call(true).fail(errors.New("store down"))
	h.armed(t0.Add(100 * time.Millisecond))
	h.clk.Advance(100 * time.Millisecond)
	h.call(true).fail(errors.New("store down"))
	h.armed(t0.Add(300 * time.Millisecond)) // the pause is 200 ms now
	h.clk.Advance(200 * time.Millisecond)
	c := h.call(true)
	if want := t0.Add(300 * time.Millisecond); !c.at.Equal(want) {
		t.Fatalf("third try at +%s, want +%s", c.at.Sub(t0), want.Sub(t0))
	}
	c.grant()
	wait(t, h.granted, "new session")
}

// Created runs once a new session is granted and before Granted hears of
// it (the agent writes its record there); when it fails the session is
// not reported, and another is created after the pause. Without it, a
// node served on a new session its record did not show yet, and a
// membership removal took it for gone (internal/sim seed 6208).
func TestCreatedBeforeGranted(t *testing.T) {
	created := make(chan chan error)
	h := start(t, func(o *Options) {
		o.Created = func(ctx context.Context) error {
			reply := make(chan error)
			created <- reply
			return <-reply
		}
	})
	h.call(true).grant()
	reply := wait(t, created, "Created after the grant")
	select {
	case g := <-h.granted:
		t.Fatalf("the session was reported before Created returned: %+v", g)
	default:
	}
	reply <- errors.New("publish: store down")
	h.armed(t0.Add(100 * time.Millisecond))
	select {
	case g := <-h.granted:
		t.Fatalf("a session whose Created failed was reported: %+v", g)
	default:
	}
	h.clk.Advance(100 * time.Millisecond)
	h.call(true).grant()
	wait(t, created, "Created after the second grant") <- nil
	r := wait(t, h.granted, "new session")
	if want := t0.Add(100 * time.Millisecond); !r.New || !r.SentAt.Equal(want) {
		t.Fatalf("new session reported as %+v, want New, sent at +100ms", r)
	}
}

func TestOptions(t *testing.T) {
	s := &fakeStore{}
	g := func(context.Context, Renewal) bool { return true }
	for _, o := range []Options{
		{Granted: g, TTL: ttl, Interval: interval, Timeout: timeout},
		{Store: s, TTL: ttl, Interval: interval, Timeout: timeout},
		{Store: s, Granted: g, Interval: interval, Timeout: timeout},
		{Store: s, Granted: g, TTL: ttl, Interval: interval, Timeout: timeout, FenceMargin: ttl},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// A store that grants more than lease_ttl (an external etcd's minimum TTL)
// does not move the bound past what the lock-delay assumes.
func TestLongerGrantCountsAsAsked(t *testing.T) {
	r, err := New(Options{Store: nopSession{}, Granted: func(context.Context, Renewal) bool { return true },
		TTL: 2 * time.Second, Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond, FenceMargin: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Unix(100, 0)
	rn := Renewal{SentAt: sent, TTL: 8 * time.Second}
	r.grant(&rn)
	if want := sent.Add(2 * time.Second); !rn.ValidUntil.Equal(want) || rn.TTL != 2*time.Second {
		t.Fatalf("granted 8s for a 2s lease: ValidUntil %s TTL %s, want %s and 2s", rn.ValidUntil, rn.TTL, want)
	}
}

type nopSession struct{}

func (nopSession) NewSession(context.Context, time.Duration) (time.Duration, error) { return 0, nil }
func (nopSession) Renew(context.Context) (time.Duration, error)                     { return 0, nil }

// confirmingStore is a fakeStore that can confirm renewals (as etcdstore).
type confirmingStore struct{ *fakeStore }

func (s confirmingStore) RenewConfirmed(ctx context.Context) (time.Duration, error) {
	return s.send(ctx, call{confirmed: true})
}

const election = 500 * time.Millisecond // a pause longer than 4/5 of it may have let another member lead

func confirming(o *Options) {
	o.Store = confirmingStore{o.Store.(*fakeStore)}
	o.ElectionTimeout = election
}

func (h *harness) renewal(want bool) call {
	h.t.Helper()
	c := h.call(false)
	if c.confirmed != want {
		h.t.Fatalf("renewal sent at +%s: confirmed %v, want %v", c.at.Sub(t0), c.confirmed, want)
	}
	return c
}

// After a pause of the process long enough for another etcd member to have
// been elected, a renewal counts only once the store confirms it (a woken
// member that led answers from its stale lessor), until one is confirmed;
// then renewals are plain again.
func TestPauseConfirmsRenewals(t *testing.T) {
	h := start(t, confirming)
	h.session()
	h.clk.Advance(interval)
	h.renewal(false).grant()
	before := wait(t, h.granted, "renewal").ValidUntil

	// Paused: the timer due at +200ms fires 500ms late (a 600ms gap since
	// the previous one, over 4/5 of the election timeout).
	h.clk.Advance(interval + election)
	c := h.renewal(true)
	c.fail(errors.New("renewal not confirmed: answered in raft term 2, read in term 3"))
	if f := wait(t, h.failed, "unconfirmed renewal"); !f.Confirmed {
		t.Fatalf("unconfirmed renewal reported %+v, want Confirmed", f)
	}
	if got := h.r.ValidUntil(); !got.Equal(before) {
		t.Fatalf("an unconfirmed renewal after a pause moved ValidUntil to +%s, want the earlier +%s", got.Sub(t0), before.Sub(t0))
	}

	// Until one is confirmed, every renewal is.
	h.clk.Advance(interval)
	c = h.renewal(true)
	c.grant()
	r := wait(t, h.granted, "confirmed renewal")
	if want := c.at.Add(ttl); !r.Confirmed || !r.ValidUntil.Equal(want) || !h.r.ValidUntil().Equal(want) {
		t.Fatalf("confirmed renewal reported %+v, ValidUntil %s; want Confirmed and send time + TTL %s", r, h.r.ValidUntil(), want)
	}
	h.clk.Advance(interval)
	h.renewal(false).grant()
	wait(t, h.granted, "plain renewal")
}

// Without a pause nothing is confirmed (no extra request while idle), even
// with timers late by less than the threshold.
func TestNoPauseNoConfirmation(t *testing.T) {
	h := start(t, confirming)
	h.session()
	for i := range 5 {
		h.clk.Advance(interval + time.Duration(i)*75*time.Millisecond) // at most 300ms late: a 400ms gap
		h.renewal(false).grant()
		wait(t, h.granted, "renewal")
	}
}

// A store that cannot confirm (SQL, memstore) is renewed as before after a
// pause: it has no stale primary to wake.
func TestPauseWithoutConfirmingStore(t *testing.T) {
	h := start(t, func(o *Options) { o.ElectionTimeout = election })
	h.session()
	h.clk.Advance(interval + election)
	c := h.renewal(false)
	c.grant()
	if r := wait(t, h.granted, "renewal"); !r.ValidUntil.Equal(c.at.Add(ttl)) {
		t.Fatalf("ValidUntil %s, want %s", r.ValidUntil, c.at.Add(ttl))
	}
}

// pausingClock is a fake clock that jumps ahead inside the n-th call of
// Now after arm: the process paused just before that reading.
type pausingClock struct {
	*clock.Fake
	mu    sync.Mutex
	n     int
	pause time.Duration
}

func (c *pausingClock) arm(n int, pause time.Duration) {
	c.mu.Lock()
	c.n, c.pause = n, pause
	c.mu.Unlock()
}

func (c *pausingClock) Now() time.Time {
	c.mu.Lock()
	c.n--
	jump := c.n == 0
	c.mu.Unlock()
	if jump {
		c.Advance(c.pause)
	}
	return c.Fake.Now()
}

// A pause between a renewal's timer and its send (the timer was on time)
// is a pause too: that renewal is confirmed.
func TestPauseBeforeTheSend(t *testing.T) {
	var pc *pausingClock
	h := start(t, func(o *Options) {
		confirming(o)
		pc = &pausingClock{Fake: o.Clock.(*clock.Fake)}
		o.Clock = pc
	})
	h.session()
	h.clk.Advance(interval)
	h.renewal(false).grant()
	before := wait(t, h.granted, "renewal").ValidUntil
	// The loop reads the clock when its timer fires (1), the renewal when
	// it is sent (2): the process pauses just before that.
	pc.arm(2, interval+election)
	h.clk.Advance(interval)
	// The renewal that paused, and the one the late timer then starts
	// (the loop sees the gap too), in either order: both confirmed.
	for range 2 {
		h.renewal(true).fail(errors.New("not confirmed"))
		wait(t, h.failed, "unconfirmed renewal")
	}
	if got := h.r.ValidUntil(); !got.Equal(before) {
		t.Fatalf("unconfirmed renewals after a pause moved ValidUntil to +%s, want +%s", got.Sub(t0), before.Sub(t0))
	}
}

// TestPausesRule: the pause rule on its own, as the simulation drives it
// (internal/sim): confirm from a pause until a confirmed renewal of the
// current session sent after it is granted; a refused or earlier one, or
// one of an earlier session, does not end it.
func TestPausesRule(t *testing.T) {
	if g := PauseGap(interval, 500*time.Millisecond); g != 400*time.Millisecond {
		t.Fatalf("PauseGap with a 500ms election = %s, want 400ms", g)
	}
	if g := PauseGap(interval, 0); g != 150*time.Millisecond {
		t.Fatalf("PauseGap without an election = %s, want 150ms", g)
	}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := Pauses{Gap: 400 * time.Millisecond}
	p.Start(at(0))
	fire := func(ms int, want bool) {
		t.Helper()
		if c, _ := p.Fire(at(ms)); c != want {
			t.Fatalf("renewal at %d ms: confirm %t, want %t", ms, c, want)
		}
	}
	fire(100, false)
	fire(400, false) // 300 ms: under the gap
	if c, gap := p.Fire(at(1000)); !c || gap != 600*time.Millisecond {
		t.Fatalf("after a 600 ms gap: confirm %t, gap %s; want true, 600ms", c, gap)
	}
	p.Answered(at(400), false, true, true) // sent before the pause
	p.Answered(at(1000), true, true, false)
	p.Answered(at(1000), true, false, true) // of an earlier session
	fire(1100, true)
	p.Answered(at(1100), true, true, true)
	fire(1200, false)
	if !p.PausedBeforeSend(at(1200), at(1700)) || p.PausedBeforeSend(at(1200), at(1500)) {
		t.Fatal("PausedBeforeSend: want a pause for 500 ms, none for 300 ms")
	}
	p.Answered(at(1700), true, true, false) // that renewal, refused
	fire(1800, true)
}
