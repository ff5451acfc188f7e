package sim

import (
	"time"
)

// The store's expiry, as etcd does it: the lessor drops expired leases on
// a 500 ms tick (memstore.SetExpiryTick), so a dead active's key outlives
// its lease by up to half a second; and on embedded etcd, the member that
// leads raft revokes the leader key's lease the moment its lessor says it
// has expired (etcdstore.RevokeAtExpiry). memstore refuses a revocation
// before the expiry: a revoker that acted on a stale expiry would take a
// live active's key, which the simulation reports.

// etcdTick is etcd's lessor tick.
const etcdTick = 500 * time.Millisecond

// revoker is RevokeAtExpiry on the member that leads etcd: it looks when
// the leader key changes and at the lease's expiry, and proposes the
// revocation once the lessor says the lease has expired.
type revoker struct {
	w       *world
	pending bool // a look at the expiry is scheduled
	revoked int
}

// keyChanged: the leader key may have a new lease; look at its expiry.
func (r *revoker) keyChanged() {
	if r == nil || r.pending {
		return
	}
	if _, exp, ok := r.w.store.LeaderLease(); ok {
		r.at(exp)
	}
}

// at looks again just after exp (the proposal's trip through raft).
func (r *revoker) at(exp time.Time) {
	r.pending = true
	lat := time.Duration(1+r.w.rng.IntN(5)) * time.Millisecond
	r.w.at(exp.Add(lat), nil, r.expiry)
}

// expiry is the revoker at the lease's expiry as it last read it: the
// lessor is asked again (a renewal may have moved the expiry), and only an
// expired lease is revoked.
func (r *revoker) expiry() {
	r.pending = false
	sess, exp, ok := r.w.store.LeaderLease()
	if !ok {
		return
	}
	if r.w.now().Before(exp) {
		r.at(exp) // renewed meanwhile
		return
	}
	if err := r.w.store.Revoke(sess); err != nil {
		r.w.failf("revoke at expiry: %v", err)
		return
	}
	r.revoked++
	r.w.tracef("etcd: the leader key's lease revoked at its expiry (+%s)", r.w.now().Sub(exp))
}
