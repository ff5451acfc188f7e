package etcdstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/lease"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// lockedBuffer is a log sink the revoker and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startOneMember starts a one-member embedded etcd (it leads raft and its
// lessor is primary) and returns it with its client address.
func startOneMember(t *testing.T) (*Member, string) {
	t.Helper()
	peer, client := storetest.FreePort(t), storetest.FreePort(t)
	m, err := StartMember(MemberConfig{
		Name:      "m1",
		DataDir:   filepath.Join(t.TempDir(), "etcd"),
		Peer:      fmt.Sprintf("127.0.0.1:%d", peer),
		Client:    fmt.Sprintf("127.0.0.1:%d", client),
		Cluster:   map[string]string{"m1": fmt.Sprintf("127.0.0.1:%d", peer)},
		Token:     "revoke",
		Heartbeat: 50 * time.Millisecond,
		Election:  500 * time.Millisecond,
		LogFile:   filepath.Join(t.TempDir(), "etcd.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("127.0.0.1:%d", client)
}

// TestRevokeAtExpiry (#19): with the embedded member leading raft, the
// leader key disappears within tens of milliseconds of its lease's expiry
// as the primary lessor tells it, and by the revoker (etcd's own 500 ms tick
// would take 0 to 500 ms); a lease that is renewed is never revoked.
func TestRevokeAtExpiry(t *testing.T) {
	t.Parallel()
	m, addr := startOneMember(t)
	if m.lessor == nil {
		t.Fatal("the embedded member's lessor was not found: etcd moved it (lessorOf); revoke at expiry is off")
	}
	cluster := storetest.Cluster(t)
	var logs lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go m.RevokeAtExpiry(ctx, LeaderKey(cluster), slog.New(slog.NewTextHandler(&logs, nil)))

	s, err := Dial(cluster, []string{addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := s.Client()
	const ttl = 2 * time.Second

	// One round: a session, the leader key on it, renewals every 100 ms for
	// renewFor (the key must stay), then none: the key must go within
	// tens of milliseconds of the lessor's expiry. A loaded machine may
	// stall a renewal past the TTL, letting the lease expire for real:
	// then the round is run again.
	round := func(renewFor time.Duration) (lag time.Duration, ok bool) {
		if _, err := s.NewSession(ctx, ttl); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Campaign(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		id := lease.LeaseID(s.currentLease())
		wch := cli.Watch(ctx, LeaderKey(cluster))
		lastSent := time.Now()
		for end := time.Now().Add(renewFor); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			sent := time.Now()
			if _, err := s.Renew(ctx); err != nil {
				if sent.Sub(lastSent) < ttl-200*time.Millisecond {
					t.Fatalf("a lease renewed %v ago (TTL %v) was revoked: %v\n%s", sent.Sub(lastSent), ttl, err, logs.String())
				}
				return 0, false // a stall let it expire for real
			}
			lastSent = sent
		}
		l := m.lessor.Lookup(id)
		if l == nil {
			t.Fatal("the lease is gone from the lessor although renewed")
		}
		expiry := time.Now().Add(l.Remaining())
		for {
			select {
			case wr := <-wch:
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete {
						return time.Since(expiry), true
					}
				}
			case <-ctx.Done():
				t.Fatalf("the leader key was not deleted\n%s", logs.String())
			}
		}
	}
	var lags []time.Duration
	for try := 0; len(lags) < 3 && try < 8; try++ {
		if lag, ok := round(3 * time.Second / 2); ok {
			lags = append(lags, lag)
		}
	}
	if len(lags) < 3 {
		t.Fatalf("only %d of 8 rounds kept their lease alive while renewing; machine too loaded?", len(lags))
	}
	// The revoker logs once its proposal has been answered, which may be
	// after the watch told of the deletion.
	revoked := func() int { return strings.Count(logs.String(), "revoked the leader key's lease at its expiry") }
	for deadline := time.Now().Add(10 * time.Second); revoked() < len(lags) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := revoked(); n < len(lags) {
		t.Fatalf("%d revocations by the revoker for %d expired leases (etcd's tick did the rest)\n%s", n, len(lags), logs.String())
	}
	for _, lag := range lags {
		// etcd's tick alone: 0-500 ms. The revoker: a timer and one raft
		// round trip; 150 ms leaves room for a loaded machine.
		if lag > 150*time.Millisecond {
			t.Errorf("leader key deleted %v after its lease expired, want within 150 ms", lag)
		}
	}
	t.Logf("leader key deleted after its lease's expiry: %v", lags)
}
