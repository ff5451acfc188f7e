package etcdstore

import (
	"context"
	"fmt"
	"io"

	"github.com/haven-ha/haven/internal/ha"
)

// Snapshot writes a snapshot of the whole etcd keyspace (etcd's own
// backup format, as `etcdctl snapshot save` makes) to w and returns its
// size and the revision, the greatest epoch issued, at the time.
func (s *Store) Snapshot(ctx context.Context, w io.Writer) (int64, ha.Epoch, error) {
	rev, err := s.MaxEpoch(ctx)
	if err != nil {
		return 0, 0, err
	}
	rc, err := s.cli.Snapshot(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, 0, fmt.Errorf("etcd snapshot: %w", err)
	}
	return n, rev, nil
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
