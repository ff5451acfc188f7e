package etcdstore

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"time"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage/mvcc"

	"github.com/haven-ha/haven/internal/ha"
)

// Revoke at expiry (#19).
//
// etcd's primary lessor (the one on the raft leader) revokes expired leases
// on a 500 ms tick, so a dead active's leader key outlives its lease by 0 to
// 500 ms. An embedded member that leads raft has that lessor in this
// process, and with it the exact expiry of the leader key's lease — the
// value etcd's own tick compares with. RevokeAtExpiry applies etcd's own
// rule without the tick's delay: when this member leads raft, its lessor is
// primary, and that lessor says the lease has expired (Remaining() <= 0), it
// proposes the lease's revocation through raft, as etcd's tick does.
//
// Only the current primary's expiry counts. A follower's lessor holds every
// lease "forever" (Demoted), and a member that becomes leader extends every
// lease when its lessor is promoted (by an election timeout, etcd's Promote),
// so renewals made through an earlier leader and that extension are both in
// the expiry it reads. An expired lease on the primary can no longer be
// renewed (its Renew waits for the revocation), so a renewal cannot race the
// revocation. Before proposing, the member confirms with a quorum that it
// still leads (a linearizable read), as etcd itself does when its ticks run
// late; the hazard etcd accepts for its own tick (leadership moving between
// that check and the proposal) is the same here and no larger.
//
// Safety does not depend on the standby's clock, nor on this one's beyond
// what etcd already trusts: the active fences itself at the send time of its
// last acknowledged renewal plus the TTL minus fence_margin on its own
// clock, and the primary started that TTL when it received the renewal,
// which is later.

// lessorOf returns the member's lessor. etcd 3.7 has no accessor for it (the
// server keeps it in an unexported field), so it is read once with reflect;
// the field is set when the server is built and never replaced. nil if a
// future etcd moves it: TestRevokeAtExpiry then fails, and without it the
// member leaves expiry to etcd's own tick, as before.
func lessorOf(s *etcdserver.EtcdServer) lease.Lessor {
	v := reflect.ValueOf(s).Elem().FieldByName("lessor")
	if !v.IsValid() || v.Type() != reflect.TypeFor[lease.Lessor]() {
		return nil
	}
	l, _ := reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem().Interface().(lease.Lessor)
	return l
}

// RevokeAtExpiry revokes the lease of key (LeaderKey(cluster)) the moment
// this member's primary lessor says it has expired, until ctx ends (see
// above). It looks when raft's leader changes, when the key changes, and at
// the lease's expiry; a member that does not lead raft only waits. It
// returns at once on a member without a lessor (a nil Member, or an etcd
// whose lessor could not be found). revoked, if not nil, hears of each
// revocation and how long after the expiry raft committed it.
func (m *Member) RevokeAtExpiry(ctx context.Context, key string, log *slog.Logger, revoked func(after time.Duration)) {
	if m == nil || m.lessor == nil {
		if m != nil {
			log.Warn("this etcd has no lessor haven can read; expired leases are revoked on etcd's 500 ms tick")
		}
		return
	}
	s := m.etcd.Server
	select {
	case <-s.ReadyNotify():
	case <-ctx.Done():
		return
	}
	ws := s.KV().NewWatchStream()
	defer ws.Close()
	if _, err := ws.Watch(ctx, mvcc.WatchID(clientv3.AutoWatchID), []byte(key), nil, 0); err != nil {
		log.Warn("revoke at expiry: cannot watch the leader key; expired leases are revoked on etcd's 500 ms tick", "err", err)
		return
	}
	for {
		leaderC := s.LeaderChangedNotify() // before looking: a change during the look is not missed
		var timer <-chan time.Time
		var t *time.Timer
		if d := m.revokeExpired(ctx, key, log, revoked); d > 0 {
			t = time.NewTimer(d)
			timer = t.C
		}
		closed := false
		select {
		case <-ctx.Done():
			closed = true
		case <-s.StopNotify():
			closed = true
		case <-leaderC:
		case _, ok := <-ws.Chan():
			closed = !ok
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if closed {
			return
		}
	}
}

// notPrimaryYet is how soon to look again when this member leads raft but
// its lessor is not primary yet (etcd promotes it once the member has
// applied its first entry of the new term), or after a failed revocation.
const notPrimaryYet = 20 * time.Millisecond

// revokeExpired revokes key's lease if this member is the primary lessor
// and the lease has expired. It returns when to look again (0: only on a
// change of leader or key).
func (m *Member) revokeExpired(ctx context.Context, key string, log *slog.Logger, revoked func(time.Duration)) time.Duration {
	s, les := m.etcd.Server, m.lessor
	expired := func() (*lease.Lease, time.Duration) {
		if s.Leader() != s.MemberID() {
			return nil, 0 // a follower: the leader's lessor decides
		}
		id := les.GetLease(lease.LeaseItem{Key: key})
		if id == lease.NoLease {
			return nil, 0 // no leader key (or one without a lease): wait for a change
		}
		l := les.Lookup(id)
		if l == nil {
			return nil, 0 // being revoked: the key's deletion follows
		}
		if l.Demoted() {
			return nil, notPrimaryYet
		}
		return l, l.Remaining()
	}
	// The term before the judgment: the judgment counts only if this
	// member still leads, in that term, once a quorum has confirmed it
	// (below). A member that woke from a freeze still believing it leads
	// (etcd issues 12528, 15247) judges by a lessor that is no longer the
	// primary; by the time its read completes it follows, and s.Term()
	// may already show the new term.
	term := s.Term()
	l, rem := expired()
	if l == nil || rem > 0 {
		return rem
	}
	if m.judged != nil {
		m.judged() // tests: what may happen between the judgment and the rest
	}
	// Where the time after the expiry goes, for the log: how late this
	// look came, then each of the three quorum round trips below.
	late, t0 := -rem, time.Now()
	rctx, cancel := context.WithTimeout(ctx, s.Cfg.ReqTimeout())
	defer cancel()
	// The key and the tenure record as the judgment found them (local
	// reads): etcd's own tick may revoke the lease from now on, and the
	// expiry is recorded for this key even if it does (recordExpiry).
	h, err := m.heldKey(rctx, key, int64(l.ID))
	switch {
	case err != nil:
		log.Debug("revoke at expiry: reading the leader key", "err", err)
		return notPrimaryYet
	case h.kv == nil:
		return 0 // the key went or changed meanwhile: look again on the change
	}
	// Expired on this primary. Confirm with a quorum that this member still
	// leads, then look again: only then propose.
	if err := s.LinearizableReadNotify(rctx); err != nil {
		log.Debug("revoke at expiry: leadership not confirmed", "err", err)
		return notPrimaryYet
	}
	l2, rem := expired()
	switch {
	case l2 != nil && l2.ID == l.ID && rem <= 0:
		// Still expired and still the key's lease.
	case l2 == nil && s.Leader() == s.MemberID() && s.Term() == term:
		// Revoked meanwhile, by etcd's own tick: the judgment, confirmed
		// in the same term by this member still leading, stands; record it
		// (the revocation finds the lease gone). A member that no longer
		// leads (l2 is nil for it too) must not: its judgment may be a
		// stale lessor's, and its record and revocation, forwarded to the
		// real leader, would end a live holder's lease and tell the next
		// winner it need not wait.
	default:
		return max(rem, 0)
	}
	t1 := time.Now()
	// Record first that the primary lessor judged the lease expired
	// (lockdelay): a standby that sees this before it campaigns may serve
	// at once.
	if ok, err := m.recordExpiry(rctx, key, h); err != nil || !ok {
		if err != nil {
			log.Debug("revoke at expiry: recording the expiry", "err", err)
			return notPrimaryYet
		}
		// The key changed and a campaign (or a resign) came since: a
		// standby that saw it go without this record waits the lock delay.
		log.Info("revoke at expiry: a campaign or resign came before the expiry was recorded", "lease", int64(l.ID),
			"looked", late.Round(time.Millisecond), "confirm", t1.Sub(t0).Round(time.Millisecond), "record", time.Since(t1).Round(time.Millisecond))
		return 0 // look again on the change
	}
	t2 := time.Now()
	_, err = s.LeaseRevoke(rctx, &pb.LeaseRevokeRequest{ID: int64(l.ID)})
	switch {
	case err == nil:
		after := -l.Remaining() // the expiry is kept after the revocation
		log.Info("revoked the leader key's lease at its expiry", "lease", int64(l.ID), "after_expiry", after.Round(time.Millisecond),
			"looked", late.Round(time.Millisecond), "confirm", t1.Sub(t0).Round(time.Millisecond),
			"record", t2.Sub(t1).Round(time.Millisecond), "revoke", time.Since(t2).Round(time.Millisecond))
		if revoked != nil {
			revoked(after)
		}
		return 0
	case errors.Is(err, lease.ErrLeaseNotFound):
		log.Info("revoke at expiry: etcd's own tick revoked the lease first (the expiry was recorded)", "lease", int64(l.ID))
		return 0
	default:
		log.Debug("revoke at expiry", "err", err)
		return notPrimaryYet
	}
}

// held is the leader key bound to an expired lease and the tenure record,
// as the revoker's judgment found them.
type held struct {
	kv        *mvccpb.KeyValue // nil: the key is gone or bound to another lease
	tenure    ha.Tenure        // the record to write: key's holder, expired
	tenureMod int64            // the tenure record's ModRevision (0: none)
}

// heldKey reads key (if still bound to lease id) and the tenure record,
// locally, and returns the record of expiry to write.
func (m *Member) heldKey(ctx context.Context, key string, id int64) (held, error) {
	s := m.etcd.Server
	r, err := s.Range(ctx, &pb.RangeRequest{Key: []byte(key), Serializable: true})
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].Lease != id {
		return held{}, err
	}
	kv := r.Kvs[0]
	h := held{kv: kv, tenure: ha.Tenure{Epoch: ha.Epoch(kv.CreateRevision), Node: string(kv.Value), Ended: ha.TenureExpired}}
	// An unsettled tenure stays so: its holder's predecessor may still act.
	h.tenure.Unsettled = true
	tr, err := s.Range(ctx, &pb.RangeRequest{Key: []byte(tenureKeyOf(key)), Serializable: true})
	if err != nil {
		return held{}, err
	}
	if len(tr.Kvs) == 1 {
		h.tenureMod = tr.Kvs[0].ModRevision
		if old := parseTenure(tr.Kvs[0].Value, tr.Kvs[0].ModRevision, false); old.Epoch == h.tenure.Epoch {
			h.tenure.Unsettled = old.Unsettled
		}
	}
	return h, nil
}

// tenureKeyOf is the tenure record's key beside leader key key.
func tenureKeyOf(key string) string { return strings.TrimSuffix(key, "leader") + "tenure" }

// recordExpiry writes h's tenure record "expired" if the key is still
// bound to the judged lease, or else if the key is gone and no campaign or
// resign has written the tenure record since the judgment (etcd's own tick
// revoked the lease in between: the judgment, by the confirmed primary,
// stands, and a standby that campaigns after this commits reads it); it
// reports whether it wrote it.
func (m *Member) recordExpiry(ctx context.Context, key string, h held) (bool, error) {
	s := m.etcd.Server
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(tenureKeyOf(key)), Value: []byte(tenureValue(h.tenure))}}}
	t, err := s.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{
			{Key: []byte(key), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: h.kv.Lease}},
			{Key: []byte(key), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: h.kv.CreateRevision}},
		},
		Success: []*pb.RequestOp{put},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Compare: []*pb.Compare{
				{Key: []byte(key), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}},
				{Key: []byte(tenureKeyOf(key)), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: h.tenureMod}},
			},
			Success: []*pb.RequestOp{put},
		}}}},
	})
	if err != nil {
		return false, err
	}
	if t.Succeeded {
		return true, nil
	}
	if len(t.Responses) == 1 {
		if nt := t.Responses[0].GetResponseTxn(); nt != nil {
			return nt.Succeeded, nil
		}
	}
	return false, nil
}
