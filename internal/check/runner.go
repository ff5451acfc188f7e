package check

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/haven-ha/haven/internal/clock"
)

// Result is the aggregate health of the local service.
type Result struct {
	Healthy bool
	Reason  string // the first failing check and its last error, or why all is well
}

// Status is the state of one check, for status output and metrics.
type Status struct {
	Name          string
	Healthy       bool
	LastError     string        // error of the latest probe; "" if it passed or none ran yet
	LastDuration  time.Duration // how long the latest probe took
	LastRun       time.Time     // when the latest probe ended; zero before the first
	Passes        int           // consecutive passes
	Failures      int           // consecutive failures
	TotalPasses   uint64
	TotalFailures uint64
}

// notChecked is the reason of a check that has not passed yet.
const notChecked = "not checked yet"

// Runner runs a set of checks, each on its own ticker, and keeps the
// aggregate verdict: healthy iff every check is healthy. A check starts
// unhealthy, becomes healthy after Rise consecutive passes and unhealthy
// after Fall consecutive failures. With no checks at all the aggregate is
// healthy, and process liveness is left to the caller.
//
// All methods are safe for concurrent use.
type Runner struct {
	log     *slog.Logger
	clk     clock.Clock
	entries []*entry
	updates chan Result

	mu   sync.Mutex
	gen  uint64 // bumped by ForceFail: probes started before it do not count
	last Result // last aggregate computed and published
}

type entry struct {
	checker  Checker
	interval time.Duration
	timeout  time.Duration
	rise     int
	fall     int

	// Guarded by Runner.mu.
	st     Status
	reason string // why the check is unhealthy: its last failure
}

// RunnerOption configures a Runner.
type RunnerOption func(*Runner)

// WithClock makes the runner pace and time its probes on clk (default: the
// system clock).
func WithClock(clk clock.Clock) RunnerOption { return func(r *Runner) { r.clk = clk } }

// NewRunner builds the checks with New; log may be nil. Rise and Fall below 1 count as 1; a
// Timeout of zero falls back to the Interval, which must be positive.
func NewRunner(checks []Options, vars map[string]string, log *slog.Logger, opts ...RunnerOption) (*Runner, error) {
	entries := make([]*entry, 0, len(checks))
	for i, c := range checks {
		if c.Name == "" {
			c.Name = fmt.Sprintf("check%d", i+1)
		}
		if c.Interval <= 0 {
			return nil, fmt.Errorf("check %q: interval must be positive, got %s", c.Name, c.Interval)
		}
		if c.Timeout <= 0 {
			c.Timeout = c.Interval
		}
		ch, err := New(c, vars)
		if err != nil {
			return nil, err
		}
		entries = append(entries, &entry{
			checker:  ch,
			interval: c.Interval,
			timeout:  c.Timeout,
			rise:     max(c.Rise, 1),
			fall:     max(c.Fall, 1),
		})
	}
	r := newRunner(entries, log)
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

func newRunner(entries []*entry, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{log: log, clk: clock.Real{}, entries: entries, updates: make(chan Result, 1)}
	for _, e := range entries {
		e.st.Name = e.checker.Name()
		e.reason = notChecked
	}
	r.mu.Lock()
	r.last = r.aggregateLocked()
	r.updates <- r.last // the starting point, so a consumer never waits for a first value
	r.mu.Unlock()
	return r
}

// Updates delivers the aggregate each time it changes, starting with the
// initial one. It holds one value: when the consumer falls behind, the stale
// value is replaced by the newest, and the checks never block on it. It is
// never closed.
func (r *Runner) Updates() <-chan Result { return r.updates }

// Current returns the aggregate now.
func (r *Runner) Current() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Checks returns the state of every check, in configuration order.
func (r *Runner) Checks() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.st
	}
	return out
}

// Run probes until ctx ends and returns once every probe has stopped. Each
// check runs at once, then every Interval; a probe that outlasts its
// Interval delays the next one rather than overlapping it. Call Run once.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range r.entries {
		wg.Go(func() { r.loop(ctx, e) })
	}
	wg.Wait()
}

func (r *Runner) loop(ctx context.Context, e *entry) {
	t := r.clk.NewTicker(e.interval)
	defer t.Stop()
	if c, ok := e.checker.(interface{ CloseIdleConnections() }); ok {
		defer c.CloseIdleConnections() // an http check's kept connection ends with Run
	}
	for ctx.Err() == nil {
		r.probe(ctx, e)
		select {
		case <-ctx.Done():
		case <-t.C():
		}
	}
}

func (r *Runner) probe(ctx context.Context, e *entry) {
	r.mu.Lock()
	gen := r.gen
	r.mu.Unlock()
	start := r.clk.Now()
	pctx, cancel := context.WithTimeout(ctx, e.timeout)
	err := e.checker.Check(pctx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the probe was cut short, not failed
	}
	r.record(e, gen, err, r.clk.Since(start), r.clk.Now())
}

// record counts one probe result, started in generation gen.
func (r *Runner) record(e *entry, gen uint64, err error, took time.Duration, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		// ForceFail happened while this probe ran; its pass may predate the
		// failure that ForceFail reported.
		return
	}
	st := &e.st
	st.LastDuration, st.LastRun = took, at
	if err == nil {
		st.LastError = ""
		st.Passes++
		st.Failures = 0
		st.TotalPasses++
		if !st.Healthy && st.Passes >= e.rise {
			st.Healthy = true
			r.log.Info("check healthy", "check", st.Name, "passes", st.Passes)
		}
	} else {
		msg := err.Error()
		st.LastError = msg
		e.reason = msg
		st.Failures++
		st.Passes = 0
		st.TotalFailures++
		if st.Healthy && st.Failures >= e.fall {
			st.Healthy = false
			r.log.Warn("check unhealthy", "check", st.Name, "failures", st.Failures, "err", msg)
		} else {
			r.log.Debug("check failed", "check", st.Name, "failures", st.Failures, "healthy", st.Healthy, "err", msg)
		}
	}
	r.publishLocked()
}

// ForceFail marks every check unhealthy at once, with reason as their error,
// and publishes the result; each check must then pass Rise times again. The
// agent calls it when the supervised process exits, so that health does not
// lag a crash by Fall intervals. With no checks it changes nothing.
func (r *Runner) ForceFail(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	for _, e := range r.entries {
		e.st.Healthy = false
		e.st.Passes, e.st.Failures = 0, 0
		e.reason = reason
	}
	if len(r.entries) > 0 {
		r.log.Warn("checks forced to fail", "reason", reason)
	}
	r.publishLocked()
}

// publishLocked recomputes the aggregate and, if it changed, replaces any
// unread value in the updates channel with it.
func (r *Runner) publishLocked() {
	res := r.aggregateLocked()
	if res == r.last {
		return
	}
	r.last = res
	select {
	case <-r.updates:
	default:
	}
	// Cannot block: the buffer has room and only publishLocked sends, under r.mu.
	r.updates <- res
}

func (r *Runner) aggregateLocked() Result {
	if len(r.entries) == 0 {
		return Result{Healthy: true, Reason: "no checks configured"}
	}
	for _, e := range r.entries {
		if !e.st.Healthy {
			return Result{Reason: e.st.Name + ": " + e.reason}
		}
	}
	return Result{Healthy: true, Reason: fmt.Sprintf("all %d checks pass", len(r.entries))}
}
