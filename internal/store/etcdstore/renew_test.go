package etcdstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/store/storetest"
)

// Renewals share one kept stream: concurrent ones all get their answer on
// it; one that times out (the connection hangs) fails without a session
// loss, a renewal waiting behind it ends at its own deadline, and the next,
// once the store is reachable again, succeeds on a new stream; a revoked
// lease is reported as lost.
func TestRenewStream(t *testing.T) {
	t.Parallel()
	srv := storetest.StartEtcd(t)
	p := pair(t, srv.Addr)
	s := p.B.(*Store) // through the forwarder
	ctx := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return c
	}
	if _, err := s.NewSession(ctx(10*time.Second), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 4 {
		wg.Go(func() {
			for range 10 {
				ttl, err := s.Renew(ctx(10 * time.Second))
				if err == nil && ttl < 4*time.Second {
					err = errors.New("granted " + ttl.String())
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent renewal: %v", err)
	}
	kept := s.keepAlive.stream
	if _, err := s.Renew(ctx(10 * time.Second)); err != nil || kept == nil || s.keepAlive.stream != kept {
		t.Fatalf("renewal did not reuse the kept stream (err %v)", err)
	}

	p.Cut()
	hung := make(chan error, 1)
	go func() { _, err := s.Renew(ctx(3 * time.Second)); hung <- err }()
	for len(s.keepAlive.turn) == 0 {
		time.Sleep(time.Millisecond) // until the hung renewal holds the stream
	}
	start := time.Now()
	_, err := s.Renew(ctx(300 * time.Millisecond))
	if err == nil || errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renewal waiting behind a hung one: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("renewal waiting behind a hung one took %s, past its own 300 ms deadline", d)
	}
	if err := <-hung; err == nil || errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renewal through a hung connection: %v, want a timeout", err)
	}
	if s.keepAlive.stream != nil {
		t.Fatal("the stream of a timed-out renewal was kept")
	}
	p.Heal()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.Renew(ctx(2 * time.Second))
		if err == nil {
			break
		}
		if errors.Is(err, ha.ErrSessionLost) || time.Now().After(deadline) {
			t.Fatalf("renewal after the connection came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := s.cli.Revoke(ctx(10*time.Second), s.currentLease()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Renew(ctx(10 * time.Second)); !errors.Is(err, ha.ErrSessionLost) {
		t.Fatalf("renewal of a revoked lease: %v, want ErrSessionLost", err)
	}
}
