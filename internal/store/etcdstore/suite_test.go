package etcdstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// pair dials two stores on the etcd at addr, B through a forwarder.
func pair(t *testing.T, addr string) storetest.Pair {
	cluster := storetest.Cluster(t)
	fw := storetest.Forward(t, addr)
	dial := func(ep string) *Store {
		s, err := Dial(cluster, []string{ep}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := dial(addr), dial(fw.Addr)
	// etcd revokes expired leases on a 500ms tick.
	return storetest.Pair{A: a, B: b, Cut: fw.Cut, Heal: fw.Heal, Expiry: time.Second, WatchDelay: 500 * time.Millisecond}
}

func TestEmbeddedEtcd(t *testing.T) {
	peer, client := storetest.FreePort(t), storetest.FreePort(t)
	m, err := StartMember(MemberConfig{
		Name:      "m1",
		DataDir:   filepath.Join(t.TempDir(), "etcd"),
		Peer:      fmt.Sprintf("127.0.0.1:%d", peer),
		Client:    fmt.Sprintf("127.0.0.1:%d", client),
		Cluster:   map[string]string{"m1": fmt.Sprintf("127.0.0.1:%d", peer)},
		Token:     "suite",
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
	storetest.Run(t, func(t *testing.T) storetest.Pair { return pair(t, fmt.Sprintf("127.0.0.1:%d", client)) })
}

func TestExternalEtcd(t *testing.T) {
	srv := storetest.StartEtcd(t)
	storetest.Run(t, func(t *testing.T) storetest.Pair { return pair(t, srv.Addr) })
	t.Run("RaiseEpoch", func(t *testing.T) {
		p := pair(t, srv.Addr)
		s := p.A.(*Store)
		cur, err := s.MaxEpoch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RaiseEpoch(context.Background(), cur+50); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewSession(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		if e, err := s.Campaign(context.Background(), "a"); err != nil || e <= cur+50 {
			t.Fatalf("campaign after raise: %d, %v; want > %d", e, err, cur+50)
		}
	})
}
