package sim

import (
	"time"

	"github.com/haven-ha/haven/internal/clock"
	"github.com/haven-ha/haven/internal/ha"
	"github.com/haven-ha/haven/internal/lockdelay"
	"github.com/haven-ha/haven/internal/machine"
	"github.com/haven-ha/haven/internal/store/memstore"
)

// The lock-delay (package lockdelay, internal/agent/lockdelay.go), with
// the real Tracker and Decide: the watch notes each vacancy of the leader
// key; a win decides how long its promotion waits (at once on a record
// that the previous tenure ended, "resigned" or "expired", else lease_ttl
// from when the key was seen vacant); the promotion waits that long on the
// worker, then settles the tenure; a resign waits until the lock-delay of
// its epoch is over. And the fault that makes it necessary: a stale
// lessor (a frozen etcd leader that wakes with its lessor still primary)
// revokes the active's live lease with no tenure record, and acknowledges
// renewals it held, after the holder's fence deadline.

// nodeClock is the node's own clock, for the Tracker (which reads Now only).
type nodeClock struct {
	clock.Clock
	n *node
}

func (c nodeClock) Now() time.Time { return c.n.now() }

func (n *node) lockDelayOptions() lockdelay.Options {
	t := n.timing()
	return lockdelay.Options{Enabled: !n.w.o.NoLockDelay, LeaseTTL: t.LeaseTTL, FenceMargin: t.FenceMargin}
}

// noteVacancy is the watcher's a.ld.NoteVacancy, before the machine hears
// of the snapshot.
func (n *node) noteVacancy(s ha.Snapshot) {
	n.vacant = n.ld.NoteVacancy(s, n.vacant, n.held)
	if !s.Leader.None() {
		n.held = s.Leader.Epoch
	}
}

// decideLockDelay is agent.decideLockDelay: right after a win, on the
// vacancy seen before it or the record the winning campaign replaced.
func (n *node) decideLockDelay(epoch ha.Epoch) lockdelay.Pending {
	p := n.ld.Decide(n.lockDelayOptions(), n.name, memstore.Tenured{Client: n.client}, epoch)
	if p.Decision.Wait > 0 {
		n.tracef("lock delay for epoch %d: %s (%s)", epoch, p.Decision.Wait, p.Decision.Reason)
	}
	return p
}

// lockDelayWait is how long the promotion at epoch waits (agent.lockDelay).
func (n *node) lockDelayWait(epoch ha.Epoch) time.Duration {
	p, ok := n.ld.Pending(epoch)
	if !ok {
		p = n.decideLockDelay(epoch) // a reclaimed key: decide now
	}
	return max(p.Decision.Until.Sub(n.now()), 0)
}

// settleTenure: the lock-delay is over; not waited on.
func (n *node) settleTenure(epoch ha.Epoch) {
	n.call("settle tenure", callTimeout(n.timing()), func(c *memstore.Client) error { return c.SettleTenure(bg, n.name, epoch) }, func(error) {})
}

// resignAfterLockDelay is agent.resignAfterLockDelay: then runs once the
// lock-delay of epoch is over.
func (n *node) resignAfterLockDelay(epoch ha.Epoch, then func()) {
	if wait := n.ld.ResignWait(epoch, n.now()); wait > 0 {
		n.tracef("resign of epoch %d waits %s for the lock delay", epoch, wait)
		n.afterLocal(wait, then)
		return
	}
	then()
}

// staleRevoke is the stale lessor's revocation of the leader key's lease,
// live or not, without a tenure record.
func (w *world) staleRevoke() {
	sess, exp, ok := w.store.LeaderLease()
	if !ok {
		return
	}
	l := w.store.Leader()
	w.store.RevokeStale(sess)
	w.staleRevoked[l.Epoch] = true
	w.res.StaleRevoked++
	w.tracef("etcd: a woken stale leader's lessor revoked %s's lease at epoch %d, %s before its expiry, with no tenure record", l.Node, l.Epoch, exp.Sub(w.now()))
}

// staleAcks: n's connection is to an etcd member that froze for d, at
// least a lease (requests go nowhere), while another member took over as
// leader; on waking, its lessor, primary in its stale view, acknowledges
// the renewals it held, extending nothing in the store. Every such answer
// comes after n's fence deadline (its last acknowledged renewal was sent
// before the freeze): machine rule TestLateRenewalDoesNotReviveAHolder.
// Not in active-active: there a fenced node is no holder, and such an
// answer puts it back in rotation with its session gone (docs/simulation.md).
func (n *node) staleAcks(d time.Duration) {
	n.tracef("its etcd member froze for %s (requests held, renewals acknowledged on waking)", d)
	n.partReq = true
	n.staleUntil = n.w.now().Add(d)
	n.w.after(d, nil, func() {
		n.partReq = false
		n.tracef("its etcd member woke")
		n.watchChanged()
	})
}

// staleAck schedules the stale lessor's late acknowledgement of a renewal
// sent at sent (n's clock) in session generation sg, if n's member is
// frozen.
func (n *node) staleAck(sent time.Time, sg int) {
	if !n.w.now().Before(n.staleUntil) {
		return
	}
	ttl := n.timing().LeaseTTL
	n.w.at(n.staleUntil, n, func() {
		if sg != n.sessGen || n.creating {
			return
		}
		n.tracef("a stale lessor acknowledged a renewal sent at %s", sent.Sub(t0))
		n.w.res.StaleAcks++
		n.step(machine.SessionRenewed{SentAt: sent, TTL: ttl})
	})
}
