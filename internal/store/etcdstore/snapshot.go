package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// Snapshot writes a snapshot of the whole etcd keyspace (etcd's own
// backup format, as `etcdctl snapshot save` makes) to w and returns its
// size and the revision, the greatest epoch issued, at the time.
//
// etcd snapshots the backend of the member that answers as it stands, and
// a follower may not have applied the latest writes yet. So, as etcdctl
// does, Snapshot asks one member, the raft leader, over a connection of its
// own, and first reads linearizably through that same connection: the read
// waits until the member has applied every write committed before it
// began, so the snapshot holds every write acknowledged before the call.
func (s *Store) Snapshot(ctx context.Context, w io.Writer) (int64, ha.Epoch, error) {
	ep, err := s.leaderEndpoint(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd snapshot: %w", err)
	}
	conn, err := s.cli.Dial(ep)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd snapshot: connect to %s: %w", ep, err)
	}
	defer conn.Close()
	resp, err := clientv3.NewKVFromKVClient(pb.NewKVClient(conn), s.cli).Get(ctx, s.leaderKey())
	if err != nil {
		return 0, 0, fmt.Errorf("etcd snapshot: read the etcd revision on %s: %w", ep, err)
	}
	rc, err := clientv3.NewMaintenanceFromMaintenanceClient(pb.NewMaintenanceClient(conn), s.cli).Snapshot(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd snapshot of %s: %w", ep, err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, 0, fmt.Errorf("etcd snapshot of %s: %w", ep, err)
	}
	return n, ha.Epoch(resp.Header.Revision), nil
}

// leaderEndpoint is the endpoint of the member that is the raft leader,
// as the first member that answers says it is.
func (s *Store) leaderEndpoint(ctx context.Context) (string, error) {
	var errs []error
	for _, ep := range s.cli.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a frozen member must not hold the others up
		st, err := s.members.status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader == 0 {
			errs = append(errs, fmt.Errorf("etcd member %s knows no leader", ep))
			continue
		}
		if st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("no member says it leads the etcd cluster (wait for the store to elect one and try again): %w", errors.Join(errs...))
}

// RevokeAllLeases revokes every lease in the store, and with them every
// agent's session and the keys bound to them (the leader key, the node
// records). Only for a store no agent uses: haven recover calls it on a
// member restarted alone, so that the lost agents' sessions do not linger
// until their TTLs run out.
func (s *Store) RevokeAllLeases(ctx context.Context) (int, error) {
	resp, err := s.cli.Leases(ctx)
	if err != nil {
		return 0, fmt.Errorf("list leases: %w", err)
	}
	for _, l := range resp.Leases {
		if _, err := s.cli.Revoke(ctx, l.ID); err != nil {
			return 0, fmt.Errorf("revoke lease %x: %w", l.ID, err)
		}
	}
	return len(resp.Leases), nil
}
