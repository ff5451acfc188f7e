package etcdstore

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/haven-ha/haven/internal/store/storetest"
)

// TestTimeToLiveIsNoExpiry pins down why standbys do not revoke the
// leader's lease as soon as it expires (#19): etcd's LeaseTimeToLive answers
// the remaining TTL truncated to whole seconds (int64(Remaining().Seconds())
// in etcdserver's leaseTimeToLive), so a lease that was renewed a moment ago,
// and that its holder rightly believes valid for almost a second more, reads
// TTL 0. Revoking on that answer would end a live lease early: two actives.
// If a future etcd answers finer, this test fails and the idea can return.
func TestTimeToLiveIsNoExpiry(t *testing.T) {
	srv := storetest.StartEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + srv.Addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A loaded machine may take a second between two calls, letting the
	// lease expire for real: grant again and retry then.
	for try := 0; try < 10; try++ {
		g, err := cli.Grant(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		ka, err := cli.KeepAliveOnce(ctx, g.ID)
		if err != nil || ka.TTL != 1 {
			continue
		}
		ttl, err := cli.TimeToLive(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ttl.TTL != 0 {
			t.Fatalf("a 1s lease renewed just now reads TTL %d, want 0 (truncated); etcd now answers finer than whole seconds: revoke-at-expiry (#19) may be possible", ttl.TTL)
		}
		// Still live: etcd renews it, which it never does for an expired lease.
		if ka, err := cli.KeepAliveOnce(ctx, g.ID); err != nil || ka.TTL != 1 {
			continue
		}
		return
	}
	t.Fatal("ten tries never renewed, read and renewed a 1s lease within its second; machine too loaded?")
}
