package memstore

import (
	"context"

	"github.com/haven-ha/haven/internal/ha"
)

// The tenure record (package lockdelay), kept as etcdstore keeps it: a
// campaign writes {epoch, node, unsettled}, Resign writes "resigned",
// Revoke (haven's revoke-at-expiry) writes "expired" before it drops the
// lease, SettleTenure clears "unsettled" while the node holds the key; a
// key that goes with its lease on the lessor's tick, or by RevokeStale,
// leaves the record as it was. Snapshots carry it.
//
// Client's own methods keep other names than the interfaces, so that a
// plain Client (and Early, which embeds one) does not turn the agent's
// lock-delay on: Tenured does.

type wonTenure struct {
	epoch ha.Epoch
	prev  ha.Tenure
}

// SettleTenure clears Unsettled in node's tenure record at epoch while node
// holds the key at epoch (ha.TenureSettler's Settle).
func (c *Client) SettleTenure(ctx context.Context, node string, epoch ha.Epoch) error {
	return c.call(ctx, func(s *Server, _ uint64) error {
		if s.leader != (ha.Leader{Node: node, Epoch: epoch}) {
			return ha.ErrNotLeader
		}
		s.tenure = ha.Tenure{Epoch: epoch, Node: node}
		s.changedLocked()
		return nil
	})
}

// WonTenure is the record that this client's campaign that won epoch
// replaced (ha.PreviousTenurer's PreviousTenure).
func (c *Client) WonTenure(epoch ha.Epoch) (ha.Tenure, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch == 0 || c.won.epoch != epoch {
		return ha.Tenure{}, false
	}
	return c.won.prev, true
}

// RevokeStale drops session sess whether or not it has expired, without a
// tenure record: a raft leader that was frozen and woke with its lessor
// still primary revokes a lease its stale view saw expire, though the
// holder kept renewing through the new leader (etcd issues 12528 and
// 15247; see package lockdelay). A session already gone is no error.
func (s *Server) RevokeStale(sess uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropSessionLocked(sess)
	s.armLocked()
}

// LastSession is the id of the latest session granted: a session with an
// id up to it existed by then (ids only grow).
func (s *Server) LastSession() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSess
}

// Tenure is the store's tenure record now.
func (s *Server) Tenure() ha.Tenure {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenure
}

// Tenured is a client of a store that can end sessions early, as etcd can
// (ha.EarlyRevoker: the agent's lock-delay is on), with the tenure record
// kept as etcd keeps it (ha.TenureSettler, ha.PreviousTenurer).
type Tenured struct{ *Client }

// EarlyRevocation implements ha.EarlyRevoker.
func (Tenured) EarlyRevocation() bool { return true }

// Settle implements ha.TenureSettler.
func (t Tenured) Settle(ctx context.Context, node string, epoch ha.Epoch) error {
	return t.SettleTenure(ctx, node, epoch)
}

// PreviousTenure implements ha.PreviousTenurer.
func (t Tenured) PreviousTenure(epoch ha.Epoch) (ha.Tenure, bool) { return t.WonTenure(epoch) }

var (
	_ ha.EarlyRevoker    = Tenured{}
	_ ha.TenureSettler   = Tenured{}
	_ ha.PreviousTenurer = Tenured{}
)
