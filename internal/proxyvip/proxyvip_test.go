package proxyvip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/check"
	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// segment is one L2 network as the electors' addresses see it: who holds
// the address and until when (its kernel lifetime), and every moment at
// which a second node added it while another still held it.
type segment struct {
	mu      sync.Mutex
	held    map[string]time.Time // node -> lifetime's end (zero: none)
	adds    map[string]int
	overlap []string
}

func newSegment() *segment {
	return &segment{held: map[string]time.Time{}, adds: map[string]int{}}
}

func (s *segment) holdsLocked(node string, now time.Time) bool {
	end, ok := s.held[node]
	return ok && (end.IsZero() || now.Before(end))
}

// holders lists the nodes that hold the address now.
func (s *segment) holders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []string
	for n := range s.held {
		if s.holdsLocked(n, now) {
			out = append(out, n)
		}
	}
	return out
}

func (s *segment) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.overlap...)
}

// addr is one node's view of the segment: a fake vip.VIP whose lifetime
// runs out by itself, as the kernel's does.
type addr struct {
	s      *segment
	node   string
	frozen atomic.Bool // as a frozen process: no request reaches the kernel
	fail   atomic.Bool // every add fails (a missing capability, say)
	tries  atomic.Int32
}

func (a *addr) Add(validFor time.Duration) (bool, error) {
	a.tries.Add(1)
	if a.frozen.Load() {
		return false, errors.New("frozen")
	}
	if a.fail.Load() {
		return false, errors.New("operation not permitted")
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	now := time.Now()
	for n := range a.s.held {
		if n != a.node && a.s.holdsLocked(n, now) {
			a.s.overlap = append(a.s.overlap, fmt.Sprintf("%s added the address at %s while %s held it", a.node, now.Format("15:04:05.000"), n))
		}
	}
	was := a.s.holdsLocked(a.node, now)
	var end time.Time
	if validFor > 0 {
		end = now.Add(validFor)
	}
	a.s.held[a.node] = end
	a.s.adds[a.node]++
	return !was, nil
}

func (a *addr) Refresh(validFor time.Duration) error {
	if a.frozen.Load() {
		return nil
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	now := time.Now()
	if !a.s.holdsLocked(a.node, now) {
		return errors.New("not held")
	}
	a.s.held[a.node] = now.Add(validFor)
	return nil
}

func (a *addr) Remove() (bool, error) {
	if a.frozen.Load() {
		return false, nil
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	was := a.s.holdsLocked(a.node, time.Now())
	delete(a.s.held, a.node)
	return was, nil
}

func (a *addr) Close() {}

// lifetime is vip.Lifetime's rule for IPv4 (whole seconds less a quarter
// second of slack); the test's lease leaves room for one second.
func lifetime(left time.Duration) time.Duration {
	if left -= 250 * time.Millisecond; left < time.Second {
		return 0
	}
	return left.Truncate(time.Second)
}

type member struct {
	name   string
	client *memstore.Client
	addr   *addr
	health chan check.Result
	e      *Elector
	sick   bool        // starts with an unhealthy proxy
	down   atomic.Bool // its VIP interface has no carrier
	// Set by a setup function: the store it dials (default: client), the
	// lock-delay off, where its events go.
	dial        func(context.Context) (ha.Coordinator, error)
	noLockDelay bool
	record      func(ha.Event)
	cancel      context.CancelFunc
	done        chan struct{}
}

type lab struct {
	t       *testing.T
	store   *memstore.Server
	seg     *segment
	members []*member
}

func newLab(t *testing.T, n int, setup ...func(*member)) *lab {
	l := &lab{t: t, store: memstore.New(clock.Real{}), seg: newSegment()}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		m := &member{name: name, client: l.store.Client(), addr: &addr{s: l.seg, node: name}, health: make(chan check.Result, 1)}
		for _, f := range setup {
			f(m)
		}
		l.members = append(l.members, m)
		l.start(m)
	}
	t.Cleanup(func() {
		for _, m := range l.members {
			m.cancel()
			<-m.done
		}
		if v := l.seg.violations(); len(v) > 0 {
			t.Errorf("two holders at once: %v", v)
		}
	})
	return l
}

func (l *lab) start(m *member) {
	dial := m.dial
	if dial == nil {
		dial = func(context.Context) (ha.Coordinator, error) { return m.client, nil }
	}
	e, err := New(Options{
		Node:        m.name,
		Dial:        dial,
		NoLockDelay: m.noLockDelay,
		Record:      m.record,
		Address:     m.addr,
		Describe:    "10.0.0.100/24 on eth0",
		Lifetime:    lifetime,
		Health:      m.health,
		LinkUp: func() (bool, string, error) {
			if m.down.Load() {
				return false, "interface eth0 has no carrier (down)", nil
			}
			return true, "", nil
		},
		// A loaded 2-core machine: margins as the CI timings have them.
		LeaseTTL:       2 * time.Second,
		RenewInterval:  100 * time.Millisecond,
		RenewTimeout:   400 * time.Millisecond,
		FenceMargin:    500 * time.Millisecond,
		PromoteBackoff: 500 * time.Millisecond,
		Clock:          clock.Real{},
	})
	if err != nil {
		l.t.Fatal(err)
	}
	m.setHealth(!m.sick)
	ctx, cancel := context.WithCancel(context.Background())
	m.e, m.cancel, m.done = e, cancel, make(chan struct{})
	go func() { defer close(m.done); _ = e.Run(ctx) }()
}

func (m *member) setHealth(ok bool) {
	select {
	case <-m.health:
	default:
	}
	m.health <- check.Result{Healthy: ok, Reason: map[bool]string{true: "proxy answers", false: "proxy refused the connection"}[ok]}
}

// holder waits until exactly one member (not in exclude) holds the address,
// and its elector says so, for 200 ms in a row.
func (l *lab) holder(d time.Duration, exclude ...*member) *member {
	l.t.Helper()
	deadline := time.Now().Add(d)
	var seen *member
	var since time.Time
	for time.Now().Before(deadline) {
		h := l.seg.holders()
		var got *member
		if len(h) == 1 {
			for _, m := range l.members {
				if m.name == h[0] && m.e.Held() {
					got = m
				}
			}
			for _, x := range exclude {
				if got == x {
					got = nil
				}
			}
		}
		switch {
		case got == nil:
			seen = nil
		case got != seen:
			seen, since = got, time.Now()
		case time.Since(since) >= 200*time.Millisecond:
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.t.Fatalf("no single holder of the address within %s (holders now %v)", d, l.seg.holders())
	return nil
}

// TestOneHolderFollowsHealthyProxy: three nodes elect one holder; when its
// proxy fails the address moves to another node; when the holder is cut
// off from the store it removes the address before the store lets another
// node win; a holder that stops hands over at once. At no moment do two
// nodes hold the address.
func TestOneHolderFollowsHealthyProxy(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3)
	a := l.holder(10 * time.Second)

	// The holder's proxy fails: it demotes, removes the address, resigns.
	fault := time.Now()
	a.setHealth(false)
	b := l.holder(10*time.Second, a)
	t.Logf("proxy failure: the address moved from %s to %s in %s", a.name, b.name, time.Since(fault).Round(time.Millisecond))
	if a.e.Held() {
		t.Fatalf("%s still says it holds the address", a.name)
	}
	a.setHealth(true)

	// The holder's link loses its carrier: same as a proxy failure.
	fault = time.Now()
	b.down.Store(true)
	c0 := l.holder(10*time.Second, b)
	t.Logf("link down: the address moved from %s to %s in %s", b.name, c0.name, time.Since(fault).Round(time.Millisecond))
	if st := b.e.State(); st.Healthy || !strings.Contains(st.HealthReason, "no carrier") {
		t.Fatalf("%s with its link down: healthy %v (%s)", b.name, st.Healthy, st.HealthReason)
	}
	b.down.Store(false)
	b = c0

	// The holder is cut off from the store: it fences itself (removes the
	// address) before its session can expire and another node win.
	fault = time.Now()
	b.client.SetFault(memstore.Fault{Partitioned: true})
	c := l.holder(15*time.Second, b)
	t.Logf("holder cut off from the store: the address moved from %s to %s in %s", b.name, c.name, time.Since(fault).Round(time.Millisecond))
	b.client.SetFault(memstore.Fault{})

	// The holder stops: it hands the key back at once, well within a lease.
	fault = time.Now()
	c.cancel()
	<-c.done
	d := l.holder(10*time.Second, c)
	if took := time.Since(fault); took > 1900*time.Millisecond {
		t.Logf("a stopping holder handed over in %s (more than a lease: the resign was lost?)", took)
	}
	t.Logf("holder stopped: the address moved from %s to %s in %s", c.name, d.name, time.Since(fault).Round(time.Millisecond))
	l.start(c)
	if got := l.holder(5 * time.Second); got != d {
		t.Fatalf("the restarted node %s took the address from %s (no preemption wanted)", c.name, got.name)
	}
}

// TestFrozenHolderExpires: a holder whose process stops running (emulated:
// cut off from the store and never again touching the address) loses the
// address by its lifetime before another node adds it.
func TestFrozenHolderExpires(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	a := l.holder(10 * time.Second)
	// Freeze: the elector's address no longer reaches the segment, as a
	// frozen process makes no netlink requests; the copy it has keeps the
	// lifetime it was given.
	a.addr.frozen.Store(true)
	a.client.SetFault(memstore.Fault{Partitioned: true})
	fault := time.Now()
	b := l.holder(15*time.Second, a)
	t.Logf("frozen holder: %s took the address %s after the freeze", b.name, time.Since(fault).Round(time.Millisecond))
	a.client.SetFault(memstore.Fault{}) // let it stop promptly
}

// frozenAddr swallows every request, as a frozen process sends none.
type frozenAddr struct{}

func (frozenAddr) Add(time.Duration) (bool, error) { return false, errors.New("frozen") }
func (frozenAddr) Refresh(time.Duration) error     { return nil }
func (frozenAddr) Remove() (bool, error)           { return false, nil }
func (frozenAddr) Close()                          {}

// TestCannotAddGivesTheKeyBack: a winner that cannot add the address
// (here every add fails on n1 and n2) hands the key back and backs off,
// so that a node that can add it gets it; it never sits on the key
// without the address.
func TestCannotAddGivesTheKeyBack(t *testing.T) {
	t.Parallel()
	l := newLab(t, 3, func(m *member) {
		switch m.name {
		case "n1", "n2":
			m.addr.fail.Store(true)
		case "n3":
			m.sick = true // not a candidate until n1 or n2 has won and failed
		}
	})
	n1, n2, n3 := l.members[0], l.members[1], l.members[2]
	deadline := time.Now().Add(10 * time.Second)
	for n1.addr.tries.Load() == 0 && n2.addr.tries.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("neither n1 nor n2 won and tried to add the address within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n3.setHealth(true)
	if got, _ := l.holder(10*time.Second), 0; got != n3 {
		t.Fatalf("%s holds the address, want n3", got.name)
	}
	t.Logf("adds tried: n1 %d, n2 %d, n3 %d", n1.addr.tries.Load(), n2.addr.tries.Load(), n3.addr.tries.Load())
}

// TestNewRejects: options that cannot work are refused with what is wrong.
func TestNewRejects(t *testing.T) {
	ok := Options{Node: "n1", Dial: func(context.Context) (ha.Coordinator, error) { return nil, nil }, Address: frozenAddr{},
		Health: make(chan check.Result), LeaseTTL: time.Second, RenewInterval: 100 * time.Millisecond, RenewTimeout: 300 * time.Millisecond, FenceMargin: 300 * time.Millisecond}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Options){
		"no node":           func(o *Options) { o.Node = "" },
		"no dial":           func(o *Options) { o.Dial = nil },
		"no health":         func(o *Options) { o.Health = nil },
		"margin over lease": func(o *Options) { o.FenceMargin = 2 * time.Second },
		"no renew interval": func(o *Options) { o.RenewInterval = 0 },
	} {
		o := ok
		change(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
