package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// RenewConfirmed is Renew, counted only once a linearizable read issued
// after the keep-alive's answer comes back in the raft term the keep-alive
// was answered in (lease.ConfirmedRenewer; the renewer uses it after this
// process was paused).
//
// A member that led raft, was frozen and woke answers keep-alives from its
// stale lessor until it learns the new term (etcd 3.7.3's LeaseRenew skips
// its leadership check while raft ticked lately, which a woken member does
// at once). Such an answer carries the old term. The read cannot be served
// in that term: the stale leader cannot confirm it with a quorum, and once
// it has stepped down the read goes through the new leader and returns only
// after the member applied an entry of the new term, so its header carries
// a later term. The same term on both means no other leader was elected in
// between: the renewal reached the current primary lessor.
//
// A renewal the keep-alive granted but the read did not confirm (another
// term, or the read failed) is refused with ha.ErrUnconfirmed; a failed
// keep-alive with its own error, as Renew's.
func (s *Store) RenewConfirmed(ctx context.Context) (time.Duration, error) {
	id := s.currentLease()
	if id == 0 {
		return 0, ha.ErrSessionLost
	}
	resp, err := s.cli.KeepAliveOnce(ctx, id)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, ha.ErrSessionLost
		}
		return 0, fmt.Errorf("renew lease: %w", err)
	}
	if resp.TTL <= 0 {
		return 0, ha.ErrSessionLost
	}
	if s.renewedHook != nil {
		s.renewedHook()
	}
	// Linearizable (the default), and as small as a read can be.
	r, err := s.cli.Get(ctx, s.leaderKey(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("renew lease: the linearizable read that confirms the renewal failed: %w (%w)", err, ha.ErrUnconfirmed)
	}
	if kt, rt := resp.GetRaftTerm(), r.Header.GetRaftTerm(); kt != rt {
		return 0, fmt.Errorf("renew lease: answered in raft term %d, a linearizable read after it in term %d: a member that no longer led may have answered (%w)", kt, rt, ha.ErrUnconfirmed)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}
