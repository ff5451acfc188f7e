package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Members lists the etcd cluster's members, each probed for health.
func (s *Store) Members(ctx context.Context) ([]ha.Member, error) {
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	var out []ha.Member
	for _, m := range resp.Members {
		mem := ha.Member{Name: m.Name, ID: m.ID, Started: m.Name != ""}
		if len(m.PeerURLs) > 0 {
			mem.Peer = strings.TrimPrefix(strings.TrimPrefix(m.PeerURLs[0], "http://"), "https://")
		}
		if len(m.ClientURLs) > 0 {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := s.cli.Status(sctx, m.ClientURLs[0])
			cancel()
			if err == nil {
				mem.Healthy = true
				mem.Leader = st.Leader == m.ID
			}
		}
		out = append(out, mem)
	}
	return out, nil
}

// AddMember adds a voting member that will join from peer.
func (s *Store) AddMember(ctx context.Context, name, peer string) error {
	if _, err := s.cli.MemberAdd(ctx, []string{s.scheme + peer}); err != nil {
		return fmt.Errorf("add etcd member %s: %w", name, err)
	}
	return nil
}

// RemoveMember removes a voting member.
func (s *Store) RemoveMember(ctx context.Context, id uint64) error {
	if _, err := s.cli.MemberRemove(ctx, id); err != nil {
		return fmt.Errorf("remove etcd member %x: %w", id, err)
	}
	return nil
}

var _ ha.Membership = (*Store)(nil)
