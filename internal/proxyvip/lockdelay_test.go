package proxyvip

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// events collects an elector's history.
type events struct {
	mu  sync.Mutex
	all []ha.Event
}

func (e *events) record(ev ha.Event) { e.mu.Lock(); e.all = append(e.all, ev); e.mu.Unlock() }

func (e *events) find(kind string) (ha.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if ev.Kind == kind {
			return ev, true
		}
	}
	return ha.Event{}, false
}

// TestLockDelay: a node that wins the VIP's key after it went without a
// record (the previous holder n9's lease revoked by a frozen etcd leader,
// say) adds the address only lease_ttl after it saw the key vacant, and
// says so (LockDelay, a lock-delay event); after a recorded resign, or with
// the lock-delay off, it adds it at once.
func TestLockDelay(t *testing.T) {
	t.Parallel()
	gone := ha.Tenure{Epoch: 5, Node: "n9"}
	for _, tc := range []struct {
		name   string
		tenure ha.Tenure
		off    bool
		waits  bool
	}{
		{"key gone without a record", gone, false, true},
		{"previous holder resigned", ha.Tenure{Epoch: 5, Node: "n9", Ended: ha.TenureResigned}, false, false},
		{"lock_delay off", gone, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hist events
			l := newLab(t, 1, func(m *member) {
				m.dial = func(context.Context) (ha.Coordinator, error) {
					return memstore.Early{Client: m.client, Tenure: tc.tenure}, nil
				}
				m.noLockDelay = tc.off
				m.record = hist.record
			})
			m := l.members[0]
			start := time.Now()
			sawWait := false
			deadline := start.Add(20 * time.Second)
			for !m.e.Held() {
				if time.Now().After(deadline) {
					t.Fatalf("no address within 20 s (role %s)", m.e.State().Role)
				}
				if ld := m.e.LockDelay(); ld != nil && !ld.Until.IsZero() && strings.Contains(ld.Reason, "n9") {
					sawWait = true
				}
				time.Sleep(5 * time.Millisecond)
			}
			took := time.Since(start)
			ttl := 2 * time.Second // the lab's lease
			ld := m.e.LockDelay()
			if !tc.waits {
				if ld != nil {
					t.Fatalf("waited on the lock-delay: %+v (took %s)", ld, took)
				}
				return
			}
			if took < ttl*3/4 {
				t.Fatalf("address added %s after the start, want about lease_ttl = %s after the key was seen vacant", took, ttl)
			}
			if !sawWait {
				t.Fatal("the wait in progress was not shown (LockDelay with Until)")
			}
			// At most a lease (the wait counts from the vacancy, before the
			// win), plus a loaded machine's late timer.
			if ld == nil || ld.Waited < ttl/2 || ld.Waited > ttl+time.Second || !strings.Contains(ld.Reason, "n9") {
				t.Fatalf("LockDelay = %+v, want a wait of up to %s naming n9", ld, ttl)
			}
			if ev, ok := hist.find("lock-delay"); !ok || !strings.Contains(ev.Reason, "virtual IP") {
				t.Fatalf("no lock-delay event for the virtual IP (%+v)", ev)
			}
		})
	}
}

// TestStopDuringLockDelay: a node that stops while it waits on the
// lock-delay never adds the address, stops without waiting the delay out,
// and does not resign (a resign would let the next winner add the VIP at
// once while the previous holder may still hold it).
func TestStopDuringLockDelay(t *testing.T) {
	t.Parallel()
	var resigns atomic.Int32
	l := newLab(t, 1, func(m *member) {
		m.dial = func(context.Context) (ha.Coordinator, error) {
			return resignCounter{Early: memstore.Early{Client: m.client, Tenure: ha.Tenure{Epoch: 5, Node: "n9"}}, n: &resigns}, nil
		}
	})
	m := l.members[0]
	deadline := time.Now().Add(20 * time.Second)
	for ld := m.e.LockDelay(); ld == nil || ld.Until.IsZero(); ld = m.e.LockDelay() {
		if time.Now().After(deadline) {
			t.Fatalf("no lock-delay wait within 20 s (role %s)", m.e.State().Role)
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the elector did not stop")
	}
	if n := m.addr.tries.Load(); n != 0 {
		t.Fatalf("%d adds of the address during the lock-delay", n)
	}
	if n := resigns.Load(); n != 0 {
		t.Fatalf("%d resigns within the lock-delay", n)
	}
}

// resignCounter counts the resigns that reach the store.
type resignCounter struct {
	memstore.Early
	n *atomic.Int32
}

func (s resignCounter) Resign(ctx context.Context, node string, epoch ha.Epoch) error {
	s.n.Add(1)
	return s.Early.Resign(ctx, node, epoch)
}
