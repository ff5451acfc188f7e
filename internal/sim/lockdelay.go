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

// staleAcks: n's process freezes (SIGSTOP, a VM stall) with the embedded
// etcd member in it, which led raft, right after a renewal went out, the
// first one sent more than fence_margin after the newest acknowledged one
// (renewals were lost before: armed here, done by the renewer; a freeze at
// a random instant seldom has one in flight, and a bound one renew
// interval later is covered by fence_margin). Meanwhile the other members
// elect a new leader. It wakes after n's fence deadline and before the one
// that renewal would give. On waking, the member's lessor, still primary
// in its stale view, acknowledges the renewal if the lease has not expired
// in that view (etcd's lessor.Renew), extending nothing in the store; on a
// woken process the renewer's answer may reach the loop before the loop's
// own timer: here it does. The answer would carry n's bound past its
// lease's expiry in the store: machine rule
// TestLateRenewalDoesNotReviveAHolder.
func (n *node) staleAcks() {
	if n.alive && !n.frozen {
		n.staleArmed = true
	}
}

// staleFreezeNow is staleAcks once a renewal sent at sent (n's clock) is
// in flight; false if it is not one that staleAcks waits for.
func (n *node) staleFreezeNow(sent time.Time) bool {
	t := n.timing()
	fence := n.st.ValidUntil.Add(-t.FenceMargin)
	last := n.st.ValidUntil.Add(-t.LeaseTTL) // the newest acknowledged renewal's send
	next := sent.Add(t.LeaseTTL - t.FenceMargin)
	if !n.st.Holding() || sent.Sub(last) <= t.FenceMargin || !fence.After(sent) || !next.After(fence) {
		return false
	}
	n.staleArmed = false
	d := time.Duration(float64(fence.Sub(sent)+time.Duration(n.w.rng.Int64N(int64(next.Sub(fence))))) / n.rate)
	n.tracef("frozen for %s with a renewal in flight, with the etcd member it embeds, which led raft (%s at epoch %d, fence at %s)", d, n.st.Role, n.st.Epoch, fence.Sub(t0))
	wake := n.w.now().Add(d)
	view, _ := n.client.Session() // the lease's expiry in the member's view
	n.freeze(d)                   // first: the thaw comes before the acknowledgement
	for _, r := range n.renewing {
		if !wake.Before(view) {
			break // expired in its view too: no answer but a revocation
		}
		if r.cut {
			continue // never reached it
		}
		r := r
		n.w.at(wake, n, func() {
			if r.sg != n.sessGen || n.creating {
				return
			}
			n.tracef("its woken etcd member's stale lessor acknowledged a renewal sent at %s (%s at epoch %d, now %s)", r.sent.Sub(t0), n.st.Role, n.st.Epoch, n.now().Sub(t0))
			n.w.res.StaleAcks++
			n.step(machine.SessionRenewed{SentAt: r.sent, TTL: n.timing().LeaseTTL})
		})
	}
	n.renewing = n.renewing[:0]
	// Requests to the frozen member go nowhere.
	n.partReq = true
	n.w.at(wake, nil, func() { n.partReq = n.removed })
	return true
}

// renewal is a renewal in flight (sent at sent, n's clock, in session
// generation sg), which a stale lessor may acknowledge late.
type renewal struct {
	id   int
	sent time.Time
	sg   int
	cut  bool // sent while requests were cut
}
