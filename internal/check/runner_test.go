package check

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fake is a Checker whose result the test sets.
type fake struct {
	name string
	err  atomic.Pointer[error]
}

func (f *fake) Name() string { return f.name }
func (f *fake) Check(context.Context) error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// The rise/fall counting, driven one probe at a time.
func TestRiseFall(t *testing.T) {
	a := &entry{checker: &fake{name: "a"}, rise: 2, fall: 3}
	b := &entry{checker: &fake{name: "b"}, rise: 1, fall: 1}
	r := newRunner([]*entry{a, b}, nil)
	down := errors.New("down")
	pass, fail := error(nil), down

	steps := []struct {
		e       *entry
		err     error
		healthy bool
		reason  string
	}{
		{a, pass, false, "a: not checked yet"}, // a 1/2
		{b, pass, false, "a: not checked yet"}, // b healthy
		{a, fail, false, "a: down"},            // a back to 0
		{a, pass, false, "a: down"},            // a 1/2
		{a, pass, true, "all 2 checks pass"},   // a healthy
		{a, fail, true, "all 2 checks pass"},   // a 1/3 failures
		{a, fail, true, "all 2 checks pass"},   // a 2/3
		{a, pass, true, "all 2 checks pass"},   // reset
		{a, fail, true, "all 2 checks pass"},
		{a, fail, true, "all 2 checks pass"},
		{a, fail, false, "a: down"}, // 3/3
		{b, fail, false, "a: down"}, // first failing check is named
		{a, pass, false, "a: down"},
		{a, pass, false, "b: down"},
		{b, pass, true, "all 2 checks pass"},
	}
	for i, s := range steps {
		r.record(s.e, 0, s.err, time.Millisecond, time.Now())
		if got := r.Current(); got.Healthy != s.healthy || got.Reason != s.reason {
			t.Fatalf("step %d: %+v, want healthy=%v reason %q", i, got, s.healthy, s.reason)
		}
	}
	st := r.Checks()
	if st[0].TotalPasses != 6 || st[0].TotalFailures != 6 || st[0].Passes != 2 || st[0].Failures != 0 {
		t.Errorf("a status %+v", st[0])
	}
}

func TestForceFail(t *testing.T) {
	a := &entry{checker: &fake{name: "a"}, rise: 2, fall: 3}
	r := newRunner([]*entry{a}, nil)
	r.record(a, 0, nil, 0, time.Now())
	r.record(a, 0, nil, 0, time.Now())
	if !r.Current().Healthy {
		t.Fatal("not healthy after rise passes")
	}
	r.ForceFail("service exited (pid 42)")
	if got, want := r.Current(), (Result{Reason: "a: service exited (pid 42)"}); got != want {
		t.Fatalf("after ForceFail: %+v, want %+v", got, want)
	}
	if got := <-r.Updates(); got.Healthy {
		t.Fatalf("update after ForceFail: %+v", got)
	}
	// A probe that started before ForceFail does not count.
	r.record(a, 0, nil, 0, time.Now())
	r.record(a, 0, nil, 0, time.Now())
	if r.Current().Healthy || r.Checks()[0].Passes != 0 {
		t.Fatalf("stale probes counted: %+v %+v", r.Current(), r.Checks()[0])
	}
	// Rise passes are needed again.
	r.record(a, 1, nil, 0, time.Now())
	if r.Current().Healthy {
		t.Fatal("healthy after one pass")
	}
	r.record(a, 1, nil, 0, time.Now())
	if !r.Current().Healthy {
		t.Fatal("not healthy after rise passes")
	}
}

// Updates holds the newest value only and never blocks the publisher.
func TestUpdatesNewestWins(t *testing.T) {
	a := &entry{checker: &fake{name: "a"}, rise: 1, fall: 1}
	r := newRunner([]*entry{a}, nil)
	for range 10 {
		r.record(a, 0, nil, 0, time.Now())
		r.record(a, 0, errors.New("x"), 0, time.Now())
	}
	r.record(a, 0, nil, 0, time.Now())
	if got := <-r.Updates(); !got.Healthy {
		t.Fatalf("got %+v, want the newest (healthy)", got)
	}
	select {
	case got := <-r.Updates():
		t.Fatalf("second value %+v, want none", got)
	default:
	}
	// An unchanged aggregate is not sent again.
	r.record(a, 0, nil, 0, time.Now())
	select {
	case got := <-r.Updates():
		t.Fatalf("unchanged aggregate sent again: %+v", got)
	default:
	}
}

func TestNoChecks(t *testing.T) {
	r, err := NewRunner(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Healthy: true, Reason: "no checks configured"}
	if got := r.Current(); got != want {
		t.Fatalf("Current = %+v, want %+v", got, want)
	}
	if got := <-r.Updates(); got != want {
		t.Fatalf("Updates = %+v, want %+v", got, want)
	}
	r.ForceFail("x")
	if got := r.Current(); got != want {
		t.Fatalf("after ForceFail: %+v, want %+v", got, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx) // returns at once
}

// waitFor reads updates until one satisfies ok, failing after the deadline.
func waitFor(t *testing.T, r *Runner, what string, ok func(Result) bool) Result {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case res := <-r.Updates():
			if ok(res) {
				return res
			}
		case <-timer.C:
			t.Fatalf("no update %s within %s; current %+v", what, wait, r.Current())
		}
	}
}

func healthy(r Result) bool   { return r.Healthy }
func unhealthy(r Result) bool { return !r.Healthy }

// runRunner runs r until the test ends and checks that Run returns.
func runRunner(t *testing.T, r *Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Error("Run did not return after its context ended")
		}
	})
}

// Real checks against real servers, with rise/fall on short intervals.
func TestRunnerRealChecks(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const iv = 10 * time.Millisecond
	checks := []Options{
		{Name: "web", HTTP: &HTTP{URL: srv.URL, ExpectStatus: 200}, Interval: iv, Timeout: time.Second, Rise: 3, Fall: 2},
		{Name: "port", TCP: &TCP{Address: ln.Addr().String()}, Interval: iv, Timeout: time.Second, Rise: 1, Fall: 1},
		{Name: "script", Exec: &Exec{Command: []string{"/bin/true"}}, Interval: iv, Timeout: time.Second, Rise: 1, Fall: 1},
	}
	r, err := NewRunner(checks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, r, "initial", func(Result) bool { return true }); got.Healthy || !strings.Contains(got.Reason, "not checked yet") {
		t.Fatalf("initial %+v, want unhealthy, not checked yet", got)
	}
	runRunner(t, r)

	waitFor(t, r, "healthy", healthy)
	if st := r.Checks()[0]; st.TotalPasses < 3 || !st.Healthy {
		t.Fatalf("healthy before web passed 3 times: %+v", st)
	}

	status.Store(http.StatusServiceUnavailable)
	res := waitFor(t, r, "unhealthy", unhealthy)
	if want := "web: http " + srv.URL + ": status 503, want 200"; res.Reason != want {
		t.Fatalf("reason %q, want %q", res.Reason, want)
	}
	if st := r.Checks()[0]; st.TotalFailures < 2 {
		t.Fatalf("unhealthy before web failed twice: %+v", st)
	}

	status.Store(http.StatusOK)
	res = waitFor(t, r, "healthy again", healthy)
	if res.Reason != "all 3 checks pass" {
		t.Fatalf("reason %q", res.Reason)
	}

	// The failure itself is checked step by step in TestForceFail; here, with
	// 10ms probes, only the recovery can be observed reliably.
	passes := r.Checks()[0].TotalPasses
	r.ForceFail("service exited")
	waitFor(t, r, "healthy after ForceFail", healthy)
	if st := r.Checks()[0]; st.TotalPasses < passes+3 {
		t.Fatalf("healthy again after %d passes, want 3: %+v", st.TotalPasses-passes, st)
	}
}

// The first probe runs when Run starts, not one interval later.
func TestRunnerFirstRoundImmediate(t *testing.T) {
	r, err := NewRunner([]Options{
		{Name: "t", Exec: &Exec{Command: []string{"/bin/true"}}, Interval: time.Hour, Timeout: 5 * time.Second, Rise: 1, Fall: 1},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runRunner(t, r)
	waitFor(t, r, "healthy", healthy)
}

// A probe that hangs is cut at its timeout and counts as a failure.
func TestRunnerTimeout(t *testing.T) {
	r, err := NewRunner([]Options{
		{Name: "slow", Exec: &Exec{Command: []string{"sh", "-c", "sleep 5"}}, Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 1, Fall: 1},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runRunner(t, r)
	deadline := time.Now().Add(wait)
	for r.Checks()[0].TotalFailures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failure recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := r.Checks()[0]; !strings.Contains(st.LastError, "timed out after 20ms") {
		t.Fatalf("last error %q", st.LastError)
	}
}

func TestNewRunnerRejectsZeroInterval(t *testing.T) {
	_, err := NewRunner([]Options{{Name: "x", TCP: &TCP{Address: "127.0.0.1:1"}}}, nil, nil)
	if err == nil {
		t.Fatal("accepted a zero interval")
	}
}

// Run leaves no goroutine behind once its context ends.
func TestRunnerNoLeak(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	before := runtime.NumGoroutine()
	const iv = 10 * time.Millisecond
	r, err := NewRunner([]Options{
		{Name: "web", HTTP: &HTTP{URL: srv.URL}, Interval: iv, Timeout: time.Second},
		{Name: "port", TCP: &TCP{Address: strings.TrimPrefix(srv.URL, "http://")}, Interval: iv, Timeout: time.Second},
		{Name: "slow", Exec: &Exec{Command: []string{"sh", "-c", "sleep 0.02"}}, Interval: iv, Timeout: time.Second},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, r, "healthy", healthy)
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before Run:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
