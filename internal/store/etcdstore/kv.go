package etcdstore

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// Fenced data: the service's shared state lives under data/<key>, and every
// read or write of it is one transaction that also checks the leader key.
// The write commits only if the leader key still has the writer's epoch as
// its CreateRevision and the writer's name as its value, so a node that lost
// the role — frozen past its lease, cut off, or simply demoted — cannot
// change the data even if it still believes it is active. A write may carry
// an idempotency id (kept under data-ids/<id>): a retried write whose first
// attempt committed is answered as committed and applied only once.

func (s *Store) dataKey(k string) string { return s.prefix + "data/" + k }
func (s *Store) idKey(id string) string  { return s.prefix + "data-ids/" + id }

func (s *Store) fence(node string, epoch ha.Epoch) []clientv3.Cmp {
	k := s.leaderKey()
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(k), "=", int64(epoch)),
		clientv3.Compare(clientv3.Value(k), "=", node),
	}
}

// FencedPut writes value at key if node holds the active role at epoch. It
// returns the revision at which the value was committed, and whether this
// was a repeat of a write (same id) that had committed already. A write
// refused by the fence returns ha.ErrNotLeader and changed nothing; any
// other error leaves the outcome unknown.
func (s *Store) FencedPut(ctx context.Context, node string, epoch ha.Epoch, key, value, id string) (rev int64, repeat bool, err error) {
	cmps := s.fence(node, epoch)
	ops := []clientv3.Op{clientv3.OpPut(s.dataKey(key), value)}
	var orElse []clientv3.Op
	if id != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.idKey(id)), "=", 0))
		ops = append(ops, clientv3.OpPut(s.idKey(id), key))
		orElse = append(orElse, clientv3.OpGet(s.idKey(id)))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("fenced write of %s at epoch %d: %w", key, epoch, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, false, nil
	}
	if id != "" && len(resp.Responses) > 0 {
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			return kvs[0].CreateRevision, true, nil
		}
	}
	return 0, false, ha.ErrNotLeader
}

// FencedGet reads key if node holds the active role at epoch: a
// linearizable read that a deposed node cannot make.
func (s *Store) FencedGet(ctx context.Context, node string, epoch ha.Epoch, key string) (value string, found bool, rev int64, err error) {
	resp, err := s.cli.Txn(ctx).If(s.fence(node, epoch)...).Then(clientv3.OpGet(s.dataKey(key))).Commit()
	if err != nil {
		return "", false, 0, fmt.Errorf("fenced read of %s at epoch %d: %w", key, epoch, err)
	}
	if !resp.Succeeded {
		return "", false, 0, ha.ErrNotLeader
	}
	rev = resp.Header.Revision
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		return string(kvs[0].Value), true, rev, nil
	}
	return "", false, rev, nil
}

// isData reports whether key holds the service's data (not watched).
func (s *Store) isData(key string) bool {
	return strings.HasPrefix(key, s.prefix+"data/") || strings.HasPrefix(key, s.prefix+"data-ids/")
}
