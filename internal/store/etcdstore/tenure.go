package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/haven-ha/haven/internal/ha"
)

// The tenure record (package lockdelay): /haven/<cluster>/tenure names the
// holder of the latest epoch won (written by Campaign in the leader key's
// transaction, so the record's ModRevision is the epoch) and, once that key
// is gone, how it ended: Resign writes "resigned" in the
// transaction that deletes the key; haven's revoker (revoke.go) writes
// "expired" before it revokes the lease. A key that goes without either (a
// lease revoked by etcd's own tick, possibly by a frozen and woken raft
// leader's stale lessor) leaves the record as the campaign wrote it, and
// the next winner waits out the lock-delay.

// EarlyRevocation reports that etcd can end a live session before the
// renewer's bound (etcd issues 12528 and 15247): see package lockdelay.
func (s *Store) EarlyRevocation() bool { return true }

// TenureKey is the tenure record's key in cluster.
func TenureKey(cluster string) string { return keyPrefix(cluster) + "tenure" }

func tenureValue(t ha.Tenure) string {
	b, _ := json.Marshal(t)
	return string(b)
}

// parseTenure reads the record; a campaign's record carries no epoch (it
// is not known until the transaction commits): it is the write's revision,
// which for a record written by Campaign is rev.
func parseTenure(val []byte, rev int64, deleted bool) ha.Tenure {
	var t ha.Tenure
	if deleted || json.Unmarshal(val, &t) != nil {
		return ha.Tenure{}
	}
	if t.Epoch == 0 {
		t.Epoch = ha.Epoch(rev)
	}
	return t
}

// revOf is the revision apply reads for kv: the CreateRevision (a leader
// key's epoch), or for the tenure record the revision of its last write.
func (s *Store) revOf(kv *mvccpb.KeyValue) int64 {
	if string(kv.Key) == s.tenureKey() {
		return kv.ModRevision
	}
	return kv.CreateRevision
}

// Settle clears Unsettled in node's tenure record at epoch while node holds
// the key at epoch (ha.TenureSettler).
func (s *Store) Settle(ctx context.Context, node string, epoch ha.Epoch) error {
	k := s.leaderKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", int64(epoch)),
			clientv3.Compare(clientv3.Value(k), "=", node)).
		Then(clientv3.OpPut(s.tenureKey(), tenureValue(ha.Tenure{Epoch: epoch, Node: node}))).
		Commit()
	if err != nil {
		return fmt.Errorf("settle the tenure at epoch %d: %w", epoch, err)
	}
	if !resp.Succeeded {
		return ha.ErrNotLeader
	}
	return nil
}

var (
	_ ha.EarlyRevoker  = (*Store)(nil)
	_ ha.TenureSettler = (*Store)(nil)

	_ ha.PreviousTenurer = (*Store)(nil)
)
