package agent

import (
	"fmt"
	"sync/atomic"
	"time"
)

// storeView is how current this agent's view of the store is: whether the
// watch has given it a snapshot yet, and when it last reached the store
// (a snapshot, or a renewal the store granted), and whether its watch is
// starting over. Status and Role say the leader is unknown rather than
// "none" while the view is not current.
type storeView struct {
	snapshot atomic.Bool
	// behind: the watch is starting over and has not read the store
	// again (ha.Snapshot.Behind); its last snapshot may be out of date.
	behind  atomic.Bool
	contact atomic.Pointer[time.Time]
}

// reached records a contact with the store at t (the agent's clock).
func (v *storeView) reached(t time.Time) {
	for {
		old := v.contact.Load()
		if old != nil && !t.After(*old) {
			return
		}
		if v.contact.CompareAndSwap(old, &t) {
			return
		}
	}
}

// leaderUnknown says why this agent cannot tell who holds the active role
// at now, or "" when it can: it holds the role itself, or it has seen the
// store and reached it within the lease. Beyond the lease the store may
// have expired this node's session and elected another active unseen.
func (a *Agent) leaderUnknown(now time.Time) string {
	if a.Serving() {
		return ""
	}
	if !a.view.snapshot.Load() {
		return "this node has not seen the store yet"
	}
	if a.view.behind.Load() {
		return "this node's watch of the store is starting over (its etcd member may have lost the store's quorum) and has not read the store again yet"
	}
	last := a.view.contact.Load()
	if ttl := a.cfg.Timing.LeaseTTL; ttl > 0 && last != nil && now.Sub(*last) > ttl {
		return fmt.Sprintf("this node has not reached the store for %s, more than the lease (%s)", now.Sub(*last).Round(time.Second), ttl)
	}
	return ""
}
