// Package clock lets code that makes decisions about time take the time as an
// input: production code uses Real, tests and the simulation use a Fake that
// moves only when told and fires its timers in deadline order.
package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Clock tells the time and makes timers. Every package that decides by time
// (agent, checks, supervisor, proxy) takes one instead of calling time.*
// directly (TestNoDirectTime enforces it).
type Clock interface {
	Now() time.Time
	// Since returns Now().Sub(t).
	Since(t time.Time) time.Duration
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d (d > 0).
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
	// Sleep blocks for d.
	Sleep(d time.Duration)
}

// Timer is a one-shot timer (time.Timer's methods).
type Timer interface {
	// C is the channel the timer fires on (nil for AfterFunc timers).
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d; it reports whether it was active.
	Reset(d time.Duration) bool
}

// Ticker fires repeatedly (time.Ticker's methods).
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// SleepCtx waits for d on clk or until ctx ends, whichever comes first; it
// reports whether the full d passed.
func SleepCtx(ctx context.Context, clk Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// Real is the system clock. Its times carry Go's monotonic reading, so
// differences between them are immune to wall-clock jumps.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Since returns time.Since(t).
func (Real) Since(t time.Time) time.Duration { return time.Since(t) }

// After returns time.After(d).
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// NewTimer returns time.NewTimer(d).
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// NewTicker returns time.NewTicker(d).
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// AfterFunc returns time.AfterFunc(d, f).
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

// Sleep calls time.Sleep(d).
func (Real) Sleep(d time.Duration) { time.Sleep(d) }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time   { return r.t.C }
func (r realTicker) Stop()                 { r.t.Stop() }
func (r realTicker) Reset(d time.Duration) { r.t.Reset(d) }

// Fake is a manually advanced clock. Time moves only in Advance (or
// AdvanceTo); timers due by then fire in deadline order (ties in the order
// they were set), so a run is the same every time it is given the same
// calls. Channel timers get the firing time on a buffered channel; AfterFunc
// callbacks run in their own goroutine, as with the real clock, unless the
// Fake was made with NewFakeSync, where they run inline in Advance.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers timerHeap
	inline bool
}

// NewFake returns a Fake set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// NewFakeSync returns a Fake set to t whose AfterFunc callbacks run inside
// Advance, one after the other in deadline order: a single-threaded
// simulation stays single-threaded.
func NewFakeSync(t time.Time) *Fake { return &Fake{now: t, inline: true} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since returns Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// After returns a channel that fires when the clock reaches now+d.
func (f *Fake) After(d time.Duration) <-chan time.Time { return f.NewTimer(d).C() }

// NewTimer returns a timer that fires when the clock reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1)}
	f.mu.Lock()
	f.schedule(t, d)
	f.mu.Unlock()
	f.fireDue()
	return t
}

// AfterFunc calls fn once the clock reaches now+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn}
	f.mu.Lock()
	f.schedule(t, d)
	f.mu.Unlock()
	f.fireDue()
	return t
}

// NewTicker returns a ticker that fires every d of fake time. Like a real
// ticker, it drops ticks a slow reader did not take.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	f.schedule(t, d)
	f.mu.Unlock()
	return fakeTicker{t}
}

// Sleep blocks until another goroutine advances the clock by d.
func (f *Fake) Sleep(d time.Duration) { <-f.After(d) }

// Advance moves the clock forward by d, firing every timer due on the way at
// its own deadline (Now() reads the deadline while it fires).
func (f *Fake) Advance(d time.Duration) {
	f.AdvanceTo(f.Now().Add(d))
}

// AdvanceTo moves the clock forward to t (never backwards), firing timers
// due on the way in deadline order.
func (f *Fake) AdvanceTo(t time.Time) {
	for {
		f.mu.Lock()
		if len(f.timers) == 0 || f.timers[0].at.After(t) {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		next := f.timers[0]
		if next.at.After(f.now) {
			f.now = next.at
		}
		f.mu.Unlock()
		f.fireDue()
	}
}

// Next returns the deadline of the earliest pending timer, and false if
// there is none. A simulation uses it to jump straight to the next event.
func (f *Fake) Next() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return time.Time{}, false
	}
	return f.timers[0].at, true
}

// Pending returns the number of timers waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// fireDue fires every timer due at the current time, in deadline order.
func (f *Fake) fireDue() {
	for {
		f.mu.Lock()
		if len(f.timers) == 0 || f.timers[0].at.After(f.now) {
			f.mu.Unlock()
			return
		}
		t := heap.Pop(&f.timers).(*fakeTimer)
		t.index = -1
		now := f.now
		if t.period > 0 {
			f.schedule(t, t.period)
		}
		f.mu.Unlock()
		switch {
		case t.fn != nil && f.inline:
			t.fn()
		case t.fn != nil:
			go t.fn()
		default:
			select {
			case t.ch <- now:
			default: // a ticker's reader is behind: drop, as time.Ticker does
			}
		}
	}
}

// schedule puts t in the heap to fire d from now. f.mu is held.
func (f *Fake) schedule(t *fakeTimer, d time.Duration) {
	f.seq++
	t.at, t.seq = f.now.Add(max(d, 0)), f.seq
	heap.Push(&f.timers, t)
}

// stop removes t from the heap; it reports whether t was pending.
func (f *Fake) stop(t *fakeTimer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&f.timers, t.index)
	t.index = -1
	return true
}

type fakeTimer struct {
	f      *Fake
	at     time.Time
	seq    uint64
	index  int
	ch     chan time.Time
	fn     func()
	period time.Duration
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }
func (t *fakeTimer) Stop() bool          { return t.f.stop(t) }

func (t *fakeTimer) Reset(d time.Duration) bool {
	was := t.f.stop(t)
	if t.ch != nil {
		select { // like Go 1.23 timers: no stale value after Reset
		case <-t.ch:
		default:
		}
	}
	t.f.mu.Lock()
	t.f.schedule(t, d)
	t.f.mu.Unlock()
	t.f.fireDue()
	return was
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.ch }
func (k fakeTicker) Stop()               { k.t.f.stop(k.t) }
func (k fakeTicker) Reset(d time.Duration) {
	k.t.f.stop(k.t)
	k.t.f.mu.Lock()
	k.t.period = d
	k.t.f.schedule(k.t, d)
	k.t.f.mu.Unlock()
}

// timerHeap orders timers by deadline, then by the order they were set.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

// WithTimeout is context.WithTimeout on clk: with Real it is exactly
// context.WithTimeout; with a Fake the context ends when the fake time
// reaches now+d (its Err is then context.Canceled and its Cause
// context.DeadlineExceeded; it reports no Deadline).
func WithTimeout(ctx context.Context, clk Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := clk.(Real); ok {
		return context.WithTimeout(ctx, d)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	t := clk.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return cctx, func() { t.Stop(); cancel(context.Canceled) }
}

// WithDeadline is context.WithDeadline on clk (see WithTimeout).
func WithDeadline(ctx context.Context, clk Clock, at time.Time) (context.Context, context.CancelFunc) {
	if _, ok := clk.(Real); ok {
		return context.WithDeadline(ctx, at)
	}
	return WithTimeout(ctx, clk, at.Sub(clk.Now()))
}
