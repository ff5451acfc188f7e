package sessions

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// TestRoleChangedInsteadOfPolling: with RoleChanged, the replication loop
// looks at the role when told it changed (and at the backstop), not every
// 20 ms: an idle node asks Role a few times a second at most, and still
// takes writes after a promotion and refuses them after a demotion.
func TestRoleChangedInsteadOfPolling(t *testing.T) {
	b := newMemBackend()
	var (
		active atomic.Bool
		asked  atomic.Int64
		mu     sync.Mutex
		ch     = make(chan struct{})
	)
	changed := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return ch
	}
	signal := func() {
		mu.Lock()
		defer mu.Unlock()
		close(ch)
		ch = make(chan struct{})
	}
	srv := New(Options{Node: "a", Backend: b, RoleChanged: changed, Role: func() (ha.Epoch, bool) {
		asked.Add(1)
		return 7, active.Load()
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ctx, ln) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	// Idle as a standby: the backstop alone (every 200 ms).
	time.Sleep(100 * time.Millisecond) // let the loop load and settle
	before := asked.Load()
	const idle = time.Second
	time.Sleep(idle)
	if n := asked.Load() - before; n > 2*int64(idle/roleBackstop)+2 {
		t.Fatalf("Role asked %d times in %s of idle standby; want about %d (every %s), not every %s", n, idle, idle/roleBackstop, roleBackstop, rolePoll)
	}

	c := dial(t, ln.Addr().String())
	b.mu.Lock()
	b.leader = ha.Leader{Node: "a", Epoch: 7}
	b.mu.Unlock()
	active.Store(true)
	signal()
	eventually(t, "writes after the promotion", func() bool { return c.do("SET", "k", "v") == "+OK\r\n" })

	// Idle as the active.
	before = asked.Load()
	time.Sleep(idle)
	if n := asked.Load() - before; n > 2*int64(idle/roleBackstop)+2 {
		t.Fatalf("Role asked %d times in %s of idle active; want about %d", n, idle, idle/roleBackstop)
	}

	active.Store(false)
	signal()
	eventually(t, "read-only after the demotion", func() bool {
		srv.db.mu.Lock()
		defer srv.db.mu.Unlock()
		return !srv.db.writable
	})
}
