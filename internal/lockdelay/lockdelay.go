// Package lockdelay decides how long a node that has just won the leader key
// must wait before it acts, so that the previous holder has stopped first.
//
// The hazard (etcd issues 12528 and 15247; PR 16822 only narrows it): an
// etcd raft leader that is frozen (SIGSTOP, a GC, VM or disk stall) and then
// wakes still has its lessor "primary" for a moment and revokes every lease
// whose expiry passed in its stale view. The revocation is forwarded to the
// new raft leader and commits, although the holder kept renewing through the
// new leader. The old active's validity bound (send time of its newest
// acknowledged renewal + TTL) is then up to a lease in the future while its
// leader key is gone: a standby would win and serve beside it.
//
// The guard, a lock-delay as in Chubby: a winner serves at once only on
// evidence that the previous holder can no longer act — the previous tenure
// ended by a resign (switchover, stop), or haven's revoker (which confirms
// its leadership with a quorum first) recorded that it expired, or the
// previous holder was this node, or nobody ever held the key. Otherwise it
// waits lease_ttl on its own clock from when it saw the key vacant: the old
// holder starts fencing itself at its last acknowledged renewal's send time
// + lease_ttl − fence_margin and has stopped (service, VIP, on_demote) by
// that send time + lease_ttl − the drift allowance (its fenced demotion's
// deadline), and that renewal was sent before the key's deletion, so before
// the winner saw it. Waiting only lease_ttl − fence_margin would let the
// winner start while the old holder still runs its demotion: the
// fence_margin is the time that demotion has.
package lockdelay

import (
	"fmt"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// Options are the lock-delay's settings.
type Options struct {
	// Enabled: the store can end a session early (ha.EarlyRevoker) and the
	// configuration did not turn the guard off (lock_delay: off).
	Enabled  bool
	LeaseTTL time.Duration
	// FenceMargin is not taken off the wait: the old holder's demotion
	// runs within it (see above). Kept for the status texts.
	FenceMargin time.Duration
}

// Vacancy is what a node saw of the leader key before it won it: the store's
// tenure record while the key was vacant and when it first saw it vacant
// (its own clock).
type Vacancy struct {
	Tenure ha.Tenure
	Since  time.Time
	// Epoch is the epoch of the key this node last saw held before the
	// vacancy (0: none seen). A record of an older tenure is not about
	// that key (an agent of an older haven won it without writing one).
	Epoch ha.Epoch
}

// Decision is how long to wait before acting, and why.
type Decision struct {
	Wait   time.Duration // 0: act at once
	Until  time.Time     // now + Wait
	Reason string
}

// Decide is the guard's decision for node, which has just won the key, at
// now (its clock).
func Decide(o Options, node string, v Vacancy, now time.Time) Decision {
	t := v.Tenure
	switch {
	case !o.Enabled:
		return Decision{Until: now, Reason: "lock delay off"}
	case t.Epoch == 0 && v.Epoch == 0:
		return Decision{Until: now, Reason: "no earlier tenure"}
	case t.Epoch < v.Epoch:
		// The record is older than the key that went: no evidence.
	case t.Unsettled:
		// Its holder never recorded that its own predecessor had stopped
		// (it crashed or was cut off during its lock-delay): that one
		// may still act, whatever ended this tenure.
	case t.Ended == ha.TenureResigned:
		return Decision{Until: now, Reason: fmt.Sprintf("%s resigned epoch %d", t.Node, t.Epoch)}
	case t.Ended == ha.TenureExpired:
		return Decision{Until: now, Reason: fmt.Sprintf("the store's leader judged %s's lease at epoch %d expired", t.Node, t.Epoch)}
	case t.Node == node:
		return Decision{Until: now, Reason: fmt.Sprintf("epoch %d was this node's own", t.Epoch)}
	}
	until := v.Since.Add(o.LeaseTTL)
	wait := max(until.Sub(now), 0)
	why := fmt.Sprintf("%s's key at epoch %d went without a record of resign or expiry", t.Node, t.Epoch)
	switch {
	case t.Epoch < v.Epoch:
		why = fmt.Sprintf("the key at epoch %d went and the store's record is of epoch %d", v.Epoch, t.Epoch)
	case t.Unsettled:
		why = fmt.Sprintf("%s's tenure at epoch %d never settled (its own predecessor may still act)", t.Node, t.Epoch)
	}
	return Decision{Wait: wait, Until: now.Add(wait), Reason: fmt.Sprintf(
		"%s; waiting for the old active's lease to run out and its demotion (fence_margin %s) to end (lease_ttl = %s after the key was seen vacant)",
		why, o.FenceMargin, o.LeaseTTL)}
}
