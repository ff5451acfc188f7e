// Package sqlstore is ha.Store on a SQL database shared by every agent of
// a cluster (and possibly by several clusters): the one algorithm for
// sessions, the campaign, the leader read, operator intents, the history,
// fenced data and migrations, over a small Dialect that says how each
// database spells what differs. The backends (postgres, mysql) keep only
// their dialect, their driver's setup and their wake source (PostgreSQL's
// LISTEN/NOTIFY; MySQL polls).
//
// Tables (prefix "haven_" by default), created and migrated by Open:
//
//	schema_migrations  applied schema versions
//	clusters           one row per cluster: rev, the change counter
//	sessions           one row per agent session: expires_at = now + ttl
//	leader             one row per cluster: node, session_id, epoch
//	nodes              each agent's ha.NodeStatus, bound to its session
//	maintenance        one row per node in maintenance
//	switchover         the pending ha.Switchover, until expires_at
//	events             the history, pruned to ha.MaxEvents
//	data, data_ids     the service's fenced data and the idempotency ids
//	                   of the writes that committed
//	props              operators' ha.NodeProps per node (the alias), no session
//
// and two counters that only grow, the epochs and the revisions of fenced
// writes (PostgreSQL: sequences; MySQL: rows of a counters table).
//
// # Why it is safe
//
// The claim: a node acts on its data only while it holds the leader row at
// its epoch with a live session, and no two nodes do so at once; a write
// at an epoch lands before any later epoch exists, or not at all.
//
//   - One clock. Every expiry is computed and compared by the database with
//     its own clock (Dialect.Now), never an agent's. A session whose
//     expires_at has passed is gone for every reader at once, before any
//     cleanup has run: a campaign may take a leader row whose session
//     expired, and snapshots show neither that leader nor that session's
//     node records. An expired session cannot be renewed (Renew's UPDATE
//     requires expires_at > now), so deleting what was read expired
//     (cleanup, by any agent) never deletes a live session.
//   - The timing contract. A session expires ttl after the database
//     processed the request, which is after the agent read its own clock
//     before sending it: the agent's idea of its lease ends no later than
//     the database's.
//   - One campaign at a time. Campaign locks the leader row (FOR UPDATE)
//     first, and only then reads, at read committed, whether its own
//     session and the holder's are live: every commit before the lock is
//     seen. It takes the row only if the holder's session is not live, and
//     draws the epoch from a counter that only grows (Dialect.Next) in the
//     same transaction, so epochs never repeat, even across clusters
//     sharing the counter and across rolled-back campaigns.
//   - Fenced data. Every fenced read or write is one transaction that
//     first share-locks the leader row where it holds node at epoch, then
//     checks that the holder's session is live. A campaign needs that row
//     exclusively, so it cannot take the role between the check and the
//     commit: the write lands before any later epoch exists, or not at all.
//     A write may carry an idempotency id, kept in data_ids with the
//     write's revision: a retry of a write that committed is answered as
//     that write (even after the role moved, as on etcd), and applied only
//     once; a concurrent write of the same id waits on the key, and is
//     then a repeat.
//   - Intents. A switchover is recorded only while the leader it is from
//     still holds the row at its epoch (checked under a share lock in the
//     same transaction: ha.ErrStale), and only if no unexpired one is
//     pending (ha.ErrBusy); it expires by the database's clock.
//   - Migrations run under a lock (Dialect.Exclusive), each version once.
//
// What is not part of the argument: snapshots (Watch), read in one
// statement, are hints for the agents' decisions; every decision that
// matters is re-checked by a transaction above.
//
// Every change bumps the cluster's rev (and, where the database can,
// notifies watchers in the same statement: Dialect.Changed); Watch
// re-reads when its Waker says so, when the earliest live session or the
// switchover is due to expire, and every poll interval.
package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// DefaultPrefix is the table prefix when the options leave it empty.
const DefaultPrefix = "haven_"

var validPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,29}$`)

// TablePrefix returns the table prefix to use for the one configured, p:
// DefaultPrefix when p is empty, else p if it is safe to paste into SQL
// (lowercase letters, digits and _).
func TablePrefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	if !validPrefix.MatchString(p) {
		return "", fmt.Errorf("table prefix %q: use lowercase letters, digits and _", p)
	}
	return p, nil
}

// PruneEvery: the history is pruned to ha.MaxEvents on one append in this
// many (by the event's row id, so that a long run of appends always prunes).
const PruneEvery = 50

// Changed reports whether b shows something a watcher of a must hear
// about. Intents count even when the change counter did not move: a
// switchover vanishes from snapshots when it expires, by the clock alone.
func Changed(a, b ha.Snapshot) bool {
	if a.Rev != b.Rev || a.Leader != b.Leader || len(a.Nodes) != len(b.Nodes) {
		return true
	}
	for k := range b.Nodes {
		if _, ok := a.Nodes[k]; !ok {
			return true
		}
	}
	if len(a.Intents.Maintenance) != len(b.Intents.Maintenance) {
		return true
	}
	for k := range b.Intents.Maintenance {
		if !a.Intents.Maintenance[k] {
			return true
		}
	}
	if !maps.Equal(a.Props, b.Props) {
		return true
	}
	sa, sb := a.Intents.Switchover, b.Intents.Switchover
	if (sa == nil) != (sb == nil) {
		return true
	}
	return sa != nil && sa.ID != sb.ID
}

// Watcher remembers the snapshot a Watch loop sent last, so that it sends
// another only when it shows something new.
type Watcher struct {
	last ha.Snapshot
	sent bool
}

// Send sends snap on out (ha.SendLatest) if it is the first snapshot,
// the first since Behind, or Changed from the last one sent. It returns
// false if ctx ended first.
func (w *Watcher) Send(ctx context.Context, out chan ha.Snapshot, snap ha.Snapshot) bool {
	if w.sent && !w.last.Behind && !Changed(w.last, snap) {
		return true
	}
	if !ha.SendLatest(ctx, out, snap) {
		return false
	}
	w.last, w.sent = snap, true
	return true
}

// Behind tells the reader that a read failed, so its view is no longer
// known to be current: the last snapshot again, marked Behind (once until
// a read succeeds; none if nothing was sent yet). The next read is sent
// whether it changed or not. It returns false if ctx ended first.
func (w *Watcher) Behind(ctx context.Context, out chan ha.Snapshot) bool {
	if !w.sent || w.last.Behind {
		return true
	}
	w.last.Behind = true
	return ha.SendLatest(ctx, out, w.last)
}

// NextRead is how long a Watch loop waits before it reads again after a
// successful read: the poll interval, or just past wake if that is sooner
// (wake: how long until the snapshot read changes by the clock alone, as a
// session or the switchover expires; 0 if never).
func NextRead(poll, wake time.Duration) time.Duration {
	if wake > 0 && wake+5*time.Millisecond < poll {
		return wake + 5*time.Millisecond
	}
	return poll
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// SwitchoverLife is how long the row of sw, requested at now (the agent's
// wall clock, which set sw.Deadline), stays in the store: until the
// deadline, at least a millisecond. The database adds it to its own clock,
// as etcd does with the lease it attaches to the intent.
func SwitchoverLife(sw ha.Switchover, now time.Time) time.Duration {
	return max(sw.Deadline.Sub(now), time.Millisecond)
}

// Maintain adds node to the maintenance intents of snap.
func Maintain(snap *ha.Snapshot, node string) {
	if snap.Intents.Maintenance == nil {
		snap.Intents.Maintenance = map[string]bool{}
	}
	snap.Intents.Maintenance[node] = true
}

// SetNode decodes a node's status row (JSON) into snap.Nodes; a row that
// does not decode is left out.
func SetNode(snap *ha.Snapshot, node string, body []byte) {
	var st ha.NodeStatus
	if json.Unmarshal(body, &st) == nil {
		snap.Nodes[node] = st
	}
}

// SetProps decodes a node's properties row (JSON) into snap; a row that
// does not decode, or says nothing, is left out, as etcdstore does. Each
// read builds a fresh snapshot, so the map is never shared with one sent.
func SetProps(snap *ha.Snapshot, node string, body []byte) {
	var p ha.NodeProps
	if json.Unmarshal(body, &p) != nil || p.Zero() {
		return
	}
	if snap.Props == nil {
		snap.Props = map[string]ha.NodeProps{}
	}
	snap.Props[node] = p
}

// SetSwitchover decodes a switchover row (JSON) into snap; a row that does
// not decode is left out, as etcdstore does.
func SetSwitchover(snap *ha.Snapshot, body []byte) {
	var sw ha.Switchover
	if json.Unmarshal(body, &sw) == nil {
		snap.Intents.Switchover = &sw
	}
}

// Events decodes event rows read newest first into a history oldest
// first, leaving out rows that do not decode.
func Events(newestFirst [][]byte) []ha.Event {
	out := make([]ha.Event, 0, len(newestFirst))
	for i := len(newestFirst) - 1; i >= 0; i-- {
		var ev ha.Event
		if json.Unmarshal(newestFirst[i], &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}
