// Package lease renews a store session on a schedule, keeps its validity
// bound (the send time of the newest acknowledged renewal + the TTL it
// granted; serving ends fence_margin before that) and reports the session's
// loss.
//
// The bound is counted from when a renewal was sent, never from when its
// answer came: the store may have started the TTL at any moment after the
// request left, never before, so the bound is never later than the store's
// own expiry however late the answer arrives. That is also why renewals are
// pipelined (one starts every Interval whether or not the previous one has
// answered, up to InFlight at once): one slow round trip does not delay the
// next, and a late answer still counts for what it can prove.
//
// After a pause of this process (SIGSTOP, a VM or GC stall) long enough for
// another etcd member to have been elected raft leader, a renewal counts
// only once the store confirms it (ConfirmedRenewer), until one confirmed
// renewal has been granted: the embedded etcd member lives in this process,
// and a woken member that led raft answers renewals from its stale lessor
// until it learns the new term (etcd 3.7.3's LeaseRenew skips its
// leadership check while raft ticked lately, which a woken process does at
// once). Without a pause no renewal is confirmed: it costs nothing idle.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
)

// Session is the part of a store a renewer uses (ha.Coordinator has it).
type Session interface {
	// NewSession creates a fresh session with the given TTL and returns
	// the TTL the store granted.
	NewSession(ctx context.Context, ttl time.Duration) (time.Duration, error)
	// Renew extends the current session; ha.ErrSessionLost when the store
	// no longer has it.
	Renew(ctx context.Context) (time.Duration, error)
}

// ConfirmedRenewer is a Session that can prove a renewal reached the
// store's current primary (etcdstore: a keep-alive, then a linearizable
// read answered in the same raft term). The renewer uses it only after a
// pause of this process (Options.ElectionTimeout); a store without it (SQL,
// memstore) is renewed with Renew always.
type ConfirmedRenewer interface {
	// RenewConfirmed is Renew, with an error (not ha.ErrSessionLost)
	// when the renewal cannot be proved to have reached the current
	// primary: the renewer does not count it. The error wraps
	// ha.ErrUnconfirmed when the store answered the renewal but the proof
	// failed (metrics tell these apart from a store that did not answer).
	RenewConfirmed(ctx context.Context) (time.Duration, error)
}

// Renewal is one new session or one renewal as the store answered it.
type Renewal struct {
	SentAt time.Time     // when the request was sent
	TTL    time.Duration // what the store granted (zero on error)
	Took   time.Duration // from sending to the answer
	New    bool          // a new session (it replaces any earlier one)
	// Confirmed: sent after a pause of this process, through
	// ConfirmedRenewer (only granted if the store confirmed it).
	Confirmed bool
	Err       error // nil when the store granted it
	// ValidUntil and FenceAt are the session's bounds after this answer
	// (zero while there is no session).
	ValidUntil time.Time
	FenceAt    time.Time
}

// Options configure a Renewer.
type Options struct {
	Store Session
	// TTL is the lease asked for; Interval how often a renewal starts;
	// Timeout how long one renewal may take; CreateTimeout how long the
	// creation of a session may take (TTL when zero).
	TTL, Interval, Timeout, CreateTimeout time.Duration
	// FenceMargin: serving ends this long before ValidUntil (FenceAt).
	FenceMargin time.Duration
	// InFlight is how many renewals may be outstanding at once (4 when
	// zero); when all are, a due renewal is skipped: the store is slow and
	// more requests would only pile up.
	InFlight int
	// ElectionTimeout is the store's raft election timeout (etcd_election):
	// a pause of this process shorter than ElectionTimeout − heartbeat
	// cannot have let another member be elected, and etcd requires
	// heartbeat <= ElectionTimeout/5. So when this process may have been
	// paused for 4/5 of it — the time between the previous renewal's start
	// and a renewal's send time is longer — renewals are confirmed
	// (ConfirmedRenewer) until one is granted. Zero: 1.5 × Interval, below
	// 4/5 of the election timeout in every preset.
	ElectionTimeout time.Duration

	// Created, when set, is called once a new session is granted and
	// before Granted hears of it; an error abandons that session (it
	// expires on its own) and the renewer creates another after a pause.
	// The agent writes its record there, bound to the new session, so the
	// node never serves on a session the store shows no record of: a
	// membership removal judges the removed node gone by its record
	// (agent.RemovedGone).
	Created func(ctx context.Context) error
	// Granted is called, in the order the answers arrive, for each new
	// session (New set) and each renewal of the current session the store
	// granted; it returns false when the renewer should stop.
	Granted func(ctx context.Context, r Renewal) bool
	// Answered, when set, is called for every answer to a renewal
	// (granted, failed, or about an earlier session): metrics.
	Answered func(r Renewal)
	// Failed, when set, is called for a renewal of the current session
	// that failed without losing it (a timeout, an unreachable store).
	Failed func(r Renewal)
	// Lost is called when the store no longer has the session; it returns
	// when a new one may be created, or false to stop. Nil: at once.
	Lost func(ctx context.Context, err error) bool

	Clock clock.Clock
	Log   *slog.Logger
}

// Renewer keeps one session alive.
type Renewer struct {
	o Options

	pauseGap   time.Duration // a longer gap may be a pause (PauseGap)
	confirming bool          // is the store a ConfirmedRenewer

	mu         sync.Mutex
	validUntil time.Time
	warned     bool // a longer TTL than asked was granted (grant)
}

// New checks o.
func New(o Options) (*Renewer, error) {
	switch {
	case o.Store == nil || o.Granted == nil:
		return nil, errors.New("lease: Store and Granted are required")
	case o.TTL <= 0 || o.Interval <= 0 || o.Timeout <= 0 || o.FenceMargin < 0 || o.CreateTimeout < 0 || o.ElectionTimeout < 0:
		return nil, fmt.Errorf("lease: timings must be positive (ttl %s, renew %s/%s, fence margin %s)", o.TTL, o.Interval, o.Timeout, o.FenceMargin)
	case o.FenceMargin >= o.TTL:
		return nil, fmt.Errorf("lease: fence margin %s must be shorter than the lease %s", o.FenceMargin, o.TTL)
	}
	if o.CreateTimeout == 0 {
		o.CreateTimeout = o.TTL
	}
	if o.InFlight <= 0 {
		o.InFlight = 4
	}
	if o.Lost == nil {
		o.Lost = func(ctx context.Context, _ error) bool { return ctx.Err() == nil }
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	_, confirming := o.Store.(ConfirmedRenewer)
	return &Renewer{o: o, pauseGap: PauseGap(o.Interval, o.ElectionTimeout), confirming: confirming}, nil
}

// ValidUntil is the newest acknowledged renewal's send time plus the TTL it
// granted: the store keeps the session at least until then (zero: no
// session).
func (r *Renewer) ValidUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.validUntil
}

// FenceAt is ValidUntil less the fence margin: when serving must end
// without a newer renewal (zero: no session).
func (r *Renewer) FenceAt() time.Time { return fenceAt(r.ValidUntil(), r.o.FenceMargin) }

func fenceAt(v time.Time, margin time.Duration) time.Time {
	if v.IsZero() {
		return v
	}
	return v.Add(-margin)
}

// grant moves the bound for an answer sent at sent with ttl: never back,
// except for a new session, which replaces the old one.
//
// A TTL longer than the one asked for counts as the one asked for: the
// store keeps the session at least that long, and the lock-delay (package
// lockdelay) lets a standby act lease_ttl − fence_margin after the key went,
// so a holder must not count on more (an external etcd whose election
// timeout raises its minimum TTL above lease_ttl grants more, silently).
func (r *Renewer) grant(rn *Renewal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rn.TTL > r.o.TTL {
		if !r.warned {
			r.warned = true
			r.o.Log.Warn("the store granted a longer lease than asked; counting the one asked for (check the store's election timeout against lease_ttl)",
				"granted", rn.TTL, "lease_ttl", r.o.TTL)
		}
		rn.TTL = r.o.TTL
	}
	if v := rn.SentAt.Add(rn.TTL); v.After(r.validUntil) || rn.New {
		r.validUntil = v
	}
	rn.ValidUntil, rn.FenceAt = r.validUntil, fenceAt(r.validUntil, r.o.FenceMargin)
}

func (r *Renewer) drop() {
	r.mu.Lock()
	r.validUntil = time.Time{}
	r.mu.Unlock()
}

// Run creates a session and renews it until ctx ends (or a callback says
// stop), creating a new one each time the store loses it.
func (r *Renewer) Run(ctx context.Context) {
	type answer struct {
		gen int
		r   Renewal
	}
	o, clk := r.o, r.o.Clock
	answers := make(chan answer, 4*o.InFlight)
	slots := make(chan struct{}, o.InFlight)
	var timer clock.Timer // the next renewal; set once there is a session
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	gen := 0
	pauses := Pauses{Gap: r.pauseGap}
	for ctx.Err() == nil {
		created, ok := r.create(ctx)
		if !ok {
			return
		}
		gen++
		if timer == nil {
			timer = clk.NewTimer(o.Interval)
		} else {
			timer.Stop()
			select { // a tick left over from the previous session
			case <-timer.C():
			default:
			}
			timer.Reset(o.Interval)
		}
		pauses.Start(clk.Now())
		r.grant(&created)
		if !o.Granted(ctx, created) {
			return
		}
		for lost := false; !lost; {
			select {
			case <-timer.C():
				// The next one is due Interval after this one, however
				// long this one takes.
				timer.Reset(o.Interval)
				fired := clk.Now()
				confirm := false
				if r.confirming {
					var paused time.Duration
					confirm, paused = pauses.Fire(fired)
					r.logPause(paused)
				}
				select {
				case slots <- struct{}{}:
				default:
					continue // all in flight: the store is slow; don't pile up
				}
				go func(g int, confirm bool) {
					defer func() { <-slots }()
					sent := clk.Now()
					// The process may also pause between the timer and the send.
					paused := r.confirming && pauses.PausedBeforeSend(fired, sent)
					if paused {
						r.logPause(sent.Sub(fired))
					}
					cctx, cancel := clock.WithTimeout(ctx, clk, o.Timeout)
					var ttl time.Duration
					var err error
					if confirm || paused {
						ttl, err = o.Store.(ConfirmedRenewer).RenewConfirmed(cctx)
					} else {
						ttl, err = o.Store.Renew(cctx)
					}
					cancel()
					answers <- answer{g, Renewal{SentAt: sent, TTL: ttl, Took: clk.Since(sent), Err: err, Confirmed: confirm || paused}}
				}(gen, confirm)
			case a := <-answers:
				if a.gen == gen && a.r.Err == nil {
					r.grant(&a.r)
				}
				pauses.Answered(a.r.SentAt, a.r.Confirmed, a.gen == gen, a.r.Err == nil)
				if o.Answered != nil {
					o.Answered(a.r)
				}
				switch {
				case a.gen != gen: // about an earlier session
				case a.r.Err == nil:
					if !o.Granted(ctx, a.r) {
						return
					}
				case errors.Is(a.r.Err, ha.ErrSessionLost):
					r.drop()
					if !o.Lost(ctx, a.r.Err) {
						return
					}
					lost = true
				case ctx.Err() == nil && o.Failed != nil:
					o.Failed(a.r)
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

// logPause logs a pause that Pauses saw (gap: how long it was, at least;
// zero: none).
func (r *Renewer) logPause(gap time.Duration) {
	if gap > 0 {
		r.o.Log.Info("this process was paused (or starved) long enough for another store member to lead; renewals count only once the store confirms them",
			"gap", gap.Round(time.Millisecond), "threshold", r.pauseGap)
	}
}

// PauseGap is how long this process may go without running before another
// store member may have been elected raft leader meanwhile: 4/5 of the
// election timeout (a pause shorter than election − heartbeat cannot have
// let another member be elected, and etcd requires heartbeat <=
// election/5); without one, 1.5 × the renew interval, below 4/5 of the
// election timeout in every preset.
func PauseGap(interval, electionTimeout time.Duration) time.Duration {
	if electionTimeout > 0 {
		return electionTimeout - electionTimeout/5
	}
	return interval + interval/2
}

// Pauses is the renewer's rule for which renewals must be confirmed
// (ConfirmedRenewer), without a clock or I/O: the renewer's loop feeds it
// the times it reads, and the simulation (internal/sim) feeds it its own.
// After a gap longer than Gap between the renewal timer's runs (or between
// a renewal's timer and its send), this process may have been paused
// while another member was elected, and a member that led raft in it
// answers from its stale lessor until it learns the new term: every
// renewal is confirmed from then until one confirmed renewal of the
// current session sent after that pause is granted. The zero value with
// Gap set is ready.
type Pauses struct {
	Gap time.Duration
	// lastFire: when the timer last ran (or was set); the process ran
	// then. confirmSince: while set, renewals are confirmed; the latest
	// pause was seen then.
	lastFire, confirmSince time.Time
}

// Start: a new session was created at now, and the timer set.
func (p *Pauses) Start(now time.Time) { p.lastFire = now }

// Fire: the renewal timer ran at now. confirm: the renewal it starts must
// be confirmed; paused: the gap since the timer's previous run when it is
// over Gap (a pause ended just now), else zero.
func (p *Pauses) Fire(now time.Time) (confirm bool, paused time.Duration) {
	if gap := now.Sub(p.lastFire); gap > p.Gap {
		p.confirmSince, paused = now, gap
	}
	p.lastFire = now
	return !p.confirmSince.IsZero(), paused
}

// PausedBeforeSend: the process may have paused between a renewal's timer
// (fired) and its send (sent); that renewal must be confirmed too.
func (p *Pauses) PausedBeforeSend(fired, sent time.Time) bool { return sent.Sub(fired) > p.Gap }

// Answered: the answer to a renewal sent at sent, confirmed or not, of
// the current session or an earlier one, granted or not.
func (p *Pauses) Answered(sent time.Time, confirmed, current, granted bool) {
	switch {
	case confirmed && p.confirmSince.IsZero() && !granted:
		// A pause seen by the renewal alone (between its timer and its
		// send): confirm until one is granted.
		p.confirmSince = sent
	case confirmed && current && granted && !sent.Before(p.confirmSince):
		p.confirmSince = time.Time{} // confirmed after the latest pause
	}
}

// create makes a new session, retrying with a growing pause (100 ms to
// 1 s) until it succeeds or ctx ends.
func (r *Renewer) create(ctx context.Context) (Renewal, bool) {
	o, clk := r.o, r.o.Clock
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, time.Second) {
		sent := clk.Now()
		cctx, cancel := clock.WithTimeout(ctx, clk, o.CreateTimeout)
		ttl, err := o.Store.NewSession(cctx, o.TTL)
		cancel()
		if err == nil && o.Created != nil {
			if err = o.Created(ctx); err != nil {
				err = fmt.Errorf("after the session was granted: %w", err)
			}
		}
		if err == nil {
			return Renewal{SentAt: sent, TTL: ttl, Took: clk.Since(sent), New: true}, true
		}
		o.Log.Debug("create session", "err", err, "retry in", backoff)
		if !clock.SleepCtx(ctx, clk, backoff) {
			break
		}
	}
	return Renewal{}, false
}
