package etcdstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lease"
	"github.com/haven-ha/haven/internal/store/storetest"
)

var _ lease.ConfirmedRenewer = (*Store)(nil)

// RenewConfirmed renews on a healthy cluster, and refuses a renewal when
// the raft term changed between the keep-alive's answer and the read after
// it (as when a woken stale leader answered the keep-alive and then learnt
// of the new leader): not counted, yet not a lost session.
func TestRenewConfirmed(t *testing.T) {
	t.Parallel()
	members, clients, _ := startThree(t, "confirm3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Dial(storetest.Cluster(t), []string{clients["m1"]}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.NewSession(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl, err := s.RenewConfirmed(ctx); err != nil || ttl != 2*time.Second {
		t.Fatalf("RenewConfirmed on a healthy cluster: %v, %v; want 2s, nil", ttl, err)
	}

	m1 := members["m1"]
	moved := false
	s.renewedHook = func() {
		term := m1.etcd.Server.Term()
		for _, m := range members {
			if m.IsLeader() {
				var others []string
				for n, o := range members {
					if o != m {
						others = append(others, n)
					}
				}
				if err := m.MoveLeaderAway(ctx, others); err != nil {
					t.Logf("move leadership: %v", err)
					return
				}
				break
			}
		}
		// m1 has applied an entry of the new term.
		for deadline := time.Now().Add(10 * time.Second); m1.etcd.Server.Term() == term; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Logf("m1 did not apply an entry of a new term")
				return
			}
		}
		moved = true
	}
	for try := 0; !moved; try++ {
		if try == 5 {
			t.Fatal("five tries: leadership never moved")
		}
		_, err = s.RenewConfirmed(ctx)
	}
	s.renewedHook = nil
	if !errors.Is(err, ha.ErrUnconfirmed) || errors.Is(err, ha.ErrSessionLost) || !strings.Contains(err.Error(), "term") {
		t.Fatalf("RenewConfirmed with a new raft term between the keep-alive and the read: %v; want a refusal that names the terms (ha.ErrUnconfirmed), not a lost session", err)
	}
	t.Logf("refused: %v", err)
	if _, err := s.RenewConfirmed(ctx); err != nil {
		t.Fatalf("RenewConfirmed after the move: %v", err)
	}
}
