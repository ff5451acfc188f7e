package etcdstore

import (
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/lease"
	"go.uber.org/zap"

	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/store/storetest"
	"github.com/haven-ha/haven/internal/syncbuf"
)

// TestRevokerStopsWhenNoLongerLeading (review of b3e1f91): the revoker on
// m1 judged the leader key's lease expired on m1's lessor, and before it
// confirmed, raft leadership moved away (as it does under a member that
// woke from a freeze still believing it led: etcd issues 12528, 15247)
// and the holder renewed the lease through the new leader: the holder is
// within its bound. m1, now a follower, must neither record the tenure
// "expired" (the next winner would skip the lock-delay) nor revoke the
// lease (its proposal, forwarded, would end a live lease).
func TestRevokerStopsWhenNoLongerLeading(t *testing.T) {
	t.Parallel()
	members, clients, ctx := startThree(t, "stale3")
	names := []string{"m1", "m2", "m3"}
	m1 := members["m1"]
	if m1.lessor == nil {
		t.Fatal("no lessor found (lessorOf)")
	}
	cluster := storetest.Cluster(t)
	key := LeaderKey(cluster)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Dial(cluster, []string{clients["m1"]}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leaderOf := func() string {
		for _, n := range names {
			if members[n].IsLeader() {
				return n
			}
		}
		return ""
	}
	const ttl = 2 * time.Second
	for try := 0; ; try++ {
		if try == 6 {
			t.Fatal("six tries: etcd's own tick always revoked the lease before the move; machine too loaded?")
		}
		// m1 leads raft.
		for deadline := time.Now().Add(20 * time.Second); leaderOf() != "m1"; time.Sleep(20 * time.Millisecond) {
			if l := leaderOf(); l != "" {
				_ = members[l].MoveLeaderAway(ctx, []string{"m1"})
			}
			if time.Now().After(deadline) {
				t.Fatal("m1 never led raft")
			}
		}
		if _, err := s.NewSession(ctx, ttl); err != nil {
			t.Fatal(err)
		}
		epoch, err := s.Campaign(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		// A settled tenure, as a long-running active's is: a record of its
		// expiry lets the next winner act at once (lockdelay.Decide).
		if err := s.Settle(ctx, "a", epoch); err != nil {
			t.Fatal(err)
		}
		id := lease.LeaseID(s.currentLease())
		// No more renewals: wait until m1's (primary) lessor says expired.
		l := m1.lessor.Lookup(id)
		if l == nil || l.Demoted() {
			continue
		}
		time.Sleep(l.Remaining() - 20*time.Millisecond)

		var (
			fired, renewed bool
			newLeader      string
			renewedAt      time.Time
		)
		m1.judged = func() {
			fired = true
			term := m1.etcd.Server.Term()
			if err := m1.MoveLeaderAway(ctx, []string{"m2", "m3"}); err != nil {
				t.Logf("move leadership: %v", err)
				return
			}
			// m1 follows, and has applied the new leader's first entry.
			for deadline := time.Now().Add(5 * time.Second); m1.IsLeader() || m1.etcd.Server.Term() == term; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Logf("m1 did not apply an entry of a new term")
					return
				}
			}
			newLeader = leaderOf()
			if newLeader == "" {
				return
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clients[newLeader]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			// The holder renews through the new leader, whose lessor
			// extended every lease when promoted: a real renewal, its
			// bound renewedAt + TTL.
			renewedAt = time.Now()
			if _, err := cli.KeepAliveOnce(ctx, clientv3.LeaseID(id)); err == nil {
				renewed = true
			}
		}
		for deadline := time.Now().Add(3 * time.Second); !fired && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			m1.revokeExpired(ctx, key, log, nil)
		}
		m1.judged = nil
		if !fired || !renewed {
			t.Logf("try %d: judged %v, renewed via the new leader %v (etcd's tick first?); again", try, fired, renewed)
			continue
		}
		// The holder is within its bound (renewedAt + TTL): its key must
		// still be there, and no record may say its tenure expired.
		r, err := s.Client().Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := s.Client().Get(ctx, TenureKey(cluster))
		if err != nil {
			t.Fatal(err)
		}
		var rec ha.Tenure
		if len(tr.Kvs) == 1 {
			rec = parseTenure(tr.Kvs[0].Value, tr.Kvs[0].ModRevision, false)
		}
		if time.Since(renewedAt) >= ttl {
			t.Logf("try %d: too slow to tell (the renewal's bound passed); again", try)
			continue
		}
		if len(r.Kvs) != 1 || r.Kvs[0].Lease != int64(id) {
			t.Errorf("the holder renewed through the new leader %s %v ago (TTL %v), yet its key is gone: m1, no longer leading, revoked a live lease\n%s",
				newLeader, time.Since(renewedAt).Round(time.Millisecond), ttl, logs.String())
		}
		v := lockdelay.Vacancy{Epoch: epoch, Tenure: rec, Since: time.Now()}
		o := lockdelay.Options{Enabled: true, LeaseTTL: ttl, FenceMargin: 500 * time.Millisecond}
		if d := lockdelay.Decide(o, "b", v, time.Now()); rec.Epoch == epoch && rec.Ended == ha.TenureExpired {
			t.Errorf("tenure record %+v says the live holder's tenure expired: the next winner waits %v (%s)\n%s", rec, d.Wait, d.Reason, logs.String())
		}
		return
	}
}
