package sim

import (
	"errors"
	"time"
)

// The woken stale lessor's acknowledgements after the wake (the post-wake
// guard of package lease; docs/stores.md): the active's process freezes
// with the embedded etcd member in it, which led raft, for longer than an
// election timeout, so the other members elect a new leader, and wakes
// before its own fence deadline, cut off from the others (the freeze and
// the cut need not be related: a VM stalled while its network was down,
// or a partition a moment later). Woken, its member still leads in its
// own view until check-quorum makes it step down (within an election
// timeout), and etcd 3.7's LeaseRenew skips the leadership check while
// raft ticked lately, which a woken member does at once: its lessor
// acknowledges the renewals the agent sends meanwhile, as long as the
// lease has not expired in its view, renewing nothing in the cluster.
// The cluster's lease runs out; its revoker records the expiry, so a
// standby takes over at once (no lock-delay). A renewal the agent sends
// confirmed (lease.Pauses, after it saw its pause) is refused: the
// linearizable read after the keep-alive cannot be served in the stale
// term (etcdstore.RenewConfirmed).

// errStaleTerm is a confirmed renewal that the woken stale lessor
// answered: the read after it did not come back in the same raft term.
var errStaleTerm = errors.New("sim: renewal answered in a stale raft term (not counted)")

// errStaleExpired: the lease expired in the stale lessor's view too; etcd
// holds the renewal until the member steps down (ErrNotPrimary).
var errStaleExpired = errors.New("sim: lease expired in the woken member's stale view: not primary")

// staleWake freezes n, the holder, for longer than an election timeout
// and less than the time to its fence deadline, and cuts it off from the
// store from the freeze until a while after the lease its stale lessor
// could give has run out; false when there is no room before its fence.
func (n *node) staleWake() bool {
	t := n.timing()
	if !n.alive || n.frozen || !n.st.Holding() {
		return false
	}
	room := n.st.ValidUntil.Add(-t.FenceMargin).Sub(n.now()) - time.Millisecond // n's clock
	if room <= t.EtcdElection {
		return false // it would wake past its fence: staleAcks' case
	}
	d := time.Duration(float64(n.w.dur(t.EtcdElection, room)) / n.rate)
	view, _ := n.client.Session()
	wake := n.w.now().Add(d)
	stale := n.w.dur(time.Millisecond, t.EtcdElection) // until check-quorum steps it down
	n.tracef("frozen for %s with the etcd member it embeds, which led raft (%s at epoch %d); it wakes cut off, its stale lessor answering for %s", d, n.st.Role, n.st.Epoch, stale)
	n.w.res.StaleWakes++
	n.freeze(d)
	n.partReq, n.partResp = true, true
	n.staleUntil, n.staleView = wake.Add(stale), view
	n.w.at(wake.Add(stale+t.LeaseTTL+n.w.dur(0, 2*time.Second)), nil, func() {
		n.partReq, n.partResp = n.removed, false
		n.tracef("let back after the stale wake")
		n.watchChanged()
	})
	return true
}

// staleRenewal is a renewal answered in process by the woken member's
// stale lessor: granted (ttl) unless confirmed or expired in its view.
func (n *node) staleRenewal(confirm bool, ttl *time.Duration, done func(error)) {
	var err error
	switch {
	case confirm:
		err = errStaleTerm
		n.w.res.StaleWakeRefused++
	case !n.w.now().Before(n.staleView):
		err = errStaleExpired
	default:
		*ttl = n.timing().LeaseTTL
		n.w.res.StaleWakeAcks++
		n.tracef("its woken etcd member's stale lessor acknowledged a renewal (%s at epoch %d)", n.st.Role, n.st.Epoch)
	}
	n.w.after(n.latency(), n, func() { done(err) })
}
